"""Evaluation: the pure scoring functions on hand-made answers, BM25 on a hand-checked corpus,
prompt building, and a real evaluation of a tiny run checked against independent computations."""

from __future__ import annotations

import json
import math

import pytest

from engine import evaluate as ev
from engine.retrieval import BM25, tokenize

REF = '{"category": "refund", "priority": "high", "order_id": null, "needs_human": false}'


# --- scoring on hand-made answers ----------------------------------------------------------


def test_parse_strict_and_lenient():
    assert ev.parse_strict(REF)["category"] == "refund"
    assert ev.parse_strict("  [1, 2] \n") == [1, 2]
    assert ev.parse_strict('"just a string"') is None  # a JSON scalar is not a structured answer
    assert ev.parse_strict("Sure! " + REF) is None
    fenced = "```json\n" + REF + "\n```"
    assert ev.parse_strict(fenced) is None
    assert ev.parse_lenient(fenced)["priority"] == "high"
    assert ev.parse_lenient("Here you go: " + REF + " Hope it helps.")["order_id"] is None
    assert ev.parse_lenient("{broken {\"a\": 1}") == {"a": 1}
    assert ev.parse_lenient("no json here") is None


def test_values_equal_rules():
    assert ev.values_equal(" Refund ", "refund")
    assert ev.values_equal(1, 1.0)
    assert not ev.values_equal(False, 0)  # booleans only equal booleans
    assert not ev.values_equal(None, "null")
    assert ev.values_equal(None, None)
    assert ev.values_equal(["A", 2], ["a", 2]) and not ev.values_equal(["a"], ["a", "b"])
    assert ev.values_equal({"x": "Y"}, {"x": "y"}) and not ev.values_equal({"x": 1}, {"x": 1, "z": 2})


def test_field_matches():
    ref = json.loads(REF)
    answer = {"category": "REFUND", "priority": "low", "order_id": None, "extra": 1}
    assert ev.field_matches(answer, ref) == {
        "category": True, "priority": False, "order_id": True, "needs_human": False,
    }
    assert ev.field_matches(None, ref) == dict.fromkeys(ref, False)
    assert ev.field_matches([1, 2], [1, 2]) == {"value": True}


def test_score_answers_hand_checked():
    refs = [
        '{"a": 1, "b": "x"}',
        '{"a": 2, "b": "y"}',
        '{"a": 3, "b": "z"}',
        '{"a": 4, "b": "w"}',
    ]
    answers = [
        '{"a": 1, "b": "x"}',            # exact, valid, 2/2 fields
        ' {"a": 2, "b": "Y"} ',          # not exact (Y), valid, 2/2 (case-insensitive)
        'Answer: {"a": 3, "b": "q"}',    # not exact, not valid, 1/2 found leniently
        'I cannot help with that.',      # nothing: 0/2
    ]
    s = ev.score_answers(answers, refs)
    assert s.n == 4
    assert s.exact_match == pytest.approx(1 / 4)
    assert s.json_valid == pytest.approx(2 / 4)
    assert s.field_accuracy == pytest.approx(5 / 8)
    assert s.fields == {"a": pytest.approx(3 / 4), "b": pytest.approx(2 / 4)}


def test_score_answers_plain_text_task():
    s = ev.score_answers(["Paris", " paris ", "Paris."], ["Paris", "Paris", "Paris"])
    assert s.json_valid is None and s.field_accuracy is None
    assert s.exact_match == pytest.approx(1 / 3)  # exact means exact: case and punctuation count
    assert ev.score_answers([], []).n == 0
    with pytest.raises(ValueError):
        ev.score_answers(["a"], [])


def test_is_structured():
    assert ev.is_structured([REF, "[1]"])
    assert not ev.is_structured([REF, "plain words"])
    assert not ev.is_structured([])


def test_verdict_says_who_won_and_by_how_much():
    rows = {
        "zero-shot": {"field_accuracy": 0.20}, "few-shot": {"field_accuracy": 0.55},
        "retrieval few-shot": {"field_accuracy": 0.61}, "fine-tuned": {"field_accuracy": 0.93},
    }
    text = ev.verdict(rows, True, 60)
    assert text.startswith("Fine-tuning was worth it") and "93%" in text and "61%" in text
    assert "retrieval few-shot" in text and "+32 points" in text and "noise" not in text
    rows["fine-tuned"]["field_accuracy"] = 0.40
    assert ev.verdict(rows, True, 60).startswith("Prompting is enough here: retrieval few-shot")
    rows["fine-tuned"]["field_accuracy"] = 0.63
    assert "within 5 points" in ev.verdict(rows, True, 10) and "noise" in ev.verdict(rows, True, 10)
    assert "needs no training and may be enough" in ev.verdict(rows, True, 60)
    rows["fine-tuned"]["prompt_tokens"], rows["retrieval few-shot"]["prompt_tokens"] = 120.0, 510.0
    assert "sends 4.2x longer prompts (510 against 120 tokens a question)" in ev.verdict(rows, True, 60)
    rows = {c: {"field_accuracy": 0.0} for c in ev.CONDITIONS}
    assert ev.verdict(rows, True, 60).startswith("No approach gets the answers right yet")
    exact_rows = {c: {"exact_match": 0.5} for c in ev.CONDITIONS}
    assert "exact match" in ev.verdict(exact_rows, False, 50)


# --- BM25 ------------------------------------------------------------------------------------


def test_bm25_hand_checked_scores():
    docs = ["refund my order", "order arrived broken", "password reset"]
    index = BM25(docs, k1=1.5, b=0.75)
    # N=3; "order" is in 2 documents, "refund" in 1; avgdl = (3+3+2)/3 = 8/3.
    idf_order = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    idf_refund = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    norm = 1.5 * (1 - 0.75 + 0.75 * 3 / (8 / 3))
    per_hit = 2.5 / (1 + norm)
    scores = index.scores("Refund for order?")
    assert scores[0] == pytest.approx((idf_refund + idf_order) * per_hit)
    assert scores[1] == pytest.approx(idf_order * per_hit)
    assert scores[2] == 0.0
    assert index.top_k("refund for order", 2) == [0, 1]
    assert index.top_k("password", 1) == [2]
    assert index.top_k("unknown words", 2) == [0, 1]  # ties keep document order
    assert index.top_k("order", 3, exclude={1}) == [0, 2]
    assert tokenize("Order #A123, it's") == ["order", "a123", "it", "s"]
    assert BM25([]).top_k("x", 3) == []


# --- prompts ---------------------------------------------------------------------------------


def _ex(user, answer, system="Be terse."):
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


def test_split_example_and_shots():
    prompt, ref = ev.split_example(_ex("q1", "a1"))
    assert ref == "a1" and [m["role"] for m in prompt] == ["system", "user"]
    assert ev.split_example({"text": "plain"}) is None
    assert ev.split_example({"messages": [{"role": "user", "content": "hi"}]}) is None
    shots = [ev.split_example(_ex("q2", "a2")), ev.split_example(_ex("q3", "a3"))]
    full = ev.with_shots(prompt, shots)
    assert [(m["role"], m["content"]) for m in full] == [
        ("system", "Be terse."), ("user", "q2"), ("assistant", "a2"), ("user", "q3"), ("assistant", "a3"),
        ("user", "q1"),
    ]
    assert ev.fixed_shots(shots * 5, 3, seed=0) == ev.fixed_shots(shots * 5, 3, seed=0)
    assert len(set(ev.fixed_shots(shots * 5, 3))) == 3 and ev.fixed_shots(shots, 0) == []


def test_cpu_threads_leave_busy_cores_alone():
    assert ev.cpu_threads(2, 0.0) == 2
    assert ev.cpu_threads(2, 0.8) == 1
    assert ev.cpu_threads(2, 14.0) == 1
    assert ev.cpu_threads(16, 3.2) == 13


def test_table_rows_and_text():
    result = {
        "run": "r1", "weights": "adapter", "scored": 2, "split": "validation split", "k": 3,
        "structured": True, "verdict": "Fine-tuning was worth it.",
        "rows": [
            {"label": "base, zero-shot", "exact_match": 0.0, "json_valid": 0.5, "field_accuracy": 0.25,
             "eval_loss": 2.0, "perplexity": math.exp(2.0), "fields": {"a": 0.5}},
            {"label": "fine-tuned", "exact_match": 1.0, "json_valid": 1.0, "field_accuracy": 1.0,
             "eval_loss": 0.1, "perplexity": math.exp(0.1), "fields": {"a": 1.0}},
        ],
    }
    header, rows = ev.table_rows(result)
    assert header == ["approach", "exact match", "valid JSON", "field accuracy", "eval loss", "perplexity",
                      "prompt tokens"]
    assert ev.table_rows(result, short=True)[0] == ["approach", "exact", "JSON ok", "fields", "loss", "ppl", "prompt"]
    assert rows[0] == ["base, zero-shot", "0%", "50%", "25%", "2.000", "7.39", "—"]
    assert rows[1][1:4] == ["100%", "100%", "100%"]
    text = ev.format_table(result)
    assert "Fine-tuning was worth it." in text and "Per-field accuracy" in text


# --- the evaluation split ------------------------------------------------------------------------


def _write_data(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"question {i}"},
                                             {"role": "assistant", "content": f"answer {i}"}]}) + "\n")
    return str(path)


def test_eval_rows_are_the_ones_the_worker_held_out(tmp_path):
    data = _write_data(tmp_path / "d.jsonl", 20)
    train, held, where = ev.eval_examples({"model": "demo", "data": data, "eval_split": 0.25, "seed": 7})
    assert len(held) == 5 and len(train) == 15 and where.startswith("held-out 25% of the training data")
    assert "chose the best weights" in where  # keep: best used these rows: an honest caveat
    assert not {json.dumps(e) for e in held} & {json.dumps(e) for e in train}
    _, held_again, _ = ev.eval_examples({"model": "demo", "data": data, "eval_split": 0.25, "seed": 7})
    assert held_again == held  # seeded: the same rows every time
    _, demo_held, where = ev.eval_examples({"model": "demo", "data": "demo", "eval_steps": 0})
    assert len(demo_held) == 60 and where == "validation split"  # never trained on, even without eval steps
    _, nothing, _ = ev.eval_examples({"model": "demo", "data": data, "eval_steps": 0})
    assert nothing == []  # everything was trained on: nothing unseen to evaluate


def test_a_test_set_is_kept_apart_from_training_and_validation_and_evaluated_by_default(tmp_path):
    from engine.errors import TunedeckError
    from engine.worker import split_examples

    data = _write_data(tmp_path / "d.jsonl", 40)
    config = {"model": "demo", "data": data, "eval_split": 0.25, "test_split": 0.1, "seed": 7}
    train, validation, test = split_examples(ev.run_config(config))
    assert (len(train), len(validation), len(test)) == (27, 9, 4)
    seen = [{json.dumps(e) for e in rows} for rows in (train, validation, test)]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    # tunedeck eval: the test set by default, and says so; validation when asked
    shots, rows, where = ev.eval_examples(config)
    assert rows == test and where.startswith("test set (held-out 10%") and shots == train
    assert ev.eval_examples(config, split="validation")[1] == validation
    # a test file wins over the share
    test_file = _write_data(tmp_path / "t.jsonl", 3)
    _, rows, where = ev.eval_examples({**config, "test_data": test_file})
    assert len(rows) == 3 and where == f"test set {test_file}"
    # asking for a test set a run never kept: one sentence that says what to do
    with pytest.raises(TunedeckError, match="kept no test set apart .* train with test_split: 0.1"):
        ev.eval_examples({"model": "demo", "data": data}, split="test")


# --- a real evaluation of a trained tiny run -----------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """The tiny model trained for real by the engine's detached worker (module-wide, trained once)."""
    import os

    from tiny_run import trained_run

    home = tmp_path_factory.mktemp("eval-home")
    old = os.environ.get("TUNEDECK_HOME")
    os.environ["TUNEDECK_HOME"] = str(home)
    try:
        run = trained_run(tiny_model, max_steps=30)
    finally:
        if old is None:
            os.environ.pop("TUNEDECK_HOME", None)
        else:
            os.environ["TUNEDECK_HOME"] = old
    return run


def _independent(run, tiny_model, n, max_new_tokens):
    """Loss and greedy answers computed the plain way: one example at a time, HF's own loss."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.data import load_examples
    from engine.data.encode import encode

    tok = AutoTokenizer.from_pretrained(str(run.adapter_dir))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)), str(run.adapter_dir))
    model.eval()
    examples = load_examples("demo", split="validation")[:n]
    out = {}
    for which in ("base", "tuned"):
        total = count = 0.0
        answers = []
        ctx = model.disable_adapter() if which == "base" else torch.no_grad()
        with ctx, torch.no_grad():
            for ex in examples:
                enc = encode(tok, ex, 192)
                ids = torch.tensor([enc.input_ids])
                labels = torch.tensor([[t if m else -100 for t, m in zip(enc.input_ids, enc.trained)]])
                n_tokens = sum(enc.trained[1:])
                total += float(model(input_ids=ids, labels=labels).loss) * n_tokens
                count += n_tokens
                prompt = tok.apply_chat_template(ex["messages"][:-1], tokenize=False, add_generation_prompt=True)
                p = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
                gen = model.generate(input_ids=p, attention_mask=torch.ones_like(p), max_new_tokens=max_new_tokens,
                                     do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
                new = gen[0, p.shape[1]:].tolist()
                if tok.eos_token_id in new:
                    new = new[: new.index(tok.eos_token_id)]
                answers.append(tok.decode(new, skip_special_tokens=True).strip())
        out[which] = (total / count, answers)
    return examples, out


def test_eval_of_a_trained_run_matches_an_independent_computation(trained, tiny_model):
    n = 6
    result = ev.evaluate_run(str(trained.dir), limit=n, k=2)
    assert result["scored"] == n and result["weights"] == "adapter" and result["structured"] is True
    examples, plain = _independent(trained, tiny_model, n, result["max_new_tokens"])

    base, tuned = result["loss"]["base"], result["loss"]["fine-tuned"]
    assert base["eval_loss"] == pytest.approx(plain["base"][0], rel=1e-4)
    assert tuned["eval_loss"] == pytest.approx(plain["tuned"][0], rel=1e-4)
    assert tuned["perplexity"] == pytest.approx(math.exp(tuned["eval_loss"]))
    assert tuned["eval_loss"] < base["eval_loss"] - 0.5  # 30 steps of real training moved it a lot

    samples = result["samples"]
    assert [s["reference"] for s in samples] == [e["messages"][-1]["content"] for e in examples]
    assert [s["answers"]["fine-tuned"] for s in samples] == plain["tuned"][1]  # batched == one by one
    assert [s["answers"]["zero-shot"] for s in samples] == plain["base"][1]

    rows = {r["label"]: r for r in result["rows"]}
    for condition, label in ev.LABELS.items():
        answers = [s["answers"][condition] for s in samples]
        refs = [s["reference"] for s in samples]
        # exact match and valid JSON counted by hand from the answers the run recorded
        assert rows[label]["exact_match"] == sum(a.strip() == r for a, r in zip(answers, refs)) / n
        assert rows[label]["json_valid"] == sum(_is_json_object(a) for a in answers) / n
    assert rows["base, few-shot"]["prompt_tokens"] > rows["fine-tuned"]["prompt_tokens"] > 0
    saved = json.loads((trained.dir / "eval.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))


def _is_json_object(text):
    try:
        return isinstance(json.loads(text), (dict, list))
    except ValueError:
        return False


def test_eval_cli_streams_progress_then_the_result(trained):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "engine", "eval", str(trained.dir), "--json", "--progress",
                           "--limit", "3", "--k", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert events[-1]["type"] == "result" and events[-1]["scored"] == 3 and events[-1]["k"] == 1
    fractions = [e["fraction"] for e in events if e["type"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(e["type"] == "status" for e in events)


def test_eval_refuses_a_run_without_weights_in_one_sentence(tiny_model):
    import subprocess
    import sys

    from engine.runs import create_run
    from tiny_run import config_yaml

    run = create_run(config_yaml(tiny_model), model="tiny", method="lora")
    proc = subprocess.run([sys.executable, "-m", "engine", "eval", run.id], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tunedeck:")]
    assert len(lines) == 1 and "no trained weights yet" in lines[0]
