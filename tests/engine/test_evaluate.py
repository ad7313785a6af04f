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
    assert header == ["approach", "exact match", "valid JSON", "field acc.", "eval loss", "perplexity"]
    assert rows[0] == ["base, zero-shot", "0%", "50%", "25%", "2.000", "7.39"]
    assert rows[1][1:4] == ["100%", "100%", "100%"]
    text = ev.format_table(result)
    assert "Fine-tuning was worth it." in text and "Per-field accuracy" in text
