"""Did fine-tuning cost the model its general abilities? The probe and how its answers read.

Tunedeck ships a small general-ability probe written for the project (``builtin/general_probe.json``,
offline): ~30 short everyday prompts (arithmetic, questions with one right answer, instructions with a
checkable form such as "answer in one word" or "list three", explain, summarise) and a passage of
ordinary text. ``engine.evaluate`` runs the base and the tuned model on it (perplexity on the passage,
greedy answers to the prompts); this module scores those answers and words the verdict. Pure
functions, no ML import: the TUI and the CLI table use them.

Replay (``replay:`` in a run's config) uses another set of general prompts (``general_prompts.json``),
never the probe's, so the probe stays an honest measure of what replay keeps.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from functools import lru_cache

from .paths import builtin_dir

PROBE_FILE = "general_probe.json"
REPLAY_PROMPTS_FILE = "general_prompts.json"
PROBE_MAX_NEW_TOKENS = 40  # answers to the probe are short; longer ones are cut (the length is still compared)

# a change of this much between base and tuned counts as a loss of general ability
PPL_RATIO_DROP = 1.3
SHARE_DROP = 0.15  # 15 points of the right answers or of the instructions followed (~5 of 32 prompts)
FORMAT_SHARE = 0.5  # half the general answers in the trained format: the model answers everything that way


@lru_cache(maxsize=1)
def load_probe() -> dict:
    """The built-in probe: {"passage": str, "prompts": [{"prompt", "skill", "check"?, "answer"?}]}."""
    return json.loads((builtin_dir() / PROBE_FILE).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def replay_prompts() -> tuple[str, ...]:
    """The general prompts replay asks the base model (none of them is a probe prompt)."""
    return tuple(json.loads((builtin_dir() / REPLAY_PROMPTS_FILE).read_text(encoding="utf-8"))["prompts"])


def probe_messages(probe: dict | None = None) -> list[list[dict]]:
    """The probe prompts as chat prompts (one user turn each, no system prompt)."""
    probe = probe or load_probe()
    return [[{"role": "user", "content": p["prompt"]}] for p in probe["prompts"]]


# --------------------------------------------------------------------------------------------
# One answer
# --------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def _clean(answer: str) -> str:
    """The answer without markdown emphasis, surrounding quotes and trailing punctuation."""
    text = answer.strip().replace("**", "").replace("__", "")
    text = text.strip().strip("\"'`“”‘’").strip()
    return text.rstrip(".!?;:,").strip()


def words(answer: str) -> int:
    return len(answer.split())


def list_items(answer: str) -> list[str]:
    """The items of a list answer: its lines (bullets and numbers removed), or, on one line, the
    comma-separated parts ("a, b and c" counts three)."""
    lines = [_BULLET.sub("", line).strip() for line in answer.strip().splitlines()]
    lines = [line for line in lines if line]
    if len(lines) >= 2:
        return lines
    text = _clean(lines[0]) if lines else ""
    parts = [p.strip() for p in re.split(r",|\band\b", text) if p.strip()]
    return parts


def follows(answer: str, check: str | None) -> bool | None:
    """Does the answer follow the prompt's instruction? None when the prompt has no checkable form."""
    if not check:
        return None
    text = _clean(answer)
    if not text:
        return False
    if check == "number":
        return _NUMBER.fullmatch(text) is not None
    if check == "one_word":
        return len(text.split()) == 1
    if check == "yes_no":
        return re.match(r"(yes|no)\b", text, re.IGNORECASE) is not None and words(text) <= 12
    if check == "list3":
        return len(list_items(answer)) == 3
    if check == "uppercase":
        letters = [c for c in text if c.isalpha()]
        return bool(letters) and all(c.isupper() for c in letters)
    if check == "one_sentence":
        body = answer.strip()
        return "\n" not in body and len([s for s in re.split(r"(?<=[.!?])\s+", body) if s.strip()]) == 1
    if check.startswith("max_words:"):
        return 1 <= words(text) <= int(check.split(":", 1)[1])
    raise ValueError(f"unknown probe check {check!r}")


def correct(answer: str, accepted: list[str], check: str | None = None) -> bool:
    """Is the right answer there? Numbers: the answer's number (after the last "=" if it works a sum
    out); yes/no: the first word; words: the right word, as a whole word, anywhere in a short answer."""
    text = _clean(answer).lower()
    if not text:
        return False
    wanted = [a.lower() for a in accepted]
    if check == "number":
        numbers = _NUMBER.findall(text.rsplit("=", 1)[-1])
        return bool(numbers) and numbers[0].replace(",", ".") in wanted
    if check == "yes_no":
        first = re.match(r"[a-z]+", text)
        return bool(first) and first.group(0) in wanted
    if words(text) > 25:  # a right word buried in a long answer is not an answer
        return False
    return any(re.search(rf"(?<![a-z]){re.escape(a)}(?![a-z])", text) for a in wanted)


# --------------------------------------------------------------------------------------------
# All the answers of one model
# --------------------------------------------------------------------------------------------


def _looks_json(answer: str) -> bool:
    """An answer in a JSON task's style: a JSON object or array (or one opened and cut off), or a quoted
    JSON string such as ``"Paris"``; a bare number or yes/no is an ordinary answer."""
    from .eval_scores import parse_lenient

    text = answer.strip()
    if re.match(r"(```[a-zA-Z]*\s*)?[\[{]", text) or parse_lenient(text) is not None:
        return True
    try:
        return isinstance(json.loads(text), str)
    except ValueError:
        return False


def trained_format(references: list[str]):
    """A test "does this answer look like the task's answers?", or None when the task's answers have no
    recognisable form. JSON answers: the answer is JSON (``_looks_json``). Otherwise: when most
    task answers start with the same word (a label such as "Category:"), answers starting with it."""
    from .eval_scores import is_structured

    refs = [r.strip() for r in references if r and r.strip()]
    if not refs:
        return None
    if is_structured(refs):
        return _looks_json
    firsts = Counter(r.split()[0].lower() for r in refs)
    word, count = firsts.most_common(1)[0]
    if count / len(refs) >= 0.6 and len(refs) >= 3:
        return lambda a: bool(a.strip()) and a.strip().split()[0].lower() == word
    return None


def answer_scores(answers: list[str], probe: dict | None = None, looks_trained=None) -> dict:
    """Scores of one model's answers to the probe prompts (same order): the share right where there
    is a right answer, the share that follow a checkable instruction, mean length in words, and the
    share that look like the task's answers (``looks_trained``: from ``trained_format``)."""
    items = (probe or load_probe())["prompts"]
    if len(answers) != len(items):
        raise ValueError(f"{len(answers)} answers for {len(items)} probe prompts")
    right = [correct(a, p["answer"], p.get("check")) for a, p in zip(answers, items) if p.get("answer")]
    followed = [f for f in (follows(a, p.get("check")) for a, p in zip(answers, items)) if f is not None]
    return {
        "n": len(answers),
        "correct": sum(right) / len(right) if right else None,
        "n_correct": sum(right), "n_answerable": len(right),
        "follows": sum(followed) / len(followed) if followed else None,
        "n_follows": sum(followed), "n_checked": len(followed),
        "mean_words": sum(words(a) for a in answers) / len(answers) if answers else None,
        "trained_format": (sum(bool(looks_trained(a)) for a in answers) / len(answers)
                           if looks_trained and answers else None),
    }


def _ppl(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(loss) if loss < 700 else float("inf")


def probe_row(label: str, loss: float | None, answers: list[str], probe: dict | None = None,
              looks_trained=None) -> dict:
    return {"label": label, "loss": loss, "perplexity": _ppl(loss),
            **answer_scores(answers, probe, looks_trained)}


# --------------------------------------------------------------------------------------------
# The verdict
# --------------------------------------------------------------------------------------------


def _pct(v) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def probe_verdict(base: dict, tuned: dict, *, replay: float = 0.0, format_name: str = "the trained format") -> tuple[str, str]:
    """(state, one line): state is "kept", "dropped" or "format" (the model answers everything the way
    it was trained to answer the task)."""
    changes, dropped = [], []
    pb, pt = base.get("perplexity"), tuned.get("perplexity")
    if pb and pt is not None and math.isfinite(pb):
        ratio = pt / pb if math.isfinite(pt) else float("inf")
        text = f"perplexity on general text x{ratio:.2f} ({pb:.1f} → {pt:.1f})" if math.isfinite(ratio) else \
            "perplexity on general text infinite"
        changes.append(text)
        if ratio >= PPL_RATIO_DROP:
            dropped.append(text)
    for key, what in (("follows", "instructions followed"), ("correct", "right answers")):
        b, t = base.get(key), tuned.get(key)
        if b is None or t is None:
            continue
        text = f"{what} {_pct(b)} → {_pct(t)}"
        changes.append(text)
        if b - t >= SHARE_DROP - 1e-9:
            dropped.append(text)
    wb, wt = base.get("mean_words"), tuned.get("mean_words")
    if wb and wt is not None and (wt > 2 * wb or wt < wb / 2):
        text = f"answers {wt / wb:.1f}x as long ({wb:.0f} → {wt:.0f} words)" if wt > wb else \
            f"answers {wb / max(wt, 1e-9):.1f}x shorter ({wb:.0f} → {wt:.0f} words)"
        changes.append(text)
        dropped.append(text)
    fb, ft = base.get("trained_format"), tuned.get("trained_format")
    remedy = ("; replay: 0.1, fewer steps or a lower learning rate keep more of it" if not replay
              else "; a larger replay share, fewer steps or a lower learning rate keep more of it")
    n = tuned.get("n") or 0
    if ft is not None and ft >= FORMAT_SHARE and ft - (fb or 0) >= FORMAT_SHARE / 2:
        others = [c for c in dropped if not c.startswith("answers ")]
        return "format", (f"The model now answers everything in {format_name}: {round(ft * n)} of {n} general "
                          f"prompts got such an answer (base model: {round((fb or 0) * n)})"
                          + (f"; {', '.join(others)}" if others else "") + remedy + ".")
    if dropped:
        return "dropped", f"General ability dropped: {', '.join(dropped)}{remedy}."
    return "kept", "General ability kept: " + (", ".join(changes) if changes else "no change measured") + "."


# --------------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------------

PROBE_HEADER = ["model", "general ppl", "right answers", "follows instruction", "mean words", "task format"]
PROBE_SHORT = {"general ppl": "ppl", "right answers": "right", "follows instruction": "follows",
               "mean words": "words", "task format": "task fmt"}


def probe_table_rows(general: dict, *, short: bool = False) -> tuple[list[str], list[list[str]]]:
    has_format = any(r.get("trained_format") is not None for r in general.get("rows", []))
    header = PROBE_HEADER if has_format else PROBE_HEADER[:-1]
    rows = []
    for r in general.get("rows", []):
        ppl = r.get("perplexity")
        cells = [r.get("label", "?"),
                 "—" if ppl is None else ("inf" if not math.isfinite(ppl) else f"{ppl:.2f}"),
                 f"{_pct(r.get('correct'))} ({r.get('n_correct', 0)}/{r.get('n_answerable', 0)})",
                 f"{_pct(r.get('follows'))} ({r.get('n_follows', 0)}/{r.get('n_checked', 0)})",
                 "—" if r.get("mean_words") is None else f"{r['mean_words']:.1f}"]
        if has_format:
            cells.append(_pct(r.get("trained_format")))
        rows.append(cells)
    if short:
        header = [PROBE_SHORT.get(h, h) for h in header]
    return header, rows


def probe_caption(general: dict) -> str:
    cached = "; the base model's results were cached" if general.get("base_cached") else ""
    return (f"General ability (Tunedeck's probe: {general.get('n_prompts', 0)} everyday prompts and "
            f"{general.get('passage_words', 0)} words of general text; {general.get('seconds', 0):.1f} s{cached})")


def format_probe(general: dict | None) -> list[str]:
    """The probe's lines for the CLI: a caption, the base-vs-tuned table and the verdict."""
    if not general:
        return []
    header, rows = probe_table_rows(general)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return ["", probe_caption(general), "", line(header), line(["─" * w for w in widths]),
            *(line(r) for r in rows), "", general.get("verdict", "")]
