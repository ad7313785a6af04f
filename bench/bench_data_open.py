"""Opening a big JSON Lines file: how soon the first rows are there, how long the full passes take,
and the same file through ``datasets.load_dataset("json", ...)`` for comparison. Prints figures.

    .venv/bin/python bench/bench_data_open.py                 # 1,000,000 rows (~0.5 GB) in /tmp
    .venv/bin/python bench/bench_data_open.py --rows 100000   # quicker
    .venv/bin/python bench/bench_data_open.py --skip-stats --skip-datasets

Budget (DESIGN.md): first rows on screen under 1 s; statistics follow with progress.
Figures are wall-clock on this machine with a warm page cache (the file was just written).
Token statistics cost about 0.4 ms of CPU per row (chat template + tokenizer + mask), so on a
2-core machine the full pass over a million rows takes minutes; under `make bench` (BENCH_REPORT
set) they are measured on the first --stats-rows rows (100,000 there) and the figure says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRODUCTS = ["Juniper Yoga Mat", "Orbit Smartwatch", "CloudSync Pro plan", "Basil Blender", "Lumo Desk Lamp",
            "Atlas Office Chair", "Nimbus Kettle", "Pebble Earbuds"]
ISSUES = ["arrived broken", "never arrived", "was charged twice", "stopped working after a week",
          "is not what I ordered", "cannot be paired with my phone", "shows error E42", "arrived late"]
SYSTEM = ("You triage customer support tickets. Reply with one line of JSON with the keys category, priority, "
          "product, order_id, sentiment and needs_human, and nothing else.")


def generate(path: Path, rows: int, seed: int = 0) -> None:
    rnd = random.Random(seed)
    with open(path, "w") as f:
        for i in range(rows):
            product, issue = rnd.choice(PRODUCTS), rnd.choice(ISSUES)
            order = f"A{rnd.randrange(10000, 99999)}"
            extra = " ".join(rnd.choice(["Please help.", "Thanks.", "This is urgent.", "I am very upset.",
                                         "Kind regards, Sam.", "It is the second time this happens."])
                             for _ in range(rnd.randrange(0, 12)))
            answer = json.dumps({"category": rnd.choice(["refund", "shipping", "technical", "billing"]),
                                 "priority": rnd.choice(["low", "medium", "high"]), "product": product,
                                 "order_id": order, "sentiment": rnd.choice(["neutral", "negative"]),
                                 "needs_human": rnd.random() < 0.3})
            row = {"messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Ticket {i}: my {product} from order {order} {issue}. {extra}"},
                {"role": "assistant", "content": answer},
            ]}
            f.write(json.dumps(row) + "\n")


def bench_reader(path: Path) -> dict:
    from engine.data import detect_file_format, open_source

    t0 = time.perf_counter()
    src = open_source(str(path))
    rows = src.head(50)
    fmt = detect_file_format(src)
    first = time.perf_counter() - t0
    assert len(rows) == 50 and fmt == "messages"
    t1 = time.perf_counter()
    src.scan()
    index = time.perf_counter() - t1
    t2 = time.perf_counter()
    last = src.get(len(src) - 1)
    middle = src.rows(len(src) // 2, 30)
    random_access = time.perf_counter() - t2
    assert last.where == len(src) and len(middle) == 30
    return {"first_rows_s": first, "index_s": index, "rows": len(src), "random_access_s": random_access}


async def _down_press_p95_ms(pilot, presses: int = 20) -> float:
    """p95 of ↓ press -> handled by the app, in ms (pilot), presses 50 ms apart."""
    lags = []
    for _ in range(presses):
        k0 = time.perf_counter()
        await pilot.press("down")
        lags.append(time.perf_counter() - k0)
        await pilot.pause(0.05)
    return sorted(lags)[int(0.95 * (len(lags) - 1))] * 1000


def bench_screen(path: Path, stats: bool) -> dict:
    from tui.app import TunedeckApp
    from tui.screens import data as data_screen
    from tui.widgets.row_table import RowTable

    if not stats:  # the screen starts token statistics only for files under this size anyway
        data_screen.AUTO_STATS_BYTES = 0
    out: dict = {}

    async def run() -> None:
        t_app = time.perf_counter()
        app = TunedeckApp(data=str(path))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("1")
            screen = app.screen
            while "first_rows_shown" not in getattr(screen, "_timings", {}):
                await pilot.pause(0.01)
            t = screen._timings
            out["screen_first_rows_s"] = t["first_rows_shown"] - t["open"]
            out["app_start_to_first_rows_s"] = t["first_rows_shown"] - t_app
            table = screen.query_one(RowTable)
            assert table.row(0) is not None and table.row(0).ok
            # key presses while the index and the row check run in the background
            out["key_press_while_scanning_ms_p95"] = await _down_press_p95_ms(pilot)
            while "indexed" not in screen._timings:
                await pilot.pause(0.1)
            out["screen_index_s"] = screen._timings["indexed"] - t["open"]
            while screen.report is None:
                await pilot.pause(0.2)
            out["screen_row_check_s"] = time.perf_counter() - t["open"]
            out["screen_rows"] = screen.report.get("rows")
            out["key_press_idle_ms_p95"] = await _down_press_p95_ms(pilot)
            k0 = time.perf_counter()
            await pilot.press("end")
            while table.row(table.row_count - 1) is None:
                await pilot.pause(0.01)
            out["jump_to_last_row_s"] = time.perf_counter() - k0

    asyncio.run(run())
    return out


def bench_cli(path: Path, *args: str) -> tuple[float, dict, int]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "engine", "data", *args, str(path), "--progress"],
                          capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"tunedeck data {args[0]} failed: {proc.stderr.strip().splitlines()[-1:]}")
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    progress = sum(1 for e in lines if e.get("event") == "progress")
    return elapsed, lines[-1], progress


def bench_datasets(path: Path) -> dict:
    t0 = time.perf_counter()
    import datasets

    imported = time.perf_counter() - t0
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(dir="/tmp") as cache:
        t1 = time.perf_counter()
        ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=cache)
        first = ds[0]
        loaded = time.perf_counter() - t1
        assert first["messages"][0]["role"] == "system"
        return {"import_s": imported, "load_to_first_row_s": loaded, "rows": len(ds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--file", default=None, help="use this JSONL instead of generating one")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--skip-stats", action="store_true")
    ap.add_argument("--stats-rows", type=int, default=100_000 if os.environ.get("BENCH_REPORT") else 0,
                    help="token statistics on the first N rows only (default: all rows; 100,000 under make bench)")
    ap.add_argument("--skip-datasets", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    path = Path(args.file) if args.file else Path(f"/tmp/tunedeck-bench-{args.rows}.jsonl")
    if not path.exists():
        t0 = time.perf_counter()
        generate(path, args.rows)
        print(f"generated {path} ({args.rows:,} rows) in {time.perf_counter() - t0:.1f} s")
    size_mb = path.stat().st_size / 1e6
    print(f"file: {path}  {size_mb:,.0f} MB   cpus: {os.cpu_count()}   load average: {os.getloadavg()[0]:.1f}")

    r = bench_reader(path)
    print(f"reader   first 50 rows + format          {r['first_rows_s'] * 1000:8.1f} ms")
    print(f"reader   line index of all {r['rows']:,} rows  {r['index_s']:8.2f} s")
    print(f"reader   last row + 30 middle rows        {r['random_access_s'] * 1000:8.1f} ms")

    s = bench_screen(path, stats=False)
    print(f"screen   open -> first rows drawn         {s['screen_first_rows_s'] * 1000:8.1f} ms   (budget 1000 ms)")
    print(f"screen   app start -> first rows drawn    {s['app_start_to_first_rows_s'] * 1000:8.1f} ms")
    print(f"screen   key press while scanning, p95    {s['key_press_while_scanning_ms_p95']:8.1f} ms")
    print(f"screen   key press when idle, p95         {s['key_press_idle_ms_p95']:8.1f} ms   (same machine load, nothing scanning)")
    print(f"screen   background index complete        {s['screen_index_s']:8.2f} s")
    print(f"screen   every row checked (child)        {s['screen_row_check_s']:8.2f} s   ({s['screen_rows']:,} rows)")
    print(f"screen   End -> last row drawn            {s['jump_to_last_row_s'] * 1000:8.1f} ms")

    elapsed_inspect, inspected, n = bench_cli(path, "inspect")
    report_rows = inspected["rows"]
    print(f"cli      data inspect (every row checked) {elapsed_inspect:8.2f} s   ({inspected['rows']:,} rows, {inspected['bad_rows']} bad, {n} progress events)")

    stats_s = stats_rows = None
    if not args.skip_stats:
        stats_path = path
        if args.stats_rows and args.stats_rows < r["rows"]:
            stats_path = Path(f"/tmp/tunedeck-bench-head-{args.stats_rows}.jsonl")
            with open(path, "rb") as src, open(stats_path, "wb") as dst:
                for _, line in zip(range(args.stats_rows), src):
                    dst.write(line)
        elapsed, stats, n = bench_cli(stats_path, "stats", "--model", args.model, "--max-length", str(args.max_length))
        stats_s, stats_rows = elapsed, stats["examples"]
        print(f"cli      data stats (tokenizer, {os.cpu_count()} procs) {elapsed:8.2f} s   "
              f"({stats['examples']:,} examples, {stats['tokens']:,} tokens, {stats['trainable_tokens']:,} trained, "
              f"{stats['over_max_length']} over {args.max_length}, {n} progress events)")
        if stats_path != path:
            stats_path.unlink()

    d = None
    if not args.skip_datasets:
        d = bench_datasets(path)
        print(f"datasets import                           {d['import_s']:8.2f} s")
        print(f"datasets load_dataset('json') -> ds[0]    {d['load_to_first_row_s']:8.2f} s   ({d['rows']:,} rows)")
        print(f"ratio    datasets first row / screen first rows  {d['load_to_first_row_s'] / s['screen_first_rows_s']:,.0f}x")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import report

    rows = f"{r['rows']:,}-row JSONL ({size_mb:,.0f} MB)"
    report(f"data: first rows on screen, {rows}", f"{s['screen_first_rows_s'] * 1000:.0f} ms", "< 1000 ms",
           "Data screen open -> first rows drawn (headless pilot)")
    report("data: key press while indexing, p95", f"{s['key_press_while_scanning_ms_p95']:.0f} ms",
           f"idle p95 here {s['key_press_idle_ms_p95']:.0f} ms", "pilot ↓ while the index and row check run")
    report("data: every row checked (tunedeck data inspect)", f"{elapsed_inspect:.1f} s", "with progress",
           f"{report_rows:,} rows, one child process")
    if stats_s is not None:
        report(f"data: token statistics, {stats_rows:,} rows", f"{stats_s:.0f} s", "with progress",
               f"tunedeck data stats --model {args.model}, {os.cpu_count()} processes")
    if d is not None:
        report("data: datasets.load_dataset('json') to first row", f"{d['load_to_first_row_s']:.1f} s",
               "for comparison", f"{d['load_to_first_row_s'] / s['screen_first_rows_s']:,.0f}x the screen's first rows")


if __name__ == "__main__":
    main()
