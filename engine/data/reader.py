"""Open a data file lazily and hand out its rows with where they came from (line or record number).

Nothing here reads the whole of a big file before the first rows are available: a JSON Lines
file is indexed by line offsets a chunk at a time (the first rows cost one 1 MiB read), and the
index grows as far as someone asks — a background thread can ``scan()`` it to the end while the
first rows are already on screen. JSON arrays and CSV are parsed as a stream and kept; Parquet
and Arrow (``datasets.save_to_disk``) are read by row group / memory-mapped. Only the standard
library and pyarrow are used (no datasets, no transformers), so the TUI may use this module
directly from a thread.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

CHUNK = 1 << 20
DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".arrow")
BOM = b"\xef\xbb\xbf"

Progress = Callable[[int, int], None]
"""progress(done, total) in the source's own unit (bytes for JSON Lines, rows otherwise)."""


@dataclass
class RawRow:
    index: int  # 0-based position among the rows of the file
    where: int  # 1-based line (JSONL, CSV) or record (JSON array, Parquet, Arrow, hub) number
    record: dict | None  # the parsed row, None when it could not be parsed
    error: str | None = None  # why it could not be parsed (one sentence, no location)
    text: str | None = None  # the raw line, when there is one (JSON Lines)


class Source:
    """Rows of one data file. Subclasses fill ``kind``/``unit`` and the row access."""

    kind = "?"
    unit = "record"  # "line" or "record": how rows are located for people

    def __init__(self, path: Path, display: str | None = None):
        self.path = Path(path)
        self.display = display or self.path.name
        self._lock = threading.RLock()

    # --- to override -----------------------------------------------------------------------
    def __len__(self) -> int:  # rows known so far (all of them once ``complete``)
        raise NotImplementedError

    @property
    def complete(self) -> bool:
        return True

    def _ensure(self, count: int) -> None:
        """Make at least ``count`` rows known, if the file has them."""

    def _get(self, i: int) -> RawRow:
        raise NotImplementedError

    def progress_total(self) -> int:
        return len(self)

    def progress_done(self) -> int:
        return len(self)

    # --- public ----------------------------------------------------------------------------
    def get(self, i: int) -> RawRow:
        self._ensure(i + 1)
        if i < 0 or i >= len(self):
            raise IndexError(f"row {i + 1} is past the end of {self.display} ({len(self)} rows)")
        return self._get(i)

    def head(self, n: int) -> list[RawRow]:
        self._ensure(n)
        return [self._get(i) for i in range(min(n, len(self)))]

    def rows(self, start: int, count: int) -> list[RawRow]:
        self._ensure(start + count)
        return [self._get(i) for i in range(start, min(start + count, len(self)))]

    def scan(self, progress: Progress | None = None, stop: threading.Event | None = None) -> None:
        """Index the file to its end (call from a background thread); ``stop`` aborts early."""
        step = 4096
        while not self.complete:
            if stop is not None and stop.is_set():
                return
            self._ensure(len(self) + step)
            if progress:
                progress(self.progress_done(), self.progress_total())
        if progress:
            progress(self.progress_total(), self.progress_total())

    def iter_rows(self) -> Iterator[RawRow]:
        """Every row in order (a sequential pass; cheaper than ``get`` in a loop)."""
        i = 0
        while True:
            self._ensure(i + 1)
            if i >= len(self):
                return
            yield self._get(i)
            i += 1

    def iter_fraction(self, yielded: int) -> float:
        """How far a sequential ``iter_rows`` pass is, given how many rows it has yielded."""
        total = len(self) if self.complete else 0
        return min(1.0, yielded / total) if total else 0.0

    def where_label(self, where: int) -> str:
        return f"{self.display}:{where}" if self.unit == "line" else f"{self.display} record {where}"

    def index_of(self, where: int) -> int | None:
        """The row index for a line/record number (after a full scan), or None."""
        if self.unit == "record":
            return where - 1 if 0 < where <= len(self) else None
        return None

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------------------------
# checks shared by the text formats


def check_text_file(path: Path, display: str) -> bytes:
    """Return the first chunk of a text file, or raise DataError if it is empty/binary/not UTF-8."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(CHUNK)
    except OSError as exc:
        raise DataError(f"Cannot read {display}: {exc.strerror or exc}; check the path and its permissions.") from None
    if size == 0 or not head.strip(b" \t\r\n" + BOM):
        raise DataError(f"{display} is empty; put one example per line (JSON Lines) or pick another file.")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{display} is UTF-16 text; save it as UTF-8 and open it again.")
    if b"\x00" in head[:8192]:
        raise DataError(f"{display} is not a text file (it contains NUL bytes); pick a .jsonl, .json, .csv or .parquet file.")
    # The first line decides whether the file is UTF-8 at all; a bad byte further on is that row's problem.
    first = head.lstrip(BOM + b" \t\r\n").split(b"\n", 1)[0][: CHUNK - 4]
    try:
        first.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(first) - 4 or len(first) < CHUNK - 8:  # not just a character cut at the chunk's end
            raise DataError(
                f"{display} is not UTF-8 text (byte 0x{first[exc.start]:02x} on its first line); "
                "save the file as UTF-8 and open it again."
            ) from None
    return head


def _describe_json_error(exc: json.JSONDecodeError) -> str:
    return f"is not valid JSON ({exc.msg} at column {exc.colno})"


def json_limit(exc: BaseException) -> str:
    """What a hostile but well-formed JSON value ran into (not a syntax error)."""
    if isinstance(exc, RecursionError):
        return "it is nested too deeply to read"
    return str(exc).split(";")[0].strip() or type(exc).__name__  # e.g. a number of 100,000 digits


def parse_json_line(raw: bytes) -> tuple[dict | None, str | None, str | None]:
    """(record, error, text) for one line of a JSON Lines file."""
    if raw.startswith(BOM):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        return None, f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})", None
    try:
        value = json.loads(text)
    except (RecursionError, ValueError) as exc:
        if not isinstance(exc, json.JSONDecodeError):
            return None, f"cannot be read as JSON ({json_limit(exc)})", None
        hint = ""
        bare = text.strip()
        if bare in ("{", "[", "}", "]", "},", "],") or (text[:1] in " \t" and bare.startswith('"')):
            hint = "; this looks like pretty-printed JSON, but JSON Lines needs one whole object per line"
        return None, _describe_json_error(exc) + hint, text
    if not isinstance(value, dict):
        return None, f"is a JSON {_json_type(value)}, not an object", text
    return value, None, text


def _json_type(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


# ----------------------------------------------------------------------------------------------
# JSON Lines


class JsonlSource(Source):
    """JSON Lines: an index of line offsets grows one chunk at a time; rows are re-read on demand."""

    kind = "jsonl"
    unit = "line"

    def __init__(self, path: Path, display: str | None = None, *, head: bytes | None = None):
        super().__init__(path, display)
        if head is None:
            head = check_text_file(self.path, self.display)
        self.size = self.path.stat().st_size
        self._offsets = array("q")  # byte offset of each non-blank line
        self._lines = array("q")  # its 1-based line number
        self._pos = 0  # bytes indexed so far (always at a line start)
        self._line_no = 0  # lines seen so far
        self._file = open(self.path, "rb")

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def complete(self) -> bool:
        return self._pos >= self.size

    def progress_total(self) -> int:
        return self.size

    def progress_done(self) -> int:
        return self._pos

    def _ensure(self, count: int) -> None:
        while len(self._offsets) < count and not self.complete:
            with self._lock:
                if len(self._offsets) < count and not self.complete:
                    self._index_chunk()

    def _index_chunk(self) -> None:
        self._file.seek(self._pos)
        data = self._file.read(CHUNK)
        while True:
            cut = data.rfind(b"\n")
            if cut >= 0 or self._pos + len(data) >= self.size:
                break
            more = self._file.read(CHUNK * 4)  # a line longer than the chunk
            if not more:
                break
            data += more
        if self._pos + len(data) >= self.size and not data.endswith(b"\n"):
            data += b"\n"  # last line without a newline
            cut = len(data) - 1
        data = data[: cut + 1]
        self._index_lines(data)

    def _index_lines(self, data: bytes) -> None:
        """Record the start of every non-blank line of ``data`` (whole lines, from ``self._pos``).
        The first chunk is done in plain Python (no numpy import before the first rows); the rest
        vectorised with numpy, so a background index hardly holds the GIL the UI thread needs."""
        if self._pos == 0 and "numpy" not in sys.modules:
            return self._index_lines_py(data)
        import numpy as np

        arr = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(arr == 10)
        starts = np.empty(len(ends), dtype=np.int64)
        if len(ends):
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
        first = arr[np.minimum(starts, max(0, len(arr) - 1))] if len(arr) else arr
        # only short lines or lines starting with a space, tab, CR or BOM byte can be blank
        maybe_blank = np.flatnonzero(
            (ends - starts <= 3) | (first == 32) | (first == 9) | (first == 13) | (first == 0xEF)
        )
        keep = np.ones(len(ends), dtype=bool)
        for k in maybe_blank.tolist():
            line = data[starts[k] : ends[k]].strip()
            if not line or (self._pos == 0 and k == 0 and line == BOM):
                keep[k] = False
        self._offsets.frombytes((starts[keep] + self._pos).astype(np.int64).tobytes())
        self._lines.frombytes((np.flatnonzero(keep) + (self._line_no + 1)).astype(np.int64).tobytes())
        self._line_no += len(ends)
        self._pos = min(self._pos + len(data), self.size)

    def _index_lines_py(self, data: bytes) -> None:
        offset, line_no = self._pos, self._line_no
        offsets, lines = self._offsets, self._lines
        for line in data.split(b"\n")[:-1]:
            line_no += 1
            bare = line.strip()
            if bare and not (offset == 0 and bare == BOM):
                offsets.append(offset)
                lines.append(line_no)
            offset += len(line) + 1
        self._line_no = line_no
        self._pos = min(offset, self.size)

    def _read_line(self, i: int) -> bytes:
        with self._lock:
            self._file.seek(self._offsets[i])
            return self._file.readline()

    def _get(self, i: int) -> RawRow:
        record, error, text = parse_json_line(self._read_line(i))
        return RawRow(i, self._lines[i], record, error, text)

    def rows(self, start: int, count: int) -> list[RawRow]:
        self._ensure(start + count)
        end = min(start + count, len(self))
        if start >= end:
            return []
        with self._lock:  # one seek, then sequential reads
            self._file.seek(self._offsets[start])
            raws = [self._file.readline() for _ in range(start, end)]
            # blank lines between rows: re-seek those that do not line up
            out = []
            for k, raw in enumerate(raws):
                i = start + k
                if k and self._offsets[i] != self._offsets[i - 1] + len(raws[k - 1]):
                    self._file.seek(self._offsets[i])
                    raw = self._file.readline()
                    raws[k] = raw
                    if k + 1 < len(raws):
                        self._file.seek(self._offsets[i] + len(raw))
                        for j in range(k + 1, len(raws)):
                            raws[j] = self._file.readline()
                record, error, text = parse_json_line(raw)
                out.append(RawRow(i, self._lines[i], record, error, text))
            return out

    def iter_rows(self) -> Iterator[RawRow]:
        """A sequential pass that does not need the index (used by full scans)."""
        index = 0
        line_no = 0
        self._iter_pos = 0
        with open(self.path, "rb") as f:
            for raw in f:
                line_no += 1
                self._iter_pos += len(raw)
                stripped = raw.strip()
                if not stripped or (line_no == 1 and stripped == BOM):
                    continue
                record, error, text = parse_json_line(raw)
                yield RawRow(index, line_no, record, error, text)
                index += 1

    def iter_fraction(self, yielded: int) -> float:
        return min(1.0, getattr(self, "_iter_pos", 0) / self.size) if self.size else 1.0

    def index_of(self, where: int) -> int | None:
        lines = self._lines
        lo, hi = 0, len(lines)
        while lo < hi:
            mid = (lo + hi) // 2
            if lines[mid] < where:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(lines) and lines[lo] == where else None

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass


# ----------------------------------------------------------------------------------------------
# streamed sources kept in memory once parsed (JSON arrays, CSV, hub datasets)


class _StreamSource(Source):
    def __init__(self, path: Path, display: str | None = None):
        super().__init__(path, display)
        self._rows: list[RawRow] = []
        self._gen: Iterator[RawRow] | None = None
        self._done = False
        self._bytes_done = 0

    def _generate(self) -> Iterator[RawRow]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def complete(self) -> bool:
        return self._done

    def _ensure(self, count: int) -> None:
        if len(self._rows) >= count or self._done:
            return
        with self._lock:
            if self._gen is None:
                self._gen = self._generate()
            while len(self._rows) < count and not self._done:
                try:
                    self._rows.append(next(self._gen))
                except StopIteration:
                    self._done = True

    def _get(self, i: int) -> RawRow:
        return self._rows[i]

    def iter_fraction(self, yielded: int) -> float:
        size = getattr(self, "size", 0)
        if size:
            return min(1.0, self._bytes_done / size)
        return super().iter_fraction(yielded)


class JsonArraySource(_StreamSource):
    """A JSON file holding a list of records, parsed record by record as a stream."""

    kind = "json"
    unit = "record"

    def __init__(self, path: Path, display: str | None = None, *, field: str | None = None):
        super().__init__(path, display)
        self.size = self.path.stat().st_size
        self.field = field

    def progress_total(self) -> int:
        return self.size

    def progress_done(self) -> int:
        return self.size if self._done else self._bytes_done

    def _generate(self) -> Iterator[RawRow]:
        """The records; a file that stops being UTF-8 text part of the way ends in one bad row saying so
        (only its first bytes are checked when it is opened)."""
        after = 0
        try:
            for row in self._records():
                after = row.index + 1
                yield row
        except UnicodeDecodeError as exc:
            yield RawRow(after, after + 1, None, f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); nothing "
                         "after it can be read; save the file as UTF-8")

    def _records(self) -> Iterator[RawRow]:
        if self.field is not None:  # {"field": [records]}: no streaming, the file is parsed whole
            with open(self.path, encoding="utf-8-sig") as f:
                records = json.load(f)[self.field]
            self._bytes_done = self.size
            for i, value in enumerate(records):
                yield self._row(i, value)
            return
        decoder = json.JSONDecoder()
        with open(self.path, encoding="utf-8-sig", errors="strict") as f:
            state = {"buf": f.read(CHUNK), "pos": 0, "consumed": 0, "eof": False}

            def more() -> bool:
                chunk = f.read(max(CHUNK, len(state["buf"])))
                state["eof"] = not chunk
                state["consumed"] += state["pos"]
                state["buf"], state["pos"] = state["buf"][state["pos"]:] + chunk, 0
                return bool(chunk)

            def peek() -> str:  # next non-space character ("" at the end of the file)
                while True:
                    buf, pos = state["buf"], state["pos"]
                    while pos < len(buf) and buf[pos] in " \t\r\n":
                        pos += 1
                    state["pos"] = pos
                    if pos < len(buf):
                        return buf[pos]
                    if state["eof"] or not more():
                        return ""

            def line() -> int:
                return self._line_at(state["consumed"] + state["pos"])

            peek()
            state["pos"] += 1  # the "[" that made this an array
            index = 0
            while True:
                ch = peek()
                if ch == "]":
                    return
                if index:
                    if ch != ",":
                        found = f"'{ch}'" if ch else "the end of the file"
                        yield RawRow(index, index + 1, None,
                                     f"is not valid JSON (expected ',' or ']' but found {found} at line {line()}); "
                                     "nothing after it can be read")
                        return
                    state["pos"] += 1
                    ch = peek()
                if not ch:
                    yield RawRow(index, index + 1, None,
                                 f"is missing: the file ends at line {line()} before the list is closed with ']'")
                    return
                while True:
                    try:
                        value, end = decoder.raw_decode(state["buf"], state["pos"])
                    except (RecursionError, ValueError) as exc:
                        if not isinstance(exc, json.JSONDecodeError):
                            yield RawRow(index, index + 1, None, f"cannot be read as JSON ({json_limit(exc)}, "
                                         f"line {line()}); nothing after it can be read")
                            return
                        if not state["eof"] and more():
                            continue
                        state["pos"] = exc.pos
                        yield RawRow(index, index + 1, None,
                                     f"is not valid JSON ({exc.msg}, line {line()}); nothing after it can be read")
                        return
                    if end == len(state["buf"]) and not state["eof"] and more():
                        continue  # a number or literal may go on in the next chunk
                    break
                yield self._row(index, value)
                index += 1
                state["pos"] = end
                self._bytes_done = state["consumed"] + end  # characters; close enough for progress

    def _line_at(self, char_pos: int) -> int:
        with open(self.path, encoding="utf-8-sig", errors="replace") as f:
            return f.read(char_pos).count("\n") + 1

    @staticmethod
    def _row(i: int, value) -> RawRow:
        if not isinstance(value, dict):
            return RawRow(i, i + 1, None, f"is a JSON {_json_type(value)}, not an object")
        return RawRow(i, i + 1, value)


class CsvSource(_StreamSource):
    """CSV or TSV with a header line; rows are located by the line they start on."""

    unit = "line"

    def __init__(self, path: Path, display: str | None = None, *, delimiter: str = ","):
        super().__init__(path, display)
        self.delimiter = delimiter
        self.kind = "tsv" if delimiter == "\t" else "csv"
        self.size = self.path.stat().st_size
        self.columns: list[str] = []
        self._line_of: dict[int, int] = {}
        self._ensure(1)

    def progress_total(self) -> int:
        return self.size

    def progress_done(self) -> int:
        return self.size if self._done else self._bytes_done

    def _generate(self) -> Iterator[RawRow]:
        with open(self.path, "rb") as raw:
            counter = _CountingReader(raw)
            text = io.TextIOWrapper(counter, encoding="utf-8-sig", newline="")
            reader = csv.reader(text, delimiter=self.delimiter)
            try:
                self.columns = [c.strip() for c in next(reader)]
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise DataError(f"{self.display} is not UTF-8 text; save it as UTF-8 and open it again.") from None
            width = len(self.columns)
            index = 0
            last_line = reader.line_num
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except UnicodeDecodeError:
                    yield RawRow(index, last_line + 1, None, "is not UTF-8 text; nothing after it can be read")
                    return
                except csv.Error as exc:
                    yield RawRow(index, last_line + 1, None, f"is not valid CSV ({exc}); nothing after it can be read")
                    return
                start_line = last_line + 1
                last_line = reader.line_num
                self._bytes_done = counter.count
                if not fields or not any(f.strip() for f in fields):
                    continue
                if len(fields) != width:
                    yield RawRow(index, start_line, None, f"has {len(fields)} fields but the header has {width}")
                else:
                    yield RawRow(index, start_line, dict(zip(self.columns, fields)))
                index += 1

    def index_of(self, where: int) -> int | None:
        for row in self._rows:
            if row.where == where:
                return row.index
        return None


class _CountingReader(io.RawIOBase):
    def __init__(self, f):
        self.f, self.count = f, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.f.readinto(b)
        self.count += n or 0
        return n


# ----------------------------------------------------------------------------------------------
# columnar sources (pyarrow)


class _TableSource(Source):
    unit = "record"

    def __init__(self, path: Path, display: str | None = None):
        super().__init__(path, display)
        self._cache: OrderedDict[int, list[dict]] = OrderedDict()
        self._bounds: list[tuple[int, int]] = []  # (first row, row count) of each block

    def _read_block(self, k: int):
        raise NotImplementedError

    def __len__(self) -> int:
        return sum(n for _, n in self._bounds)

    def _block_of(self, i: int) -> int:
        lo, hi = 0, len(self._bounds) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._bounds[mid][0] <= i:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _get(self, i: int) -> RawRow:
        k = self._block_of(i)
        with self._lock:
            rows = self._cache.get(k)
            if rows is None:
                rows = self._read_block(k).to_pylist()
                self._cache[k] = rows
                while len(self._cache) > 3:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(k)
        return RawRow(i, i + 1, rows[i - self._bounds[k][0]])

    def iter_rows(self) -> Iterator[RawRow]:
        i = 0
        for k in range(len(self._bounds)):
            for record in self._read_block(k).to_pylist():
                yield RawRow(i, i + 1, record)
                i += 1

    @property
    def columns(self) -> list[str]:
        return list(self._schema.names)


class ParquetSource(_TableSource):
    kind = "parquet"

    def __init__(self, path: Path, display: str | None = None):
        super().__init__(path, display)
        import pyarrow.parquet as pq

        try:
            self._pf = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataError(f"{self.display} is not a readable Parquet file ({exc}); check that it was written completely.") from None
        self._schema = self._pf.schema_arrow
        first = 0
        for k in range(self._pf.num_row_groups):
            n = self._pf.metadata.row_group(k).num_rows
            self._bounds.append((first, n))
            first += n

    def _read_block(self, k: int):
        return self._pf.read_row_group(k)


class ArrowSource(_TableSource):
    """A split saved by ``datasets.save_to_disk``: Arrow stream files, memory-mapped."""

    kind = "arrow"

    def __init__(self, folder: Path, files: list[Path], display: str | None = None):
        super().__init__(folder, display)
        import pyarrow as pa
        import pyarrow.ipc as ipc

        batches = []
        schema = None
        for file in files:
            try:
                reader = ipc.open_stream(pa.memory_map(str(file)))
            except Exception:
                try:
                    reader = ipc.open_file(pa.memory_map(str(file)))
                except Exception as exc:
                    raise DataError(f"{file} is not a readable Arrow file ({exc}); save the dataset again.") from None
            table = reader.read_all()
            schema = schema or table.schema
            batches.extend(table.to_batches(max_chunksize=4096))
        if schema is None:
            raise DataError(f"{self.display} holds no Arrow data files; save the dataset again with save_to_disk.")
        self._schema = schema
        self._batches = batches
        first = 0
        for b in batches:
            self._bounds.append((first, b.num_rows))
            first += b.num_rows

    def _read_block(self, k: int):
        return self._batches[k]


class RecordsSource(_StreamSource):
    """Records already in memory (a hub dataset loaded by ``datasets``)."""

    kind = "hub"
    unit = "record"

    def __init__(self, name: str, records):
        super().__init__(Path(name), name)
        self._records = records

    def _generate(self) -> Iterator[RawRow]:
        for i, value in enumerate(self._records):
            yield RawRow(i, i + 1, dict(value) if not isinstance(value, dict) else value)


# ----------------------------------------------------------------------------------------------
# choosing a source for a path


def _sniff_json(head: bytes) -> str:
    text = head.lstrip(BOM + b" \t\r\n")
    return "array" if text.startswith(b"[") else "lines"


def _json_object_field(path: Path, display: str) -> str:
    """For a .json file holding one object, the name of its list-of-records field."""
    if path.stat().st_size > 1 << 30:
        raise DataError(f"{display} is one big JSON object; convert it to JSON Lines (one example per line).")
    try:
        with open(path, encoding="utf-8-sig") as f:
            value = json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{display}:{exc.lineno} is not valid JSON ({exc.msg} at column {exc.colno}).") from None
    except (RecursionError, ValueError) as exc:
        raise DataError(f"{display} cannot be read as JSON ({json_limit(exc)}).") from None
    except UnicodeDecodeError:
        raise DataError(f"{display} is not UTF-8 text; save it as UTF-8 and open it again.") from None
    if isinstance(value, dict):
        lists = [k for k, v in value.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if len(lists) == 1:
            return lists[0]
    raise DataError(
        f"{display} holds one JSON object, not a list of examples; use a JSON list of records or JSON Lines "
        "(one example per line)."
    )


def open_file(path: Path, display: str | None = None) -> Source:
    """A Source for one data file, chosen by its suffix (and content for .json)."""
    path = Path(path)
    display = display or str(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return ParquetSource(path, display)
    if suffix == ".arrow":
        return ArrowSource(path, [path], display)
    head = check_text_file(path, display)
    if suffix in (".csv", ".tsv"):
        return CsvSource(path, display, delimiter="\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return JsonlSource(path, display, head=head)
    if suffix == ".json" or suffix not in DATA_SUFFIXES:
        if _sniff_json(head) == "array":
            return JsonArraySource(path, display)
        first = head.lstrip(BOM + b" \t\r\n")
        if not first.startswith(b"{"):
            if suffix == ".json":
                raise DataError(f"{display} does not start with '[' or '{{', so it is not JSON; check the file.")
            raise DataError(
                f"{display} is not a data file Tunedeck reads; use .jsonl, .json, .csv, .tsv or .parquet, "
                "or a folder written by datasets.save_to_disk."
            )
        # JSON Lines, unless the first line is not a whole object (a pretty-printed object)
        first_line = first.split(b"\n", 1)[0]
        try:
            json.loads(first_line.decode("utf-8", errors="replace"))
            return JsonlSource(path, display, head=head)
        except (RecursionError, ValueError):
            if suffix == ".json":
                return JsonArraySource(path, display, field=_json_object_field(path, display))
            return JsonlSource(path, display, head=head)
    raise DataError(f"{display}: cannot read files of type {suffix}.")  # pragma: no cover


def split_files(folder: Path) -> dict[str, list[Path]]:
    """Data files in a plain folder grouped by split name guessed from the file names."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
    groups: dict[str, list[Path]] = {}
    for p in files:
        stem = p.name.lower()
        split = "train"
        for name, aliases in SPLIT_ALIASES.items():
            if any(stem.startswith(a) or f"-{a}" in stem or f"_{a}" in stem for a in aliases):
                split = name
                break
        groups.setdefault(split, []).append(p)
    return groups


SPLIT_ALIASES = {
    "validation": ("validation", "valid", "val.", "val-", "val_", "dev", "eval"),
    "test": ("test",),
    "train": ("train",),
}


def saved_splits(folder: Path) -> list[str] | None:
    """The splits of a ``save_to_disk`` folder (``["train"]`` for a single Dataset), None if not one."""
    if (folder / "dataset_dict.json").is_file():
        try:
            return list(json.loads((folder / "dataset_dict.json").read_text())["splits"])
        except (ValueError, KeyError, OSError):
            return [p.name for p in folder.iterdir() if (p / "state.json").is_file()]
    if (folder / "state.json").is_file():
        return ["train"]
    return None


def _arrow_files(split_dir: Path) -> list[Path]:
    try:
        state = json.loads((split_dir / "state.json").read_text())
        files = [split_dir / f["filename"] for f in state.get("_data_files", [])]
        if files and all(p.is_file() for p in files):
            return files
    except (ValueError, OSError, KeyError, TypeError):
        pass
    return sorted(split_dir.glob("*.arrow"))


def open_folder(folder: Path, split: str = "train", display: str | None = None) -> Source:
    display = display or str(folder)
    splits = saved_splits(folder)
    if splits is not None:
        if (folder / "dataset_dict.json").is_file():
            if split not in splits:
                raise DataError(
                    f"{display} has no '{split}' split (it has {', '.join(splits) or 'none'}); pick one of those."
                )
            split_dir = folder / split
        else:
            if split != "train":
                raise DataError(f"{display} is a single dataset with no '{split}' split.")
            split_dir = folder
        files = _arrow_files(split_dir)
        if not files:
            raise DataError(f"{display} has no .arrow data files; save the dataset again with save_to_disk.")
        label = f"{display} [{split}]" if (folder / "dataset_dict.json").is_file() else display
        return ArrowSource(split_dir, files, label)
    groups = split_files(folder)
    if not groups:
        raise DataError(
            f"{display} is a folder with no data in it: no save_to_disk dataset and no .jsonl, .json, .csv or "
            ".parquet file."
        )
    chosen = groups.get(split)
    if not chosen:
        raise DataError(f"{display} has no {split} data file (found {', '.join(p.name for g in groups.values() for p in g)}).")
    if len(chosen) > 1:
        raise DataError(
            f"{display} has several {split} files ({', '.join(p.name for p in chosen)}); open one of them directly."
        )
    return open_file(chosen[0], display=str(chosen[0]))
