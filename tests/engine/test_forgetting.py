"""Forgetting, measured and fought, on real tiny-model runs: the general-ability probe sees a model
over-trained on narrow data get worse at general text than its base; replay's general examples are
the base model's own answers, generated once, cached in the run folder, reused on resume and mixed
at the asked share; replay is refused for preference tuning. Plus the probe's scoring rules."""

from __future__ import annotations

import json
import math
import os

import pytest

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.general_probe import (answer_scores, correct, follows, list_items, load_probe, probe_verdict,
                                  replay_prompts, trained_format)
from engine.replay import REPLAY_FILE, REPLAY_MAX_NEW_TOKENS, chosen_prompts, describe, finished, replay_count
from waiting import logged_step, run_ended, wait_run

# --- the probe's rules, by hand ------------------------------------------------------------------


def test_instruction_checks_and_right_answers():
    assert follows("12", "number") and follows("12.", "number") and not follows("The answer is 12.", "number")
    assert correct("The answer is 12.", ["12"], "number") and correct("7 + 5 = 12", ["12"], "number")
    assert not correct("13", ["12"], "number")
    assert follows("**Paris**", "one_word") and not follows("It is Paris.", "one_word")
    assert correct("It is Paris.", ["paris"], "one_word") and not correct("Parisian food", ["paris"], "one_word")
    assert follows("Yes, it is.", "yes_no") and correct("Yes, it is.", ["yes"], "yes_no")
    assert not correct("No.", ["yes"], "yes_no") and not follows("Maybe", "yes_no")
    assert list_items("- red\n- green\n- blue") == ["red", "green", "blue"]
    assert follows("apple, pear and plum", "list3") and not follows("apple, pear", "list3")
    assert follows("HELLO", "uppercase") and not follows("Hello", "uppercase")
    assert follows("We sleep to rest.", "one_sentence") and not follows("We sleep. It helps.", "one_sentence")
    assert follows("The Lost Dog", "max_words:5") and not follows("A very long title for a story", "max_words:5")
    assert follows("anything", None) is None and not follows("", "one_word")


def test_scores_and_verdicts_of_answers():
    probe = load_probe()
    items = probe["prompts"]
    assert 25 <= len(items) <= 40 and 250 <= len(probe["passage"].split()) <= 600
    assert not {p["prompt"] for p in items} & set(replay_prompts()) and len(replay_prompts()) >= 90
    right = [p["answer"][0] if p.get("answer") else "ok" for p in items]
    scores = answer_scores(right, probe)
    assert scores["correct"] == 1.0 and scores["n_answerable"] == sum(bool(p.get("answer")) for p in items)
    looks_json = trained_format(['{"a": 1}', '{"a": 2}'])
    tickets = answer_scores(['{"category": "refund"}'] * len(items), probe, looks_json)
    assert tickets["correct"] == 0.0 and tickets["trained_format"] == 1.0
    assert trained_format(["free text", "more text"]) is None
    # the JSON style leaks as objects, lists (even cut off) and quoted strings; a bare number or yes is plain
    assert [looks_json(a) for a in ('"Paris"', '{"blue", "green"}', '```json\n{"a":', "12", "Yes.", 'It is "ice".')] \
        == [True, True, True, False, False, False]
    assert trained_format(["Category: refund", "Category: shipping", "Category: other"])("category: x")

    base = {"n": 32, "perplexity": 10.0, "follows": 0.8, "correct": 0.6, "mean_words": 12, "trained_format": 0.0}
    state, text = probe_verdict(base, dict(base, perplexity=10.5, follows=0.75))
    assert state == "kept" and text.startswith("General ability kept: perplexity on general text x1.05")
    state, text = probe_verdict(base, dict(base, perplexity=18.0, correct=0.3))
    assert state == "dropped" and "x1.80" in text and "right answers 60% → 30%" in text and "replay: 0.1" in text
    state, text = probe_verdict(base, dict(base, trained_format=0.9, follows=0.1), format_name="the task's JSON format")
    assert state == "format" and text.startswith("The model now answers everything in the task's JSON format: 29 of 32")


def test_replay_share_and_prompts():
    assert replay_count(900, 0.1) == (100, 100)  # 10% of the 1000 rows once mixed
    assert replay_count(64, 0.25) == (21, 21)
    assert replay_count(3000, 0.5, available=100) == (3000, 100)  # fewer prompts than asked for
    assert replay_count(100, 0.0) == (0, 0)
    assert chosen_prompts(5, seed=1) == chosen_prompts(5, seed=1) != chosen_prompts(5, seed=2)
    assert finished("One. Two, cut", cut=True) == "One." and finished("One. Two, cut", cut=False) == "One. Two, cut"
    info = {"share": 0.5, "wanted": 340, "asked": 100, "rows": 98, "cached": False, "task_rows": 340}
    assert describe(info, 97) == (
        "Replay: 97 general examples answered by the base model (cached in replay.jsonl), 22% of the 437 training "
        "rows; replay 0.5 asked for 340, but Tunedeck has 100 general prompts; 2 answers were empty and were left "
        "out; 1 kept no answer token within max_length and were left out.")
    assert describe(dict(info, cached=True), 98).startswith(
        "Replay: 98 general examples answered by the base model (cached in replay.jsonl; reused, not generated again)")


def test_replay_is_refused_for_preference_tuning_in_one_sentence():
    for objective in ("dpo", "kto"):
        with pytest.raises(ConfigError, match=r"^run.yaml: replay .* objective: sft only, not "
                                              f"{objective}; remove replay\\.$"):
            RunConfig.from_dict({"objective": objective, "replay": 0.1, "batch_size": 4}, source="run.yaml")
    assert RunConfig.from_dict({"replay": 0.1}).replay == 0.1 and RunConfig().replay == 0.0


# --- real runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def overtrained(tiny_model, tmp_path_factory):
    """The tiny model fully fine-tuned at a high learning rate on one narrow task ("Repeat: w" -> "w w w")
    until it knows nothing else: forgetting, on purpose."""
    from tiny_run import trained_run

    folder = tmp_path_factory.mktemp("forgetting")
    words = ["apple", "river", "cloud", "stone", "green", "seven", "tiger", "lemon"]
    data = folder / "narrow.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Repeat: {w}"},
                                                     {"role": "assistant", "content": f"{w} {w} {w}"}]}) + "\n"
                            for w in words * 8))
    old = os.environ.get("TUNEDECK_HOME")
    os.environ["TUNEDECK_HOME"] = str(folder / "home")
    try:
        run = trained_run(tiny_model, max_steps=30, data=str(data), method="full", learning_rate=5e-3,
                          max_length=48, lora=None)
    finally:
        if old is None:
            os.environ.pop("TUNEDECK_HOME", None)
        else:
            os.environ["TUNEDECK_HOME"] = old
    return run, data


def _passage_loss(model_dir, tokenizer_dir, width=512):
    """Mean loss per token on the probe's passage, the plain way: HF's own loss, piece by piece."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    ids = tok(load_probe()["passage"], add_special_tokens=False)["input_ids"]
    total = count = 0
    with torch.no_grad():
        for i in range(0, len(ids), width):
            piece = torch.tensor([ids[i:i + width]])
            if piece.shape[1] < 2:
                continue
            total += float(model(input_ids=piece, labels=piece).loss) * (piece.shape[1] - 1)
            count += piece.shape[1] - 1
    return total / count


def test_the_probe_sees_an_overtrained_model_forget_general_text(overtrained, tiny_model):
    from engine.eval_scores import format_table
    from engine.evaluate import evaluate_run

    run, _ = overtrained
    skipped = evaluate_run(str(run.dir), limit=1, k=0, probe=False)
    assert skipped["general"] is None and "General ability" not in format_table(skipped)

    result = evaluate_run(str(run.dir), limit=2, k=0)
    general = result["general"]
    base, tuned = general["rows"]
    assert (base["label"], tuned["label"]) == ("base model", "fine-tuned")
    # the perplexities are the plain computation's, and the over-trained model's is clearly higher
    assert base["loss"] == pytest.approx(_passage_loss(tiny_model, tiny_model), rel=1e-4)
    assert tuned["loss"] == pytest.approx(_passage_loss(run.model_dir, run.model_dir), rel=1e-4)
    assert tuned["perplexity"] == pytest.approx(math.exp(tuned["loss"]))
    assert tuned["perplexity"] > 1.3 * base["perplexity"]
    assert general["state"] in ("dropped", "format") and "perplexity on general text x" in general["verdict"]
    assert general["n_prompts"] == len(load_probe()["prompts"]) == len(general["samples"])
    assert result["timings"]["general ability"] > 0
    saved = json.loads((run.dir / "eval.json").read_text())
    assert saved["general"]["verdict"] == general["verdict"]
    text = format_table(result)
    assert "General ability (Tunedeck's probe: " in text and general["verdict"] in text
    # the base model's half is cached: a second evaluation of the same base reuses it, same figures
    again = evaluate_run(str(run.dir), limit=1, k=0, save=False)["general"]
    assert again["base_cached"] is True and again["rows"] == general["rows"]


def test_replay_is_generated_once_by_the_base_model_cached_and_mixed_at_the_share(overtrained, tiny_model):
    """The over-trained model is the base here (it answers every prompt with text; the random tiny
    model only answers newlines). A LoRA run with replay: 0.25 on 64 task rows asks for 21 replay rows
    (fewer when the base model's answer to some prompt is empty)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.launch import resume_run, start_run, stop_run

    base_run, data = overtrained
    base = base_run.model_dir
    run = start_run(RunConfig.from_dict({
        "model": str(base), "data": str(data), "method": "lora", "replay": 0.25, "max_steps": 400, "batch_size": 2,
        "max_length": 192, "learning_rate": 1e-3, "eval_steps": 0, "save_steps": 1000, "logging_steps": 1}))
    wait_run(run, lambda r: logged_step(r) >= 1 or run_ended(r), timeout=200)
    stop_run(run.id, grace=120)
    assert run.info().state == "stopped", run.info().message
    cache = run.dir / REPLAY_FILE
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    stamp, text = cache.stat().st_mtime_ns, cache.read_text()
    asked = chosen_prompts(21, seed=RunConfig().seed)
    answered = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in rows}
    assert 15 <= len(rows) <= 21 and list(answered) == [p for p in asked if p in answered]
    assert set(asked) <= set(replay_prompts())
    start = next(e for e in run.events() if e["type"] == "start")
    assert start["num_examples"] == 64 + len(rows)
    assert start["replay"] == {"share": 0.25, "wanted": 21, "mixed": len(rows), "cached": False}
    log = "\n".join(run.log_tail(200))
    assert (f"Replay: {len(rows)} general examples answered by the base model (cached in replay.jsonl), "
            f"{len(rows) / (64 + len(rows)):.0%} of the {64 + len(rows)} training rows") in log
    if len(rows) < 21:
        assert f"; {21 - len(rows)} answers were empty and were left out." in log

    # the answers are the base model's own greedy answers (the run's adapter played no part)
    tok = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base)).eval()
    for prompt in asked[:3]:
        ids = tok(tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                          add_generation_prompt=True), return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=REPLAY_MAX_NEW_TOKENS, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)[0, ids.shape[1]:].tolist()
        if tok.eos_token_id in out:
            out = out[:out.index(tok.eos_token_id)]
        answer = finished(tok.decode(out, skip_special_tokens=True), cut=len(out) >= REPLAY_MAX_NEW_TOKENS)
        assert answered.get(prompt, "") == answer

    # a resume reads the cache: the same rows, the file untouched
    step = run.info().step
    resume_run(run.id)
    wait_run(run, lambda r: logged_step(r) > step or run_ended(r), timeout=200)
    stop_run(run.id, grace=120)
    assert cache.stat().st_mtime_ns == stamp and cache.read_text() == text
    starts = [e for e in run.events() if e["type"] == "start"]
    assert len(starts) == 2 and starts[1]["num_examples"] == 64 + len(rows) and starts[1]["replay"]["cached"] is True
    assert "(cached in replay.jsonl; reused, not generated again)" in "\n".join(run.log_tail(200))
