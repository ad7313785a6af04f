"""Scores of an evaluation and how they read: pure functions, no ML import (the TUI imports them).

Strings in, numbers out: exact match, and for structured (JSON) answers whether an answer parses
and how many fields match; the verdict sentence; the saved result (``eval.json`` in a run folder);
the comparison table. engine/evaluate.py does the model work that produces the answers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    return "\n".join(out)
