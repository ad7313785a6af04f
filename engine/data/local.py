"""Local training data, cheaply: open a file, a ``save_to_disk`` folder or the demo lazily, detect
its format from the first rows, and check rows one by one. Standard library only (pyarrow for
Parquet/Arrow): the TUI and the launcher use this module; a hub dataset is opened by
``engine.data.dataset`` (it needs ``datasets``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import demo
from ..errors import DataError
from . import formats
from .reader import RawRow, Source, open_file, open_folder

DETECT_ROWS = 64  # rows looked at to decide the file's format


def _looks_like_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "~", "/")) and not Path(ref).suffix


def is_local(ref: str) -> bool:
    """True when ``ref`` is read from the disk (everything but a hub id); no import, no network."""
    ref = (ref or "").strip()
    return ref == demo.DEMO or Path(ref).expanduser().exists() or not _looks_like_hub_id(ref)


def demo_path(split: str = "train") -> Path:
    if split == "train":
        return demo.train_file()
    if split == "validation":
        return demo.validation_file()
    raise DataError(f"The demo data has no '{split}' split; use train or validation.")


def open_local(ref: str, *, split: str = "train") -> Source:
    """A lazy Source for a file, a folder or demo; raises DataError with one sentence if it cannot be
    opened (a hub id is opened by ``engine.data.dataset.open_source``)."""
    ref = (ref or "").strip()
    if not ref:
        raise DataError("No data given: pass a .jsonl, .json, .csv, .tsv or .parquet file, a saved dataset folder, or demo.")
    if ref == demo.DEMO:
        path = demo_path(split)
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
        raise DataError(f"{ref} is a hub dataset, not a local file; it is opened by the engine, not here.")
    raise DataError(f"Data file {ref} does not exist; check the path (or use demo for the built-in data).")



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


def check(raw: RawRow, file_format: str | None) -> CheckedRow:
    if raw.record is None:
        return CheckedRow(raw, None, None, raw.error or "cannot be read")
    fmt, example, problem = formats.check_row(raw.record, file_format)
    return CheckedRow(raw, fmt, example, problem)


def iter_checked(source: Source, file_format: str | None = None) -> Iterator[CheckedRow]:
    file_format = file_format or detect_file_format(source)
    for raw in source.iter_rows():
        yield check(raw, file_format)


