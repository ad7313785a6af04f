"""Bad input ends in one sentence, never a traceback: generated malformed configs and data files
(Hypothesis) thrown at the config loader, the data reader and `tunedeck train --check`, and the
cases that used to crash, each through the real command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import FIELDS, RunConfig
from engine.data.dataset import inspect, load_examples
from engine.errors import ConfigError, DataError, TunedeckError

ROOT = Path(__file__).resolve().parents[2]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Values of every shape a hand-edited YAML or JSON file can hold.
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=30), st.sampled_from(["nan", "inf", "-1", "1e400", "", " ", "2e-4", "all-linear"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=12)
keys = st.one_of(st.sampled_from([f.key.split(".")[0] for f in FIELDS] + ["lora"]), st.text(max_size=12))


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=240,
                          cwd=cwd or ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def _one_sentence(text: str) -> None:
    assert "Traceback" not in text
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text


@FAST
@given(st.dictionaries(keys, values, max_size=6))
def test_any_mapping_is_a_config_or_one_sentence(raw):
    try:
        config = RunConfig.from_dict(raw)
    except ConfigError as exc:
        _one_sentence(str(exc))
        return
    assert RunConfig.from_yaml(config.to_yaml()) == config  # what is accepted round-trips


@FAST
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 values.map(lambda v: yaml.safe_dump(v).encode())))
def test_any_config_file_is_a_config_or_one_sentence(tmp_path, blob):
    path = tmp_path / "run.yaml"
    path.write_bytes(blob)
    try:
        RunConfig.load(path)
    except ConfigError as exc:
        _one_sentence(str(exc))


def _record():
    return st.one_of(values, st.fixed_dictionaries({"messages": values}), st.fixed_dictionaries({"conversations": values}),
                     st.fixed_dictionaries({"prompt": values, "completion": values}),
                     st.fixed_dictionaries({"instruction": values, "output": values}), st.fixed_dictionaries({"text": values}))


@FAST
@given(st.lists(st.one_of(_record().map(lambda r: json.dumps(r).encode()), st.binary(max_size=40),
                          st.sampled_from([b"[" * 5000, b"{" * 5000, b'{"text": 1' + b"1" * 6000 + b"}", b"\xff\xfe",
                                           b"\x00\x00"])),
                min_size=1, max_size=6),
       st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".txt"]))
def test_any_data_file_is_rows_or_one_sentence(tmp_path, lines, suffix):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for read in (inspect, load_examples):
        try:
            read(str(path))
        except DataError as exc:
            _one_sentence(str(exc))


# --- through the command line ------------------------------------------------------------------------
@pytest.fixture
def bad_files(tmp_path):
    files = {
        "latin_config": tmp_path / "latin.yaml",
        "nested": tmp_path / "nested.jsonl",
        "bignum": tmp_path / "bignum.jsonl",
        "fake_gguf": tmp_path / "fake.gguf",
        "garbage_model": tmp_path / "garbage-model",
        "all_bad": tmp_path / "all-bad.jsonl",
        "ok": tmp_path / "ok.jsonl",
    }
    files["latin_config"].write_bytes(b"model: demo\ndata: caf\xe9.jsonl\n")
    files["nested"].write_text("[" * 100_000 + "\n")
    files["bignum"].write_text('{"text": 1' + "1" * 100_000 + "}\n")
    files["fake_gguf"].write_bytes(os.urandom(2000))
    files["garbage_model"].mkdir()
    (files["garbage_model"] / "config.json").write_bytes(os.urandom(500))
    files["all_bad"].write_text('{"messages": [{"role": "bot", "content": "x"}]}\n' * 3)
    files["ok"].write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                    {"role": "assistant", "content": "hello"}]}) + "\n")
    return files


CASES = [  # (command line, what the sentence names)
    (["train", "{latin_config}"], "not UTF-8"),
    (["data", "inspect", "{nested}"], "nested too deeply"),
    (["data", "inspect", "{bignum}"], "digits"),
    (["estimate", "--model", "{fake_gguf}"], "not a GGUF file"),
    (["estimate", "--model", "{garbage_model}"], "not valid JSON"),
    (["estimate", "--model", "{garbage_model}/config.json"], "JSON"),
    (["chat", "--base-model", "{fake_gguf}", "--prompt", "hi"], "not a GGUF file"),
    (["data", "stats", "{ok}", "--model", "{garbage_model}"], "not valid JSON"),
    (["data", "stats", "{ok}", "--model", "{fake_gguf}"], "not a GGUF file"),
    (["estimate", "--gpu-memory", "nan"], "not a finite number"),
    (["train", "--model", "{garbage_model}", "--max-steps", "2"], "not valid JSON"),
    (["train", "--model", "{fake_gguf}", "--max-steps", "2"], "not a GGUF file"),
    (["train", "--data", "{all_bad}", "--max-steps", "2"], "role 'bot'"),
    (["train", "--seed", str(2**40), "--max-steps", "2"], "seed must be at most"),
    (["train", "--data", str(ROOT / "tests/fixtures/data/preference.jsonl"), "--max-steps", "2"], "objective: dpo"),
    (["train", "--processes", "64", "--max-steps", "2"], "processes: 64"),
    (["train", "--max-steps", "2", "--check", "--model", "{fake_gguf}"], "not a GGUF file"),
]


@pytest.mark.parametrize("args, names", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_a_user_error_is_one_sentence_and_a_nonzero_exit(bad_files, tunedeck_home, args, names):
    proc = _cli(*[a.format(**bad_files) for a in args])
    assert proc.returncode != 0
    assert names in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tunedeck_home / "runs").exists() or not any((tunedeck_home / "runs").iterdir())  # nothing started


def test_checkpoint_seconds_in_the_environment_is_checked_before_a_start(tunedeck_home):
    proc = subprocess.run([sys.executable, "-m", "engine", "train", "--max-steps", "2"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), TUNEDECK_CHECKPOINT_SECONDS="soon"))
    assert proc.returncode == 2 and "TUNEDECK_CHECKPOINT_SECONDS must be a positive number" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_reports_a_run_that_can_start_and_starts_nothing(tiny_model, toy_data, tunedeck_home):
    proc = _cli("train", "--model", str(tiny_model), "--data", str(toy_data), "--max-steps", "3",
                "--max-length", "64", "--check", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"] and report["problem"] is None, report
    assert [c["name"] for c in report["checks"]] == ["settings", "tokenizer", "tokens", "memory"]
    assert all(c["ok"] for c in report["checks"])
    assert not (tunedeck_home / "runs").exists() or not any((tunedeck_home / "runs").iterdir())


def test_check_names_what_would_fail_in_json_too(tiny_model, toy_data, tunedeck_home, tmp_path):
    # every prompt longer than max_length: nothing left to train
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"messages": [{"role": "user", "content": "word " * 200},
                                             {"role": "assistant", "content": "ok"}]}) + "\n")
    proc = _cli("train", "--model", str(tiny_model), "--data", str(long), "--max-length", "16", "--check", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 2 and report["exit"] == 2 and not report["ok"]
    assert "keeps a token to train" in report["problem"]
    # a batch no memory holds
    proc = _cli("train", "--model", "demo", "--data", "demo", "--batch-size", "60000", "--check")
    assert proc.returncode == 2 and "does not fit" in proc.stderr and "Traceback" not in proc.stderr
    # a settings mistake is a report as well
    report = json.loads(_cli("train", "--batch-size", "x", "--check", "--json").stdout)
    assert report["checks"][0]["name"] == "settings" and "--batch-size must be a positive integer" in report["problem"]
    assert not (tunedeck_home / "runs").exists() or not any((tunedeck_home / "runs").iterdir())


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(keys, values, max_size=5))
def test_check_answers_any_config_file_in_json(bad_files, raw):
    path = bad_files["ok"].parent / "generated.yaml"
    path.write_text(yaml.safe_dump({**raw, "model": str(bad_files["garbage_model"])}))
    proc = _cli("train", str(path), "--check", "--json")
    report = json.loads(proc.stdout)  # exactly one JSON object, refusals included
    assert proc.returncode == 2 == report["exit"] and not report["ok"] and report["problem"]
    _one_sentence(report["problem"])
    assert "Traceback" not in proc.stderr


def test_a_json_list_that_stops_being_utf8_past_its_first_bytes_is_one_bad_row(tmp_path):
    path = tmp_path / "late.json"  # found by the Hypothesis test above: only the head is checked on open
    rows = ",".join(json.dumps({"text": "x" * 100}) for _ in range(12000))  # past the 1 MiB head checked on open
    path.write_bytes(("[" + rows + ',{"text": "').encode() + b"\x80\x81" + b'"}]')
    report = inspect(str(path))
    assert report.valid_rows > 0 and report.error_count == 1  # the rows before the undecodable chunk, then one sentence
    assert "is not UTF-8 text" in report.errors[0].message
