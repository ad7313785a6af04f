"""Token statistics for a dataset with a model's tokenizer: the length histogram, how many examples
exceed ``max_length`` (and would be cut), how many tokens are actually trained, and which rows hold
the text of a special token. A list of sources is measured as the mix the trainer gets.

Preference data (pairs, labelled answers) is measured as it trains: each pair as two sequences,
prompt + chosen and prompt + rejected (``encode.encode_sides_many``), with the length of the prompt,
the chosen and the rejected answer (or the labelled answer) reported apart under ``preference``,
with how many prompts and answers pass ``max_prompt_length`` / ``max_completion_length``.

Every valid row goes through ``encode.encode_many`` — the same mask the worker trains with. A JSON
Lines file is split into byte ranges handled by one process each (the tokenizer is loaded once
and shared by fork), so a million rows take minutes, not tens of minutes; other sources are done
in this process. Imports transformers (through the tokenizer); never import this from the TUI.
"""

from __future__ import annotations

import math
import os
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from . import formats
from .dataset import DEFAULT_SEED, data_sources, detect_file_format, mix, mix_label, refuse
from .hub import open_source
from .encode import cut, encode_many, special_token_text as find_special_text
from .encode import _sides as preference_sides
from .reader import JsonlSource, RecordsSource, Source, parse_json_line
from ..packing import even_sample
from ..errors import DataError
from ..estimate import LONGEST_KEPT

BATCH = 256
HIST_BINS = 200
LISTED_OVER = 50
PARTS = ("prompt", "chosen", "rejected", "completion")

Progress = Callable[[float, int], None]


@dataclass
class _Partial:
    lengths: array = field(default_factory=lambda: array("l"))
    trained: int = 0
    tokens: int = 0
    over: int = 0
    over_where: list = field(default_factory=list)
    nothing_trained: int = 0
    nothing_trained_where: list = field(default_factory=list)
    special: int = 0  # rows holding special-token text
    special_where: list = field(default_factory=list)  # [(where, [{"place", "token"}])]
    bad: int = 0
    rows: int = 0
    examples: int = 0
    # preference data: token lengths of each part, uncut
    parts: dict = field(default_factory=lambda: {k: array("l") for k in PARTS})
    pairs: int = 0
    good: int = 0
    bad_answers: int = 0
    over_prompt: int = 0
    over_completion: int = 0

    def add(self, other: "_Partial") -> None:
        self.examples += other.examples
        for k in PARTS:
            self.parts[k].extend(other.parts[k])
        self.pairs += other.pairs
        self.good += other.good
        self.bad_answers += other.bad_answers
        self.over_prompt += other.over_prompt
        self.over_completion += other.over_completion
        self.lengths.extend(other.lengths)
        self.trained += other.trained
        self.tokens += other.tokens
        self.over += other.over
        self.over_where += other.over_where
        self.nothing_trained += other.nothing_trained
        self.nothing_trained_where += other.nothing_trained_where
        self.special += other.special
        self.special_where += other.special_where
        self.bad += other.bad
        self.rows += other.rows


def _flush(tokenizer, batch: list[tuple[int, dict]], max_length: int, out: _Partial, special_token_text: str,
           limits: dict | None = None) -> None:
    limits = limits or {}
    flat, owner = [], []
    for k, (_, ex) in enumerate(batch):
        kind = formats.kind_of(ex)
        sides = [formats.as_messages(ex)] if kind == "prompt" else preference_sides(ex) if kind != "sft" else [ex]
        flat += sides
        owner += [k] * len(sides)
    whole = any(formats.kind_of(ex) not in ("sft", "prompt") for _, ex in batch)  # preference: cut after measuring the parts
    encoded = encode_many(tokenizer, flat, None if whole else max_length, special_token_text=special_token_text)
    per: list[list] = [[] for _ in batch]
    for k, enc in zip(owner, encoded):
        per[k].append(enc)
    for (where, ex), sides in zip(batch, per):
        found = find_special_text(tokenizer, ex)
        if found:
            out.special += 1
            if len(out.special_where) < LISTED_OVER:
                out.special_where.append((where, found))
        out.examples += 1
        kind = formats.kind_of(ex)
        if kind not in ("sft", "prompt"):
            sides, over = _preference_parts(tokenizer, ex, kind, sides, max_length, limits, out)
        else:
            if whole:
                sides = [cut(tokenizer, e, max_length) for e in sides]
            over = any(enc.truncated for enc in sides)
        for enc in sides:
            out.lengths.append(enc.full_length)
            out.tokens += len(enc.input_ids)
            out.trained += enc.trained_tokens
        n = min(enc.trained_tokens for enc in sides)  # a pair with one side left untrained trains nothing
        if kind == "prompt":  # GRPO trains on sampled answers, not on the row's
            n = 1
        if over:
            out.over += 1
            if len(out.over_where) < LISTED_OVER:
                out.over_where.append(where)
        if n == 0:
            out.nothing_trained += 1
            if len(out.nothing_trained_where) < LISTED_OVER:
                out.nothing_trained_where.append(where)
    batch.clear()


def _preference_parts(tokenizer, ex: dict, kind: str, sides: list, max_length: int, limits: dict, out: _Partial):
    """Record the prompt and answer lengths of a pair or labelled answer; return its sides cut as trained."""
    prompt = sides[0].prompt_length
    out.parts["prompt"].append(prompt)
    names = ("chosen", "rejected") if kind == "pair" else ("completion",)
    for name, enc in zip(names, sides):
        out.parts[name].append(len(enc.input_ids) - enc.prompt_length)
    if kind == "pair":
        out.pairs += 1
    elif ex["label"]:
        out.good += 1
    else:
        out.bad_answers += 1
    max_prompt, max_completion = limits.get("max_prompt_length"), limits.get("max_completion_length")
    if max_prompt and prompt > max_prompt:
        out.over_prompt += 1
    if max_completion and any(len(e.input_ids) - e.prompt_length > max_completion for e in sides):
        out.over_completion += 1
    limited = [cut(tokenizer, e, None, max_prompt_length=max_prompt, max_completion_length=max_completion)
               for e in sides]
    over = any(len(e.input_ids) > max_length for e in limited)  # what max_length itself cuts
    final = [cut(tokenizer, e, max_length, max_prompt_length=max_prompt, max_completion_length=max_completion)
             for e in sides]
    return final, over


def _scan_rows(tokenizer, rows, file_format, max_length, out: _Partial, tick=None, special_token_text="literal",
               objective=None, limits=None) -> None:
    batch: list[tuple[int, dict]] = []
    limits = limits or {}
    for where, record in rows:
        out.rows += 1
        if record is None:
            out.bad += 1
            continue
        fmt, example, problem = formats.check_row(record, file_format, objective)
        if problem is not None:
            out.bad += 1
            continue
        batch.append((where, example))
        if len(batch) >= BATCH:
            _flush(tokenizer, batch, max_length, out, special_token_text, limits)
            if tick:
                tick(out)
    if batch:
        _flush(tokenizer, batch, max_length, out, special_token_text, limits)
        if tick:
            tick(out)


# --- parallel JSON Lines -------------------------------------------------------------------------

_FORK_STATE: dict = {}


def _jsonl_range(task: tuple[int, int, int, int]) -> _Partial:
    """Worker: the rows starting in bytes [start, end) of the file; ``first_line`` numbers them."""
    start, end, first_line, slot = task
    st = _FORK_STATE
    counter = st["counter"]
    out = _Partial()

    def tick(p: _Partial) -> None:
        counter[slot] = p.rows

    rows = _rows_with_lines(st["source"], start, end, first_line)
    _scan_rows(st["tokenizer"], rows, st["format"], st["max_length"], out, tick, st["special_token_text"],
               st["objective"], st["limits"])
    counter[slot] = out.rows
    return out


def _rows_with_lines(source: JsonlSource, start: int, end: int, first_line: int):
    """(line number, parsed record) for every non-blank line starting in [start, end)."""
    line = first_line - 1
    with open(source.path, "rb") as f:
        if start:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()
                line += 1  # the line that straddles ``start`` belongs to the previous range
        pos = f.tell()
        while pos < end:
            raw = f.readline()
            if not raw:
                return
            line += 1
            pos += len(raw)
            stripped = raw.strip()
            if not stripped or (line == 1 and stripped == b"\xef\xbb\xbf"):
                continue
            record, _, _ = parse_json_line(raw)
            yield line, record


def _line_starts(path, cuts: list[int]) -> list[int]:
    """1-based line number of the first line that starts at or after each cut."""
    out = []
    newlines = 0
    pos = 0
    with open(path, "rb") as f:
        for cut in cuts:
            while pos < cut:
                chunk = f.read(min(1 << 22, cut - pos))
                if not chunk:
                    break
                newlines += chunk.count(b"\n")
                pos += len(chunk)
            out.append(newlines + 1)
    return out


def _parallel_jsonl(tokenizer, source: JsonlSource, file_format, max_length, workers, progress, expected_rows,
                    special_token_text, objective=None, limits=None):
    import multiprocessing as mp

    size = source.size
    cuts = [size * k // workers for k in range(workers)]
    # line numbers: a range starting mid-line gives that line to the previous range
    starts = _line_starts(source.path, cuts)
    ctx = mp.get_context("fork")
    counter = ctx.Array("q", workers, lock=False)
    _FORK_STATE.update(source=source, tokenizer=tokenizer, format=file_format, max_length=max_length, counter=counter,
                       special_token_text=special_token_text, objective=objective, limits=limits)
    tasks = [(cuts[k], cuts[k + 1] if k + 1 < workers else size, starts[k], k) for k in range(workers)]
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    total = _Partial()
    with ctx.Pool(workers) as pool:
        pending = pool.map_async(_jsonl_range, tasks)
        while not pending.ready():
            pending.wait(0.5)
            done = sum(counter)
            if progress and expected_rows:
                progress(min(0.999, done / expected_rows), done)
        for part in pending.get():
            total.add(part)
    _FORK_STATE.clear()
    return total


def _mixed_source(data, split: str, seed: int, objective: str | None = None) -> Source:
    """The examples a mix of sources gives the trainer, as a Source (each source's bad rows are left
    out here; ``data inspect`` lists them source by source)."""
    from .dataset import iter_checked

    sources = data_sources(data)
    valid = []
    for s in sources:
        src = open_source(s.ref, split=split)
        file_format = detect_file_format(src)
        refuse(src, file_format, objective)
        valid.append([c.example for c in iter_checked(src, file_format, objective) if c.problem is None])
        src.close()
    return RecordsSource(mix_label(data), mix(sources, valid, seed))


# --- summary ---------------------------------------------------------------------------------------


def histogram(lengths, max_length: int, bins: int = HIST_BINS) -> dict:
    if not lengths:
        return {"edges": [0, max_length], "counts": [0]}
    top = max(max(lengths), max_length)
    width = max(1, math.ceil(top / bins))
    counts = [0] * bins
    for n in lengths:
        counts[min(bins - 1, n // width)] += 1
    return {"edges": [k * width for k in range(bins + 1)], "counts": counts}


def _quantile(sorted_values, q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1) + 0.5))]


def _summary(values) -> dict:
    values = sorted(values)
    n = len(values)
    return {"min": values[0] if n else 0, "max": values[-1] if n else 0,
            "mean": round(sum(values) / n, 1) if n else 0, "p50": _quantile(values, 0.5),
            "p90": _quantile(values, 0.9), "p99": _quantile(values, 0.99)}


def preference_summary(part: _Partial, limits: dict | None = None) -> dict | None:
    """Pairs and labels with the token lengths of the prompt and of each answer (None for SFT data)."""
    if not (part.pairs or part.good or part.bad_answers):
        return None
    limits = limits or {}
    out = {"pairs": part.pairs, "labelled": {"good": part.good, "bad": part.bad_answers},
           "max_prompt_length": limits.get("max_prompt_length"),
           "max_completion_length": limits.get("max_completion_length"),
           "over_max_prompt_length": part.over_prompt, "over_max_completion_length": part.over_completion}
    for name in PARTS:
        if part.parts[name]:
            out[name] = _summary(part.parts[name])
    return out


def summarise(part: _Partial, max_length: int, unit: str, limits: dict | None = None) -> dict:
    lengths = sorted(part.lengths)
    n = len(lengths)
    return {
        "examples": part.examples or n,
        "sequences": n,
        "preference": preference_summary(part, limits),
        "rows": part.rows,
        "skipped_bad_rows": part.bad,
        "max_length": max_length,
        "tokens": part.tokens,
        "trainable_tokens": part.trained,
        "over_max_length": part.over,
        "over_max_length_where": {unit: sorted(part.over_where)[:LISTED_OVER]},
        "nothing_trained": part.nothing_trained,
        "nothing_trained_where": {unit: sorted(part.nothing_trained_where)[:LISTED_OVER]},
        "special_token_text": part.special,
        "special_token_text_where": [{unit: where, "found": found} for where, found in sorted(
            part.special_where, key=lambda wf: wf[0])[:LISTED_OVER]],
        "length": {
            "min": lengths[0] if n else 0,
            "max": lengths[-1] if n else 0,
            "mean": round(sum(lengths) / n, 1) if n else 0,
            "p50": _quantile(lengths, 0.5),
            "p90": _quantile(lengths, 0.9),
            "p99": _quantile(lengths, 0.99),
        },
        "histogram": histogram(lengths, max_length),
        # the longest rows, longest first: what the memory estimate sizes the largest batch from
        "longest": lengths[::-1][:LONGEST_KEPT],
        # an even sample of every row's length: the spread that decides whether packing pays
        "spread": even_sample(lengths),
    }


def token_stats(
    ref: str | Source,
    tokenizer,
    max_length: int,
    *,
    split: str = "train",
    progress: Progress | None = None,
    workers: int | None = None,
    partial: Callable[[dict], None] | None = None,
    min_parallel_bytes: int = 8 << 20,
    special_token_text: str = "literal",
    seed: int = DEFAULT_SEED,
    objective: str | None = None,
    max_prompt_length: int | None = None,
    max_completion_length: int | None = None,
) -> dict:
    """Statistics over every valid row (bad rows are skipped and counted); for a list of sources, over
    the examples the mix takes (``seed``ed as the trainer's), located by their place in the mix. Rows
    are read for ``objective`` (None: the data decides); preference data adds ``preference``."""
    started = time.perf_counter()
    if max_length is None or max_length < 1:
        raise DataError(f"max_length must be a positive number of tokens, not {max_length!r}.")
    limits = {"max_prompt_length": max_prompt_length, "max_completion_length": max_completion_length}
    if isinstance(ref, (list, tuple)):
        source = _mixed_source(ref, split, seed, objective)
        file_format = detect_file_format(source)
        file_format = file_format if file_format in formats.PREFERENCE_FORMATS else None
    else:
        source = ref if isinstance(ref, Source) else open_source(ref, split=split)
        file_format = detect_file_format(source)
        refuse(source, file_format, objective)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if isinstance(source, JsonlSource) and workers > 1 and source.size >= min_parallel_bytes:
        # a rough row count for progress: the average row size of the first rows
        head = source.head(256)
        avg = (source._offsets[len(head) - 1] / max(1, len(head) - 1)) if len(head) > 1 else source.size
        expected = int(source.size / max(1.0, avg))
        total = _parallel_jsonl(tokenizer, source, file_format, max_length, workers, progress, expected,
                                special_token_text, objective, limits)
    else:
        total = _Partial()
        last = [time.perf_counter()]

        def tick(p: _Partial) -> None:
            now = time.perf_counter()
            if now - last[0] > 0.25:
                last[0] = now
                if progress:
                    progress(source.iter_fraction(p.rows), p.rows)
                if partial:
                    partial(summarise(p, max_length, source.unit, limits))

        rows = ((raw.where, raw.record) for raw in source.iter_rows())
        _scan_rows(tokenizer, rows, file_format, max_length, total, tick, special_token_text, objective, limits)
    if progress:
        progress(1.0, total.rows)
    out = summarise(total, max_length, source.unit, limits)
    out["format"] = "mix" if isinstance(ref, (list, tuple)) else file_format
    out["file"] = source.display
    out["special_token_text_mode"] = special_token_text
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out
