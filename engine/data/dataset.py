"""A dataset reference -> rows -> format, problems and training examples; several sources -> a mix.

``open_source`` turns what the user wrote (a file, a ``save_to_disk`` folder, ``demo``) into a lazy
``Source``. No ML library here (the TUI and the launcher use this module): a hub dataset id is
opened by ``engine.data.hub``, the one module that imports ``datasets``, and its ``Source`` goes
through the same ``inspect`` / ``load_examples``. ``inspect`` makes one pass over every row: file format, counts, each bad
row with its line/record number, warnings. ``load_examples`` is what the trainer calls: every row
normalised, or one DataError that names the first bad row and how many there are.

What counts as usable depends on the run's objective (``objective``: sft, dpo, kto; see
``formats.accepted``): for SFT, preference pairs and labelled answers are refused with a sentence
(``RefusedData``), for DPO everything but pairs is. ``objective=None`` lets the data decide (a file
of pairs is read as pairs), which is what ``inspect`` and ``load_examples`` do unless told; ``check``
(one row, shown as a conversation by the Data screen) keeps SFT unless told.

A run's ``data`` is one reference or a list of sources (``engine.config``: each ``{path, weight?,
fraction?}``). ``mix`` draws the training examples of a list, seeded: with weights, each source's
share of the mix is its weight (normalised), and the mix is as large as it can be without repeating
a row (the source that runs out first is used whole); with ``fraction``, that share of the source's
rows is used; a source with neither is used whole.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import demo
from ..errors import DataError
from . import formats
from .reader import RawRow, Source, open_file, open_folder, saved_splits, split_files

SPLITS = ("train", "validation")
DETECT_ROWS = 64  # rows looked at to decide the file's format
MAX_LISTED_ERRORS = 1000

Progress = Callable[[float, int], None]
"""progress(fraction done, rows so far)."""


def _looks_like_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "~", "/")) and not Path(ref).suffix


class RefusedData(DataError):
    """Data recognised as something other than supervised fine-tuning data (``formats.REFUSED``):
    ``kind`` says what it is (preference, kto, prompt_only, classification, multimodal)."""

    def __init__(self, message: str, kind: str, display: str):
        super().__init__(message)
        self.kind, self.display = kind, display


@dataclass(frozen=True)
class DataSource:
    """One source of a run's data: a file, folder, hub id or demo, and how much of it to use."""

    ref: str
    weight: float | None = None
    fraction: float | None = None


def data_sources(data) -> list[DataSource]:
    """The sources of a run's ``data`` value (a reference, or the list ``engine.config`` checked)."""
    if isinstance(data, (list, tuple)):
        return [DataSource(s) if isinstance(s, str) else
                DataSource(s["path"], s.get("weight"), s.get("fraction")) for s in data]
    return [DataSource(data)]


def with_refs(data, fn: Callable[[str], str]):
    """``data`` (a reference, or a list of sources, even unchecked YAML) with ``fn`` applied to each
    reference: for making paths absolute or relative to a config file."""
    if isinstance(data, str):
        return fn(data)
    if isinstance(data, list):
        return [fn(s) if isinstance(s, str) else
                {**s, "path": fn(s["path"])} if isinstance(s, dict) and isinstance(s.get("path"), str) else s
                for s in data]
    return data


def mix_label(data) -> str:
    return " + ".join(s.ref for s in data_sources(data))


def mix_counts(sources: list[DataSource], available: list[int]) -> list[int]:
    """How many examples each source gives the mix, given how many it has."""
    weights = [s.weight for s in sources]
    if any(w is not None for w in weights):
        shares = [(w or 0) / sum(w or 0 for w in weights) for w in weights]
        total = min(n / p for n, p in zip(available, shares) if p > 0)  # no row used twice
        return [min(n, round(p * total)) for n, p in zip(available, shares)]
    return [n if s.fraction is None or not n else min(n, max(1, round(s.fraction * n)))
            for s, n in zip(sources, available)]


def mix(sources: list[DataSource], examples: list[list[dict]], seed: int) -> list[dict]:
    """The mixed examples: each source's share drawn at random (seeded), then interleaved."""
    rng = random.Random(seed)
    out: list[dict] = []
    for rows, take in zip(examples, mix_counts(sources, [len(e) for e in examples])):
        out += rows if take >= len(rows) else [rows[i] for i in sorted(rng.sample(range(len(rows)), take))]
    rng.shuffle(out)
    return out


def mix_summary(sources: list[DataSource], available: list[int]) -> list[dict]:
    """Per source: what the user asked for and what the mix takes (for inspect and the Data screen)."""
    taken = mix_counts(sources, available)
    total = sum(taken) or 1
    return [{"ref": s.ref, "weight": s.weight, "fraction": s.fraction, "examples": n, "taken": t,
             "share": round(t / total, 4)} for s, n, t in zip(sources, available, taken)]


def is_local(ref) -> bool:
    """True when ``ref`` is read from the disk (everything but a hub id); no import, no network."""
    if isinstance(ref, (list, tuple)):
        return all(is_local(s.ref) for s in data_sources(ref))
    ref = (ref or "").strip()
    return ref in demo.DEMOS or Path(ref).expanduser().exists() or not _looks_like_hub_id(ref)


def demo_path(split: str = "train", name: str = demo.DEMO) -> Path:
    if split in ("train", "validation"):
        return demo.data_file(name, split)
    raise DataError(f"The {name} data has no '{split}' split; use train or validation.")


def open_source(ref: str, *, split: str = "train") -> Source:
    """A lazy Source for a data reference; raises DataError with one sentence if it cannot be opened."""
    ref = (ref or "").strip()
    if not ref:
        raise DataError("No data given: pass a .jsonl, .json, .csv, .tsv or .parquet file, a saved dataset folder, or demo.")
    if ref in demo.DEMOS:
        path = demo_path(split, ref)
        return open_file(path, display=path.name)
    path = Path(ref).expanduser()
    if path.is_dir():
        return open_folder(path, split, display=ref)
    if path.is_file():
        if split != "train":
            raise DataError(f"{ref} is a single file, so it has no '{split}' split; pass the {split} file itself.")
        return open_file(path, display=ref)
    if path.exists():
        raise DataError(f"{ref} is neither a file nor a folder.")
    if _looks_like_hub_id(ref):
        raise DataError(f"'{ref}' is a Hugging Face hub dataset, not a file; the engine opens it "
                        "(engine.data.hub), not this reader.")
    raise DataError(f"Data file {ref} does not exist; check the path (or use demo for the built-in data).")


def has_validation_split(ref) -> bool:
    """True when the reference carries its own validation data (demo, a saved DatasetDict, a folder
    with a validation file). A mix of sources has none: its evaluation rows are held out of the mix."""
    if isinstance(ref, (list, tuple)):
        return False
    ref = (ref or "").strip()
    if ref in demo.DEMOS:
        return True
    path = Path(ref).expanduser()
    if path.is_dir():
        splits = saved_splits(path)
        if splits is not None:
            return "validation" in splits
        try:
            return bool(split_files(path).get("validation"))
        except OSError:
            return False
    return False


# ----------------------------------------------------------------------------------------------


@dataclass
class Problem:
    index: int  # 0-based row index
    where: int  # 1-based line or record number
    unit: str  # "line" | "record"
    message: str

    def located(self, display: str) -> str:
        if self.unit == "line":
            return f"{display}:{self.where}: {self.message}"
        return f"{display} record {self.where}: {self.message}"

    def as_json(self) -> dict:
        return {self.unit: self.where, "row": self.index + 1, "message": self.message}


@dataclass
class Report:
    ref: str
    display: str
    kind: str  # file kind: jsonl, json, csv, tsv, parquet, arrow, hub
    unit: str
    format: str | None = None
    rows: int = 0
    valid_rows: int = 0
    formats_seen: dict = field(default_factory=dict)
    errors: list[Problem] = field(default_factory=list)  # the first MAX_LISTED_ERRORS
    error_count: int = 0
    warnings: list[str] = field(default_factory=list)
    roles: dict = field(default_factory=dict)
    tool_rows: int = 0  # rows that declare tools or call them
    tool_calls: dict = field(default_factory=dict)  # function name -> calls
    seconds: float = 0.0
    stats: dict | None = None
    objective: str | None = None  # what the rows were checked for (None: the data decided)
    pairs: int = 0  # usable chosen/rejected pairs
    good: int = 0  # usable answers labelled good (KTO)
    bad: int = 0  # ... labelled bad

    @property
    def preference(self) -> dict | None:
        """Pairs and labels, with KTO's balance of good to bad (a pair counts one of each), or None."""
        if not (self.pairs or self.good or self.bad):
            return None
        good, bad = self.good + self.pairs, self.bad + self.pairs
        desirable, undesirable = formats.kto_weights(good, bad)
        return {"pairs": self.pairs, "labelled": {"good": self.good, "bad": self.bad},
                "good_fraction": round(good / (good + bad), 4) if good + bad else None,
                "kto_weights": {"desirable_weight": desirable, "undesirable_weight": undesirable}}

    @property
    def bad_rows(self) -> int:
        return self.error_count

    def as_json(self) -> dict:
        return {
            "ref": self.ref,
            "file": self.display,
            "kind": self.kind,
            "format": self.format,
            "format_description": formats.DESCRIPTIONS.get(self.format or "", None),
            "rows": self.rows,
            "valid_rows": self.valid_rows,
            "bad_rows": self.error_count,
            "errors": [p.as_json() for p in self.errors],
            "errors_listed": len(self.errors),
            "warnings": list(self.warnings),
            "formats_seen": dict(self.formats_seen),
            "messages_by_role": dict(self.roles),
            "tool_rows": self.tool_rows,
            "tool_calls": dict(self.tool_calls),
            "seconds": round(self.seconds, 3),
            "stats": self.stats if self.stats is not None else {},
            "objective": self.objective,
            "preference": self.preference,
        }


def detect_file_format(source: Source) -> str | None:
    """The format of the file: the most common among its first parseable rows."""
    seen: Counter = Counter()
    order: list[str] = []
    for row in source.head(DETECT_ROWS):
        if row.record is None:
            continue
        fmt = formats.detect(row.record)
        if fmt is None:
            continue
        if fmt not in seen:
            order.append(fmt)
        seen[fmt] += 1
    if not seen:
        return None
    best = max(seen.values())
    return next(f for f in order if seen[f] == best)


@dataclass
class CheckedRow:
    raw: RawRow
    format: str | None
    example: dict | None
    problem: str | None


def check(raw: RawRow, file_format: str | None, objective: str | None = "sft") -> CheckedRow:
    if raw.record is None:
        return CheckedRow(raw, None, None, raw.error or "cannot be read")
    fmt, example, problem = formats.check_row(raw.record, file_format, objective)
    return CheckedRow(raw, fmt, example, problem)


def iter_checked(source: Source, file_format: str | None = None, objective: str | None = "sft") -> Iterator[CheckedRow]:
    file_format = file_format or detect_file_format(source)
    for raw in source.iter_rows():
        yield check(raw, file_format, objective)


def refuse(source: Source, file_format: str | None, objective: str | None = None) -> None:
    """RefusedData when the file as a whole is not data for ``objective`` (None: for any objective), before
    a full pass: ``kind`` is the file's format."""
    if file_format is not None and file_format not in formats.accepted(objective, file_format):
        record = next(r.record for r in source.head(DETECT_ROWS)
                      if r.record is not None and formats.detect(r.record) == file_format)
        raise RefusedData(f"{source.display} {formats.refusal(file_format, record, objective)}.", file_format,
                          source.display)


def inspect(
    ref: str | Source,
    *,
    split: str = "train",
    progress: Progress | None = None,
    max_errors: int = MAX_LISTED_ERRORS,
    objective: str | None = None,
) -> Report:
    """One pass over every row, checked for ``objective`` (None: the data decides). Raises DataError
    when the file as a whole is unusable."""
    started = time.perf_counter()
    source = ref if isinstance(ref, Source) else open_source(ref, split=split)
    file_format = detect_file_format(source)
    report = Report(str(ref if isinstance(ref, str) else source.display), source.display, source.kind, source.unit,
                    file_format, objective=objective)
    refuse(source, file_format, objective)
    seen_hashes: set[int] = set()
    duplicates = 0
    formats_seen: Counter = Counter()
    roles: Counter = Counter()
    calls: Counter = Counter()
    last_tick = time.perf_counter()
    n = 0
    for n, checked in enumerate(iter_checked(source, file_format, objective), 1):
        if checked.format:
            formats_seen[checked.format] += 1
        if checked.problem is not None:
            report.error_count += 1
            if len(report.errors) < max_errors:
                report.errors.append(Problem(checked.raw.index, checked.raw.where, source.unit, checked.problem))
        else:
            report.valid_rows += 1
            ex = checked.example
            if "messages" in ex:
                for m in ex["messages"]:
                    roles[m["role"]] += 1
                if formats.uses_tools(ex):
                    report.tool_rows += 1
                    calls.update(c["name"] for c in formats.tool_calls(ex))
            elif formats.is_pair(ex):
                report.pairs += 1
            elif formats.is_labelled(ex):
                report.good += ex["label"]
                report.bad += not ex["label"]
            key = hash(checked.raw.text) if checked.raw.text is not None else hash(repr(ex))
            if key in seen_hashes:
                duplicates += 1
            else:
                seen_hashes.add(key)
        if progress and n % 2048 == 0:
            now = time.perf_counter()
            if now - last_tick > 0.2:
                last_tick = now
                progress(source.iter_fraction(n), n)
    report.rows = n
    report.formats_seen = dict(formats_seen)
    report.roles = dict(roles)
    report.tool_calls = dict(calls.most_common())
    if progress:
        progress(1.0, n)
    if n == 0:
        raise DataError(f"{source.display} has no rows; put one example per line (JSON Lines) or pick another file.")
    if report.valid_rows == 0:
        first = report.errors[0]
        if file_format is None and all(p.message.endswith(formats.EXPECTED) for p in report.errors[:5]):
            raise DataError(f"{first.located(source.display)}; no row of the file is in a known format.")
        raise DataError(f"{first.located(source.display)}; none of the {n} rows is usable.")
    if duplicates:
        report.warnings.append(
            f"{duplicates} row{'s are exact duplicates' if duplicates > 1 else ' is an exact duplicate'} of an earlier row."
        )
    mixed = {f: c for f, c in formats_seen.items() if f != file_format}
    if mixed:
        parts = ", ".join(f"{c} {f}" for f, c in sorted(mixed.items(), key=lambda kv: -kv[1]))
        report.warnings.append(f"The file mixes formats: {formats_seen[file_format]} {file_format} rows and {parts}.")
    balance = balance_warning(report.good, report.bad) if not report.pairs else None
    if balance:
        report.warnings.append(balance)
    report.seconds = time.perf_counter() - started
    return report


def balance_warning(good: int, bad: int) -> str | None:
    """A sentence when labelled answers are far from balanced (KTO learns from both kinds)."""
    if not good or not bad:
        if good + bad:
            which = "good" if good else "bad"
            return (f"Every labelled answer is {which}: KTO learns by contrasting good with bad answers; add some "
                    f"labelled {'bad' if good else 'good'}.")
        return None
    share = good / (good + bad)
    if 0.25 <= share <= 0.75:
        return None
    desirable, undesirable = formats.kto_weights(good, bad)
    return (f"{good} good and {bad} bad answers ({share:.0%} good): KTO training weighs them to balance "
            f"(desirable_weight {desirable:g}, undesirable_weight {undesirable:g}, the KTO paper's range).")


def bad_rows_sentence(report: Report, ref: str) -> str:
    first = report.errors[0]
    n = report.error_count
    return (
        f"{first.located(report.display)} ({n} bad row{'s' if n != 1 else ''} in all; "
        f"`tunedeck data inspect {ref}` lists them)."
    )


DEFAULT_SEED = 42  # engine.config's default seed: a mix looked at outside a run is the one a default run trains on


def load_mix(data, load_one: Callable[..., list[dict]], *, split: str = "train", seed: int = DEFAULT_SEED) -> list[dict]:
    """The examples of a list of sources, mixed (``load_one(ref, split=...)`` reads one source)."""
    if split != "train":
        raise DataError(f"A mix of sources ({mix_label(data)}) has no '{split}' split; set eval_data, or let "
                        "eval_split hold rows out of the mix.")
    sources = data_sources(data)
    return mix(sources, [load_one(s.ref, split="train") for s in sources], seed)


def load_examples(ref, *, split: str = "train", seed: int = DEFAULT_SEED, objective: str | None = None) -> list[dict]:
    """Every row of the data normalised for training with ``objective`` (None: the data decides; a list
    of sources: mixed, ``seed``ed); DataError if the data is unusable or any row is bad, RefusedData
    when it is data for another objective."""
    if isinstance(ref, (list, tuple)):
        return load_mix(ref, lambda one, split: load_examples(one, split=split, objective=objective),
                        split=split, seed=seed)
    source = ref if isinstance(ref, Source) else open_source(ref, split=split)
    ref = ref if isinstance(ref, str) else source.display
    file_format = detect_file_format(source)
    refuse(source, file_format, objective)
    examples: list[dict] = []
    first: Problem | None = None
    bad = 0
    for checked in iter_checked(source, file_format, objective):
        if checked.problem is not None:
            bad += 1
            if first is None:
                first = Problem(checked.raw.index, checked.raw.where, source.unit, checked.problem)
        else:
            examples.append(checked.example)
    source.close()
    if first is not None:
        shown = ref if split == "train" else f"{ref} --split {split}"
        raise DataError(
            f"{first.located(source.display)} ({bad} bad row{'s' if bad != 1 else ''} in all; "
            f"`tunedeck data inspect {shown}` lists them).",
            exit_code=1,
        )
    if not examples:
        raise DataError(f"{source.display} has no rows; put one example per line (JSON Lines) or pick another file.")
    return examples


def as_dict(obj) -> dict:
    return asdict(obj)
