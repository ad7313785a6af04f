"""The lazy readers: first rows without reading the file, the line index, random access."""

import json
import threading

from engine.data import open_source
from engine.data.reader import CHUNK, JsonlSource


def _write_rows(path, n, *, blank_every=0, crlf=False):
    end = "\r\n" if crlf else "\n"
    with open(path, "w", newline="") as f:
        for i in range(n):
            f.write(json.dumps({"text": f"row {i} " + "x" * (i % 50)}) + end)
            if blank_every and i % blank_every == blank_every - 1:
                f.write(end)


def test_first_rows_cost_one_chunk_not_the_whole_file(tmp_path):
    path = tmp_path / "big.jsonl"
    _write_rows(path, 60_000)  # ~3.5 MB: several chunks
    src = open_source(str(path))
    assert isinstance(src, JsonlSource)
    first = src.head(20)
    assert [r.where for r in first] == list(range(1, 21))
    assert first[3].record == {"text": "row 3 xxx"}
    assert not src.complete and src.progress_done() <= CHUNK  # only the first chunk was indexed
    src.scan()
    assert src.complete and len(src) == 60_000


def test_index_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    path = tmp_path / "gaps.jsonl"
    _write_rows(path, 1000, blank_every=10, crlf=True)
    src = open_source(str(path))
    src.scan()
    assert len(src) == 1000
    # row i sits on line i + i // 10 + 1 (one blank line after every tenth row)
    for i in (0, 9, 10, 11, 500, 999):
        row = src.get(i)
        assert row.where == i + i // 10 + 1
        assert row.record["text"].startswith(f"row {i} ")
    window = src.rows(8, 5)  # across blank lines
    assert [r.record["text"].split()[1] for r in window] == ["8", "9", "10", "11", "12"]
    assert src.index_of(12) == 10 and src.index_of(11) is None  # line 11 is blank


def test_background_scan_while_reading(tmp_path):
    path = tmp_path / "scan.jsonl"
    _write_rows(path, 50_000)
    src = open_source(str(path))
    seen = []
    t = threading.Thread(target=src.scan, kwargs={"progress": lambda done, total: seen.append((done, total))})
    t.start()
    rows = [src.get(i).record["text"].split()[1] for i in range(0, 50_000, 7919)]
    t.join()
    assert rows == [str(i) for i in range(0, 50_000, 7919)]
    assert seen[-1][0] == seen[-1][1] == path.stat().st_size


def test_sequential_pass_matches_random_access(tmp_path):
    path = tmp_path / "seq.jsonl"
    _write_rows(path, 3000, blank_every=7)
    src = open_source(str(path))
    seq = [(r.index, r.where, r.record) for r in src.iter_rows()]
    src.scan()
    assert seq == [(r.index, r.where, r.record) for r in (src.get(i) for i in range(len(src)))]


def test_a_file_without_final_newline_and_a_huge_line(tmp_path):
    path = tmp_path / "tail.jsonl"
    big = json.dumps({"text": "y" * (3 * CHUNK)})
    path.write_text('{"text": "a"}\n' + big + '\n{"text": "last"}')
    src = open_source(str(path))
    src.scan()
    assert [len(src.get(i).record["text"]) for i in range(3)] == [1, 3 * CHUNK, 4]


def test_python_and_numpy_indexes_agree(tmp_path):
    """The first chunk is indexed in plain Python, the rest with numpy: same offsets, same lines."""
    path = tmp_path / "mixed.jsonl"
    body = b"\xef\xbb\xbf" + b"".join(
        (b'{"text": "r%d"}' % i) + (b"\r\n" if i % 3 else b"\n") + (b"   \n" if i % 11 == 0 else b"") + (b"\n" if i % 17 == 0 else b"")
        for i in range(5000)
    )
    path.write_bytes(body)
    a, b = JsonlSource(path), JsonlSource(path)
    a._index_lines_py(body)
    import numpy  # noqa: F401  (once numpy is loaded, the first chunk is indexed with it too)

    b._index_lines(body)
    assert list(a._offsets) == list(b._offsets) and list(a._lines) == list(b._lines)
    assert len(a._offsets) == 5000 and a._offsets[0] == 0 and a._lines[1] == 4  # lines 2 and 3 are blank
