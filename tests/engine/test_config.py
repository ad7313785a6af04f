"""RunConfig: YAML in, validated config out; every mistake is one sentence naming the key."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_per_method():
    lora, qlora, full = (RunConfig.defaults_for(m) for m in ("lora", "qlora", "full"))
    assert lora.learning_rate == qlora.learning_rate == 2e-4 and full.learning_rate == 2e-5
    assert qlora.gradient_checkpointing and not lora.gradient_checkpointing
    assert lora.lora.targets == "all-linear" and lora.lora.r == 16
    assert RunConfig.from_dict({}).epochs == 1.0  # neither max_steps nor epochs: one epoch
    # learning_rate follows the method unless given
    assert RunConfig.from_dict({"method": "full"}).learning_rate == 2e-5
    assert RunConfig.from_dict({"method": "full", "learning_rate": 1e-4}).learning_rate == 1e-4


def test_yaml_round_trip_and_numbers_yaml_reads_as_text():
    text = "model: demo\nmethod: qlora\nlearning_rate: 2e-4\nmax_steps: 30\nlora:\n  r: 8\n  targets: [q_proj, v_proj]\n"
    cfg = RunConfig.from_yaml(text)
    assert cfg.learning_rate == 2e-4  # PyYAML reads "2e-4" (no dot) as a string
    assert cfg.max_steps == 30 and cfg.epochs is None
    assert cfg.lora.r == 8 and cfg.lora.targets == ["q_proj", "v_proj"] and cfg.lora.alpha == 32
    again = RunConfig.from_yaml(cfg.to_yaml())
    assert again == cfg


@pytest.mark.parametrize("text, expected", [
    ("model: demo\nlearnin_rate: 1e-4\n", "config.yaml:2: unknown key 'learnin_rate' (did you mean 'learning_rate'?)."),
    ("batch_size: x\n", "config.yaml:1: batch_size must be a positive integer, got 'x'."),
    ("max_steps: 10\nepochs: 2\n", "config.yaml:1: give either max_steps or epochs, not both"),
    ("method: dpo\n", "config.yaml:1: method must be one of lora, qlora, full, got 'dpo'."),
    ("lora:\n  rank: 8\n", "config.yaml:2: unknown key 'lora.rank'"),
    ("lora:\n  r: 0\n", "config.yaml:2: lora.r must be a positive integer, got 0."),
    ("eval_split: 1.5\n", "config.yaml:1: eval_split must be a fraction"),
    ("learning_rate: -1\n", "config.yaml:1: learning_rate must be a positive number"),
    ("gradient_checkpointing: maybe\n", "config.yaml:1: gradient_checkpointing must be true or false"),
    ("model: demo\nbatch_size: [\n", "config.yaml:3: this is not valid YAML"),
    ("- a\n- b\n", "config.yaml: expected a mapping"),
])
def test_mistakes_are_one_sentence_naming_the_key(text, expected):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_yaml(text)
    message = str(err.value)
    assert message.startswith(expected)
    assert "\n" not in message and message.endswith(".")


def test_load_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: demo\nbatch_sise: 4\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: unknown key 'batch_sise' \(did you mean 'batch_size'\?\)"):
        RunConfig.load(path)
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "missing.yaml")


def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=60)


def test_cli_typo_is_one_clear_sentence_and_starts_nothing(tmp_path, tunedeck_home):
    bad = tmp_path / "config.yaml"
    bad.write_text("model: demo\ndata: demo\nlearnin_rate: 1e-4\nmax_steps: 5\n")
    proc = _cli("train", str(bad))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == (f"tunedeck: {bad}:3: unknown key 'learnin_rate' (did you mean 'learning_rate'?).")
    assert not (tunedeck_home / "runs").exists() or not any((tunedeck_home / "runs").iterdir())


def test_cli_option_mistakes_name_the_option(tunedeck_home):
    proc = _cli("train", "--max-steps", "ten")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "tunedeck: command line: --max-steps must be a positive integer, got 'ten'."
    proc = _cli("train", "--method", "qlorra", "--max-steps", "3")
    assert "method must be one of lora, qlora, full" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_missing_model_or_data_is_refused_before_a_run_exists(tmp_path, tunedeck_home):
    proc = _cli("train", "--data", str(tmp_path / "nope.jsonl"), "--max-steps", "3")
    assert proc.returncode != 0 and "nope.jsonl does not exist" in proc.stderr
    proc = _cli("train", "--model", str(tmp_path / "missing.gguf"), "--max-steps", "3")
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tunedeck_home / "runs").exists() or not any((tunedeck_home / "runs").iterdir())


def test_override_switches_steps_and_epochs():
    cfg = RunConfig.from_dict({"max_steps": 10})
    assert cfg.override(epochs=2).max_steps is None
    assert cfg.override(epochs=2).epochs == 2.0
    assert cfg.override(lora_r=4).lora.r == 4


def test_every_glossary_term_a_setting_names_is_explained():
    from engine.config import FIELDS, METHOD_NAMES
    from engine.glossary import GLOSSARY

    terms = [f.glossary for f in FIELDS if f.glossary] + list(METHOD_NAMES.values())
    assert [t for t in terms if t not in GLOSSARY] == []
