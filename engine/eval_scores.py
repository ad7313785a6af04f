"""Scores of an evaluation and how they read: pure functions, no ML import (the TUI imports them).

Strings in, numbers out: exact match, and for structured (JSON) answers whether an answer parses
and how many fields match; the verdict sentence; the saved result (``eval.json`` in a run folder);
the comparison table. For preference runs (DPO/KTO, ``"kind": "preference"`` in the result): the
preference scores of log-probabilities on held-out pairs (see "Preference runs" below), their verdict
and table. For GRPO runs (``"kind": "rewards"``): the run's reward functions on greedy answers of the
base and tuned model to held-out prompts, in the same table form (see "GRPO runs" below). The general-ability probe's section (``"general"`` in the result: base vs tuned on everyday
prompts and general text) is scored and worded by engine/general_probe.py and printed after the
table. engine/evaluate.py does the model work that produces the answers and log-probabilities.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .general_probe import format_probe

CONDITIONS = ("zero-shot", "few-shot", "retrieval few-shot", "fine-tuned")
LABELS = {
    "zero-shot": "base, zero-shot",
    "few-shot": "base, few-shot",
    "retrieval few-shot": "base, retrieval few-shot",
    "fine-tuned": "fine-tuned",
}
EVAL_FILE = "eval.json"


_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


def parse_strict(text: str) -> Any | None:
    """The answer as JSON if the whole answer (trimmed) is one JSON object or array, else None."""
    try:
        value = json.loads(text.strip())
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, (dict, list)) else None


def parse_lenient(text: str) -> Any | None:
    """The first JSON object or array in the answer: inside a ``` fence, or after some prose."""
    value = parse_strict(text)
    if value is not None:
        return value
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        value = parse_strict(fenced.group(1))
        if value is not None:
            return value
    decoder = json.JSONDecoder()
    for i, ch in enumerate(stripped):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(stripped, i)
            except ValueError:
                continue
            if isinstance(value, (dict, list)):
                return value
    return None


def values_equal(a: Any, b: Any) -> bool:
    """Field equality: strings ignore case and surrounding space, numbers compare by value,
    booleans and null only equal themselves, lists and objects compare element by element."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    return False


def field_matches(answer: Any | None, reference: Any) -> dict[str, bool]:
    """For each field of the reference object: does the answer have it with an equal value?
    A reference that is not an object counts as one field named ``value``."""
    if isinstance(reference, dict):
        ok = isinstance(answer, dict)
        return {k: ok and k in answer and values_equal(answer[k], v) for k, v in reference.items()}
    return {"value": answer is not None and values_equal(answer, reference)}


def exact_match(answer: str, reference: str) -> bool:
    """The answer is the reference, character for character, ignoring surrounding whitespace."""
    return answer.strip() == reference.strip()


def is_structured(references: list[str]) -> bool:
    """A task is structured when every reference answer is a JSON object or array."""
    refs = [r for r in references if r.strip()]
    return bool(refs) and all(parse_strict(r) is not None for r in refs)


@dataclass
class Scores:
    n: int
    exact_match: float
    json_valid: float | None = None  # structured tasks only: the whole answer parses
    field_accuracy: float | None = None  # structured tasks only: matching fields / reference fields
    fields: dict[str, float] = field(default_factory=dict)  # per-field accuracy

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def score_answers(answers: list[str], references: list[str], *, structured: bool | None = None) -> Scores:
    """Aggregate scores of ``answers`` against ``references`` (same order).

    ``field_accuracy`` is micro-averaged: matching fields over all reference fields, so every
    field of every example weighs the same; a field counts when the answer's first JSON object
    (found leniently, e.g. inside a code fence) has it with an equal value. ``json_valid`` is
    strict: the whole answer must be JSON, as the task asks.
    """
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers for {len(references)} references")
    n = len(references)
    if n == 0:
        return Scores(0, 0.0)
    if structured is None:
        structured = is_structured(references)
    exact = sum(exact_match(a, r) for a, r in zip(answers, references)) / n
    if not structured:
        return Scores(n, exact)
    valid = sum(parse_strict(a) is not None for a in answers) / n
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    for answer, reference in zip(answers, references):
        ref = parse_strict(reference)
        if ref is None:
            continue
        for key, ok in field_matches(parse_lenient(answer), ref).items():
            totals[key] = totals.get(key, 0) + 1
            hits[key] = hits.get(key, 0) + int(ok)
    total = sum(totals.values())
    accuracy = sum(hits.values()) / total if total else 0.0
    return Scores(n, exact, valid, accuracy, {k: hits[k] / totals[k] for k in totals})


def headline(row: dict, structured: bool) -> tuple[str, float | None]:
    """The one number a row is judged by: field accuracy for structured tasks, else exact match."""
    key = "field_accuracy" if structured else "exact_match"
    return key, row.get(key)


def verdict(rows: dict[str, dict], structured: bool, n: int) -> str:
    """One or two sentences: did fine-tuning beat the best prompting alternative, by how much."""
    key, ft = headline(rows.get("fine-tuned", {}), structured)
    name = "field accuracy" if structured else "exact match"
    baselines = [(c, headline(rows[c], structured)[1]) for c in CONDITIONS[:3] if c in rows]
    baselines = [(c, v) for c, v in baselines if v is not None]
    if ft is None or not baselines:
        return "Not enough scores to compare fine-tuning with prompting."
    best, best_v = max(baselines, key=lambda cv: (cv[1], -CONDITIONS.index(cv[0])))
    diff = (ft - best_v) * 100
    if max(ft, best_v) < 0.05:
        text = (f"No approach gets the answers right yet ({ft:.0%} {name} fine-tuned, {best_v:.0%} at best "
                "by prompting): train longer or check the data before drawing conclusions.")
    elif diff >= 5:
        text = (f"Fine-tuning was worth it: {ft:.0%} {name} against {best_v:.0%} for the best prompting "
                f"alternative ({best}), {diff:+.0f} points.")
    elif diff <= -5:
        text = (f"Prompting is enough here: {best} reaches {best_v:.0%} {name} against {ft:.0%} "
                f"fine-tuned ({diff:+.0f} points); train longer or on more data, or keep the prompt.")
    else:
        text = f"Fine-tuning and {best} are within 5 points ({ft:.0%} against {best_v:.0%} {name})"
        ft_tokens, best_tokens = rows["fine-tuned"].get("prompt_tokens"), rows[best].get("prompt_tokens")
        if ft_tokens and best_tokens and best_tokens > 1.2 * ft_tokens:
            text += (f": {best} needs no training but sends {best_tokens / ft_tokens:.1f}x longer prompts "
                     f"({best_tokens:.0f} against {ft_tokens:.0f} tokens a question), so fine-tuning pays off "
                     "when there are many requests.")
        else:
            text += f"; {best} needs no training and may be enough."
    if n < 30:
        text += f" Only {n} examples were scored, so differences under ~15 points may be noise."
    return text


# --------------------------------------------------------------------------------------------
# The saved result
# --------------------------------------------------------------------------------------------


def saved_result(run_dir: Path) -> dict | None:
    """The last evaluation saved in a run folder, if any (cheap: no ML import)."""
    try:
        return json.loads((Path(run_dir) / EVAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def json_safe(value):
    """The result with NaN and infinities as null: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Text table (CLI)
# --------------------------------------------------------------------------------------------


def _pct(v) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def _num(v, fmt="{:.3f}") -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


SHORT = {"exact match": "exact", "valid JSON": "JSON ok", "field accuracy": "fields", "eval loss": "loss",
         "perplexity": "ppl", "prompt tokens": "prompt"}


def table_rows(result: dict, *, short: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table, as strings (the CLI; the TUI with ``short`` headers)."""
    if is_preference_result(result):
        return preference_table_rows(result, short=short)
    if is_rewards_result(result):
        return rewards_table_rows(result, short=short)
    structured = result.get("structured")
    header = ["approach", "exact match"]
    if structured:
        header += ["valid JSON", "field accuracy"]
    header += ["eval loss", "perplexity", "prompt tokens"]
    if short:
        header = [SHORT.get(h, h) for h in header]
    rows = []
    for row in result.get("rows", []):
        cells = [row.get("label", "?"), _pct(row.get("exact_match"))]
        if structured:
            cells += [_pct(row.get("json_valid")), _pct(row.get("field_accuracy"))]
        cells += [_num(row.get("eval_loss")), _num(row.get("perplexity"), "{:.2f}"),
                  _num(row.get("prompt_tokens"), "{:.0f}")]
        rows.append(cells)
    return header, rows


def format_table(result: dict) -> str:
    if is_preference_result(result):
        return format_preference_table(result)
    if is_rewards_result(result):
        return format_rewards_table(result)
    header, rows = table_rows(result)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    )
    out = [
        f"Run {result['run']} ({result.get('weights')}) on {result.get('scored')} examples of the "
        f"{result.get('split')}; few-shot k={result.get('k')}",
        "",
        line(header),
        line(["─" * w for w in widths]),
        *(line(r) for r in rows),
        "",
        result.get("verdict", ""),
    ]
    fields = {r["label"]: r.get("fields") for r in result.get("rows", []) if r.get("fields")}
    if fields:
        names = list(next(iter(fields.values())).keys())
        out += ["", "Per-field accuracy:", "  " + "  ".join(["approach".ljust(26)] + [n[:11].rjust(11) for n in names])]
        for label, per in fields.items():
            out.append("  " + "  ".join([label.ljust(26)] + [_pct(per.get(n)).rjust(11) for n in names]))
    out += format_probe(result.get("general"))
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Preference runs (DPO / KTO): how often the model prefers the chosen answer
# --------------------------------------------------------------------------------------------
#
# A preference run is judged on held-out pairs by log-probabilities (``engine.evaluate`` computes
# them over exactly the answer tokens training scores): a model "prefers the chosen answer" when the
# chosen answer's summed log-probability is above the rejected one's (the raw margin; the per-token
# variant divides each by its length, so that a short answer is not preferred for being short). The
# reward of an answer is beta x (log-probability under the tuned model - under the reference: the
# base model, or the init_from model the run started from), as DPO defines it; reward accuracy is how
# often the chosen answer's reward beats the rejected one's, which is what training logs as
# ``rewards/accuracies`` (chance is 50 %). For answers labelled good/bad (KTO) the label accuracy is
# how often the reward's sign agrees with the label.

PREFERENCE = "preference"
PREFERENCE_LABELS = {"base": "base model", "start": "start (init_from)", "fine-tuned": "fine-tuned"}


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def pair_scores(chosen: list[float], rejected: list[float], chosen_tokens: list[int],
                rejected_tokens: list[int]) -> dict:
    """How often a model prefers the chosen answer of each pair (summed and per-token log-probability)."""
    n = len(chosen)
    return {
        "n": n,
        "prefers_chosen": _mean(c > r for c, r in zip(chosen, rejected)),
        "prefers_chosen_per_token": _mean(c / max(nc, 1) > r / max(nr, 1) for c, r, nc, nr in
                                          zip(chosen, rejected, chosen_tokens, rejected_tokens)),
        "mean_margin": _mean(c - r for c, r in zip(chosen, rejected)),
    }


def reward_scores(tuned_chosen, tuned_rejected, ref_chosen, ref_rejected, beta: float) -> dict:
    """DPO's implicit rewards of the tuned model against its reference, on held-out pairs."""
    rc = [beta * (t - r) for t, r in zip(tuned_chosen, ref_chosen)]
    rr = [beta * (t - r) for t, r in zip(tuned_rejected, ref_rejected)]
    return {
        "reward_accuracy": _mean(c > r for c, r in zip(rc, rr)),
        "reward_margin": _mean(c - r for c, r in zip(rc, rr)),
        "reward_chosen": _mean(rc),
        "reward_rejected": _mean(rr),
    }


def label_scores(tuned: list[float], ref: list[float], labels: list[bool], beta: float) -> dict:
    """KTO's view of answers labelled good or bad: the reward's sign against the label."""
    rewards = [beta * (t - r) for t, r in zip(tuned, ref)]
    return {
        "n": len(labels),
        "label_accuracy": _mean((w > 0) == bool(g) for w, g in zip(rewards, labels)),
        "reward_good": _mean(w for w, g in zip(rewards, labels) if g),
        "reward_bad": _mean(w for w, g in zip(rewards, labels) if not g),
    }


def is_preference_result(result: dict) -> bool:
    return result.get("kind") == PREFERENCE


def preference_verdict(result: dict) -> str:
    """One or two sentences: did preference tuning move the model toward the chosen answers?"""
    n = result.get("scored") or 0
    name = (result.get("objective") or "preference tuning").upper()
    against = "the model it started from" if result.get("reference") == "start" else "the base model"
    if result.get("pairs"):
        acc, margin = result.get("reward_accuracy"), result.get("reward_margin")
        rows = {r["condition"]: r for r in result.get("rows", [])}
        tuned, base = rows.get("fine-tuned", {}), rows.get("base", {})
        if acc is None:
            return "Not enough held-out pairs to judge the preference."
        moved = (f"it prefers the chosen answer in {tuned.get('prefers_chosen', 0):.0%} of pairs against "
                 f"{base.get('prefers_chosen', 0):.0%} for the base model")
        if acc >= 0.6:
            text = (f"{name} moved the model toward the chosen answers: on {n} held-out pairs its reward accuracy "
                    f"against {against} is {acc:.0%} (chance is 50%, mean reward margin {margin:+.2f}), and {moved}.")
        else:
            text = (f"{name} has not learnt the preference yet: reward accuracy {acc:.0%} against {against} on {n} "
                    f"held-out pairs is near chance (50%); {moved}. Train longer or at a higher learning rate, "
                    "or check that the chosen answers really are the better ones.")
    else:
        acc = result.get("label_accuracy")
        if acc is None:
            return "Not enough held-out answers to judge the labels."
        text = (f"On {n} held-out labelled answers, the reward against {against} has the label's sign "
                f"{acc:.0%} of the time (good answers up, bad ones down; chance is 50%).")
    if 0 < n < 30:
        text += f" Only {n} were scored, so differences under ~15 points may be noise."
    return text


PREF_SHORT = {"prefers chosen": "chosen>rej.", "per token": "per token", "log-prob margin": "margin",
              "reward accuracy": "reward acc.", "reward margin": "rew. margin", "label accuracy": "label acc.",
              "reward good": "rew. good", "reward bad": "rew. bad"}


def preference_table_rows(result: dict, *, short: bool = False) -> tuple[list[str], list[list[str]]]:
    if result.get("pairs"):
        header = ["model", "prefers chosen", "per token", "log-prob margin", "reward accuracy", "reward margin"]
        keys = ["prefers_chosen", "prefers_chosen_per_token", "mean_margin", "reward_accuracy", "reward_margin"]
    else:
        header = ["model", "label accuracy", "reward good", "reward bad"]
        keys = ["label_accuracy", "reward_good", "reward_bad"]
    rows = []
    for row in result.get("rows", []):
        cells = [row.get("label", "?")]
        for key in keys:
            v = row.get(key)
            if key in ("prefers_chosen", "prefers_chosen_per_token", "reward_accuracy", "label_accuracy"):
                cells.append(_pct(v))
            else:
                cells.append(_num(v, "{:+.2f}"))
        rows.append(cells)
    if short:
        header = [PREF_SHORT.get(h, h) for h in header]
    return header, rows


def format_preference_table(result: dict) -> str:
    header, rows = preference_table_rows(result)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    what = "pairs" if result.get("pairs") else "labelled answers"
    out = [f"Run {result['run']} ({result.get('objective', '').upper()}, {result.get('weights')}) on "
           f"{result.get('scored')} held-out {what} of the {result.get('split')}; beta {result.get('beta')}", "",
           line(header), line(["─" * w for w in widths]), *(line(r) for r in rows), "", result.get("verdict", "")]
    gen = result.get("generation") or {}
    if gen.get("rows"):
        out += ["", f"Generations on {gen.get('n')} held-out prompts (against the chosen answers):"]
        for condition, scores in gen["rows"].items():
            parts = [f"exact {_pct(scores.get('exact_match'))}"]
            if scores.get("json_valid") is not None:
                parts += [f"valid JSON {_pct(scores.get('json_valid'))}", f"fields {_pct(scores.get('field_accuracy'))}"]
            out.append(f"  {PREFERENCE_LABELS.get(condition, condition):18s} " + ", ".join(parts))
    for k, sample in enumerate(result.get("samples", [])[:3], 1):
        out += ["", f"[{k}] {sample['question'][:200]}"]
        for condition, answer in sample.get("answers", {}).items():
            out.append(f"  {PREFERENCE_LABELS.get(condition, condition) + ':':19s} {answer[:300]}")
    out += format_probe(result.get("general"))
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# GRPO runs: the rewards of greedy answers to held-out prompts, base vs tuned
# --------------------------------------------------------------------------------------------
#
# A GRPO run is judged by what it was trained for: its own reward functions (engine.rewards) scoring
# the greedy answers of the base and the tuned model to held-out prompts. Each row: every reward's
# mean, the weighted total's mean, and the share of answers with full marks (every reward at its
# highest). ``"kind": "rewards"`` in the result.

REWARDS = "rewards"
REWARD_LABELS = {"base": "base model", "start": "start (init_from)", "fine-tuned": "fine-tuned"}


def is_rewards_result(result: dict) -> bool:
    return result.get("kind") == REWARDS


def reward_row(names: list[str], weights: list[float], highs: list[float], scores: list[list[float | None]]) -> dict:
    """Means over answers (``scores``: one list per answer, one score per reward, None: not judged): each
    reward's mean, the weighted total's mean, and the share of answers at the highest possible total."""
    n = len(scores)
    means: dict[str, float | None] = {}
    for k, name in enumerate(names):
        values = [row[k] for row in scores if row[k] is not None]
        means[name] = sum(values) / len(values) if values else None
    totals = [sum(w * v for w, v in zip(weights, row) if v is not None) for row in scores]
    best = sum(w * h for w, h in zip(weights, highs))
    return {"n": n, "rewards": means, "reward": sum(totals) / n if n else None,
            "full_marks": sum(t >= best - 1e-6 for t in totals) / n if n else None}


def rewards_verdict(result: dict) -> str:
    """One or two sentences: did GRPO raise the held-out reward?"""
    rows = {r["condition"]: r for r in result.get("rows", [])}
    base, tuned = rows.get("base", {}), rows.get("fine-tuned", {})
    n = result.get("scored") or 0
    b, t = base.get("reward"), tuned.get("reward")
    if b is None or t is None:
        return "Not enough held-out prompts to judge the rewards."
    fb, ft = base.get("full_marks") or 0.0, tuned.get("full_marks") or 0.0
    if t > b + 1e-9:
        text = (f"GRPO raised the held-out reward from {b:.2f} to {t:.2f} on {n} prompts; full marks {fb:.0%} -> "
                f"{ft:.0%}.")
    else:
        text = (f"GRPO has not raised the held-out reward ({b:.2f} base, {t:.2f} tuned on {n} prompts); train longer, "
                "at a higher learning rate, or check with `tunedeck rewards` that the rewards separate answers.")
    if 0 < n < 30:
        text += f" Only {n} prompts were scored, so differences under ~15 points may be noise."
    return text


def rewards_table_rows(result: dict, *, short: bool = False) -> tuple[list[str], list[list[str]]]:
    names = result.get("rewards") or []
    header = ["model", *names, "total reward", "full marks"]
    if short:
        header = ["model", *[n[:10] for n in names], "total", "full"]
    rows = []
    for row in result.get("rows", []):
        per = row.get("rewards") or {}
        rows.append([row.get("label", "?"), *[_num(per.get(n), "{:.2f}") for n in names],
                     _num(row.get("reward"), "{:.2f}"), _pct(row.get("full_marks"))])
    return header, rows


def format_rewards_table(result: dict) -> str:
    header, rows = rewards_table_rows(result)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [f"Run {result['run']} (GRPO, {result.get('weights')}) on {result.get('scored')} held-out prompts of the "
           f"{result.get('split')}; greedy answers of up to {result.get('max_new_tokens')} tokens; rewards: "
           f"{result.get('rewards_text')}", "",
           line(header), line(["─" * w for w in widths]), *(line(r) for r in rows), "", result.get("verdict", "")]
    for k, sample in enumerate(result.get("samples", [])[:3], 1):
        out += ["", f"[{k}] {sample['question'][:200]}"]
        for condition, answer in sample.get("answers", {}).items():
            out.append(f"  {REWARD_LABELS.get(condition, condition) + ':':19s} {answer[:300]}")
    out += format_probe(result.get("general"))
    return "\n".join(out)
