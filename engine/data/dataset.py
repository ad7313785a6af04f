"""A dataset reference -> rows -> format, problems and training examples.

``open_source`` turns what the user wrote (a file, a ``save_to_disk`` folder, ``demo``, a hub id)
into a lazy ``Source``. ``inspect`` makes one pass over every row: file format, counts, each bad
row with its line/record number, warnings. ``load_examples`` is what the trainer calls: every row
normalised, or one DataError that names the first bad row and how many there are.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import demo
from ..errors import DataError
from . import formats
from .local import (  # noqa: F401 - the data API in one place for the engine
    CheckedRow,
    check,
    demo_path,
    detect_file_format,
    is_local,
    iter_checked,
    open_local,
)
from .reader import RecordsSource, Source, saved_splits, split_files

SPLITS = ("train", "validation")
MAX_LISTED_ERRORS = 1000

Progress = Callable[[float, int], None]
"""progress(fraction done, rows so far)."""


def open_source(ref: str, *, split: str = "train") -> Source:
    """A lazy Source for a data reference (a local file or folder, demo, or a hub id); raises
    DataError with one sentence if it cannot be opened."""
    if not is_local(ref):
        return _open_hub(ref.strip(), split)
    return open_local(ref, split=split)


def _open_hub(ref: str, split: str) -> Source:
    offline = any(os.environ.get(k, "0") not in ("", "0", "false", "False") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    try:
        import datasets

        ds = datasets.load_dataset(ref, split=split)
    except Exception as exc:  # datasets raises many types: not found, offline, no such split
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if offline:
            why = "the Hub is offline and it is not in the local datasets cache"
        raise DataError(
            f"Cannot open hub dataset '{ref}' (split {split}): {why}; download it where there is network "
            "and save it with save_to_disk, or pass a local file."
        ) from None
    return RecordsSource(ref, ds)


def has_validation_split(ref: str) -> bool:
    """True when the reference carries its own validation data (demo, a saved DatasetDict, a folder
    with a validation file)."""
    ref = (ref or "").strip()
    if ref == demo.DEMO:
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
    seconds: float = 0.0
    stats: dict | None = None

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
            "seconds": round(self.seconds, 3),
            "stats": self.stats if self.stats is not None else {},
        }


def unusable_reason(source: Source, file_format: str | None) -> str | None:
    """Why a whole file cannot be used (before a full pass), or None."""
    if file_format == "preference":
        return f"{source.display} {formats.PREFERENCE_SENTENCE}."
    return None


def inspect(
    ref: str | Source,
    *,
    split: str = "train",
    progress: Progress | None = None,
    max_errors: int = MAX_LISTED_ERRORS,
) -> Report:
    """One pass over every row. Raises DataError when the file as a whole is unusable."""
    started = time.perf_counter()
    source = ref if isinstance(ref, Source) else open_source(ref, split=split)
    file_format = detect_file_format(source)
    report = Report(str(ref if isinstance(ref, str) else source.display), source.display, source.kind, source.unit, file_format)
    reason = unusable_reason(source, file_format)
    if reason:
        raise DataError(reason)
    seen_hashes: set[int] = set()
    duplicates = 0
    formats_seen: Counter = Counter()
    roles: Counter = Counter()
    last_tick = time.perf_counter()
    n = 0
    for n, checked in enumerate(iter_checked(source, file_format), 1):
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
    report.seconds = time.perf_counter() - started
    return report


def bad_rows_sentence(report: Report, ref: str) -> str:
    first = report.errors[0]
    n = report.error_count
    return (
        f"{first.located(report.display)} ({n} bad row{'s' if n != 1 else ''} in all; "
        f"`tunedeck data inspect {ref}` lists them)."
    )


def load_examples(ref: str, *, split: str = "train") -> list[dict]:
    """Every row of the data normalised for training; DataError if the data is unusable or any row is bad."""
    source = open_source(ref, split=split)
    file_format = detect_file_format(source)
    reason = unusable_reason(source, file_format)
    if reason:
        raise DataError(reason)
    examples: list[dict] = []
    first: Problem | None = None
    bad = 0
    for checked in iter_checked(source, file_format):
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
