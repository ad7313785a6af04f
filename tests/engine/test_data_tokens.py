"""The trained-token mask: what render shows, what stats count, and what the trainer uses."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import models
from engine.data import load_examples
from engine.data.encode import encode
from engine.data.stats import token_stats

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tok(tiny_model):
    return models.load_tokenizer(str(tiny_model))


def _cli(*args, ok=(0,)):
    proc = subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode in ok, proc.stderr
    return proc


def test_only_assistant_turns_and_their_end_token_are_trained(tok):
    example = load_examples(str(FIX / "messages.jsonl"))[2]  # first assistant turn has weight 0
    enc = encode(tok, example, None, with_pieces=True)
    trained_text = "".join(p for p, t in zip(enc.pieces, enc.trained) if t)
    assert trained_text == "Yes, C3003 was paid in full on 2 May.<|im_end|>"
    assert "I think so." in enc.text and "I think so." not in trained_text


def test_text_rows_train_every_token(tok):
    enc = encode(tok, {"text": "Gift cards never expire."}, None)
    assert all(enc.trained) and enc.input_ids[-1] == tok.eos_token_id


def test_render_cli_shows_the_same_mask_as_encode(tok, tiny_model):
    out = json.loads(_cli("data", "render", str(FIX / "sharegpt.json"), "--row", "2", "--model", str(tiny_model), "--json").stdout)
    example = load_examples(str(FIX / "sharegpt.json"))[1]
    enc = encode(tok, example, 1024, with_pieces=True)
    assert out["input_ids"] == enc.input_ids and out["trained"] == enc.trained and out["tokens"] == enc.pieces
    assert out["record"] == 2 and out["format"] == "sharegpt"
    # both assistant answers trained, no user words
    trained = "".join(p for p, t in zip(out["tokens"], out["trained"]) if t)
    assert trained == "Yes, from 10 to 200 euros.<|im_end|>No, our gift cards never expire.<|im_end|>"


def test_render_cli_refuses_a_bad_row_with_its_line(tiny_model):
    proc = _cli("data", "render", str(FIX / "bad_rows.jsonl"), "--row", "2", "--model", str(tiny_model), ok=(1,))
    assert proc.stderr.strip() == (
        f"tunedeck: {FIX / 'bad_rows.jsonl'}:2: message 2 has role 'bot'; roles must be system, user, assistant or "
        "tool; fix this row to render it."
    )


def test_render_mask_is_what_the_trainer_trains_on(tok, tiny_model, tmp_path):
    """TRL's SFTTrainer, given our rows, puts loss exactly on the tokens render marks as trained."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    examples = load_examples(str(FIX / "messages.jsonl")) + load_examples(str(FIX / "alpaca.json"))
    encoded = [encode(tok, ex, 48) for ex in examples]
    ds = datasets.Dataset.from_list([e.as_training_row() for e in encoded])
    args = SFTConfig(
        output_dir=str(tmp_path / "out"), completion_only_loss=True, max_length=48, report_to=[],
        per_device_train_batch_size=4, use_cpu=True, dataset_num_proc=None,
    )
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    # TRL drops rows whose trained tokens were all cut by max_length; stats count them as nothing_trained
    kept = [e for e in encoded if e.trained_tokens]
    assert 0 < len(kept) < len(encoded) and len(trainer.train_dataset) == len(kept)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(kept))])
    for i, enc in enumerate(kept):
        n = len(enc.input_ids)
        assert batch["input_ids"][i, :n].tolist() == enc.input_ids
        assert (batch["labels"][i, :n] != -100).tolist() == enc.trained
        assert (batch["labels"][i, n:] == -100).all()


def test_stats_count_lengths_cuts_and_trained_tokens(tok):
    examples = load_examples(str(FIX / "messages.jsonl"))
    encs = [encode(tok, ex, 30) for ex in examples]
    stats = token_stats(str(FIX / "messages.jsonl"), tok, 30)
    assert stats["examples"] == 5 and stats["skipped_bad_rows"] == 0
    assert stats["trainable_tokens"] == sum(e.trained_tokens for e in encs)
    assert stats["tokens"] == sum(len(e.input_ids) for e in encs)
    over = [i + 1 for i, e in enumerate(encs) if e.truncated]
    assert stats["over_max_length"] == len(over) and stats["over_max_length_where"] == {"line": over}
    assert sum(stats["histogram"]["counts"]) == 5
    assert stats["length"]["max"] == max(e.full_length for e in encs)


def test_stats_skip_bad_rows(tok):
    stats = token_stats(str(FIX / "bad_rows.jsonl"), tok, 512)
    assert (stats["examples"], stats["skipped_bad_rows"], stats["rows"]) == (2, 11, 13)


def test_parallel_stats_equal_serial_stats_with_line_numbers(tok, tmp_path):
    lines = (FIX / "messages.jsonl").read_text().splitlines()
    path = tmp_path / "many.jsonl"
    with open(path, "w") as f:
        for k in range(400):
            f.write(lines[k % len(lines)] + "\n")
            if k % 37 == 0:
                f.write("\n")
    serial = token_stats(str(path), tok, 40, workers=1)
    parallel = token_stats(str(path), tok, 40, workers=2, min_parallel_bytes=0)
    for key in ("examples", "tokens", "trainable_tokens", "over_max_length", "over_max_length_where", "length", "histogram"):
        assert parallel[key] == serial[key], key
    assert serial["over_max_length"] > 0


def test_inspect_cli_exit_codes_and_json(tiny_model):
    clean = _cli("data", "inspect", str(FIX / "alpaca.json"), "--json")
    assert json.loads(clean.stdout)["format"] == "alpaca"
    bad = _cli("data", "inspect", str(FIX / "bad_rows.jsonl"), "--json", ok=(1,))
    report = json.loads(bad.stdout)
    assert set(report) >= {"format", "rows", "errors", "warnings", "stats"}
    assert report["errors"][0] == {"line": 2, "row": 2, "message": "message 2 has role 'bot'; roles must be system, user, assistant or tool"}
    broken = _cli("data", "inspect", str(FIX / "empty.jsonl"), "--json", ok=(2,))
    assert json.loads(broken.stdout) == {"error": broken.stderr.strip().removeprefix("tunedeck: "), "exit": 2}
    assert broken.stderr.count("\n") == 1 and "is empty" in broken.stderr
    with_model = _cli("data", "inspect", str(FIX / "text.jsonl"), "--model", str(tiny_model), "--max-length", "8", "--json")
    stats = json.loads(with_model.stdout)["stats"]
    assert stats["examples"] == 3 and stats["over_max_length"] == 3
    assert any("longer than max_length 8" in w for w in json.loads(with_model.stdout)["warnings"])


def test_stats_cli_progress_is_json_lines_then_the_result(tiny_model):
    proc = _cli("data", "stats", "demo", "--model", str(tiny_model), "--max-length", "64", "--progress")
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["event"] == "stats" and events[-1]["examples"] == 340
    assert any(e["event"] == "progress" and e["phase"] == "tokens" for e in events)
    fractions = [e["fraction"] for e in events if e.get("phase") == "tokens"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_serve_helper_answers_render_requests(tiny_model, tok):
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "data", "serve", "--model", str(tiny_model)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()
        while json.loads(line).get("event") != "ready":
            line = proc.stdout.readline()
        example = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
        proc.stdin.write(json.dumps({"id": 7, "op": "render", "example": example, "max_length": 64}) + "\n")
        proc.stdin.write(json.dumps({"id": 8, "op": "render_row", "file": str(FIX / "bad_rows.jsonl"), "row": 2}) + "\n")
        proc.stdin.flush()
        first, second = json.loads(proc.stdout.readline()), json.loads(proc.stdout.readline())
        assert first["id"] == 7 and first["ok"] and first["trained"] == encode(tok, example, 64).trained
        assert second == {"id": 8, "ok": False, "error": second["error"]} and ":2: message 2 has role 'bot'" in second["error"]
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
