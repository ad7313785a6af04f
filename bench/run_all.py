"""`make bench`: run every benchmark, then print one table of figures against their budgets.

Each benchmark is a script of its own (run it alone for details and options); here each runs in a
child process with settings that keep the whole suite to a few minutes on a 2-core machine, and
reports its figures through bench/_report.py. Ratios are measured side by side inside one script.
The load average is printed: figures from a busy machine are worse than the machine can do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent

BENCHES = [
    ("bench_startup.py", []),
    ("bench_data_open.py", ["--rows", "1000000"]),
    ("bench_first_step.py", ["--reps", "2"]),
    ("bench_engine_overhead.py", ["--steps", "6", "--pairs", "2"]),
    ("bench_engine_overhead.py", ["--data", "varied", "--batch-size", "4", "--steps", "5", "--pairs", "2"]),
    ("bench_keypress.py", ["--presses", "40"]),
    ("bench_chat.py", ["--prompts", "3", "--tokens", "32"]),
    ("bench_estimate.py", ["--quick"]),
    ("bench_demo_quality.py", ["--steps", "10", "--prompts", "12"]),
    ("bench_dpo_demo.py", []),
]


def main() -> int:
    only = sys.argv[1:]
    console = Console(width=None if sys.stdout.isatty() else 160)  # a log file gets the whole table
    report = Path(tempfile.mkstemp(prefix="tunedeck-bench-", suffix=".jsonl")[1])
    env = dict(os.environ, BENCH_REPORT=str(report))
    failures = []
    for script, args in BENCHES:
        if only and not any(o in script for o in only):
            continue
        console.rule(f"[b]{script}[/b] {' '.join(args)}")
        started = time.monotonic()
        proc = subprocess.run([sys.executable, str(HERE / script), *args], env=env, cwd=HERE.parent)
        console.print(f"[dim]{script}: {time.monotonic() - started:.0f} s, exit {proc.returncode}[/dim]")
        if proc.returncode:
            failures.append(script)
    rows = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    report.unlink(missing_ok=True)
    table = Table(title=f"Tunedeck benchmarks (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    table.add_column("figure")
    table.add_column("measured", style="bold")
    table.add_column("budget")
    table.add_column("how", style="dim")
    for row in rows:
        table.add_row(row["name"], row["value"], row["budget"], row["method"])
    console.print(table)
    if failures:
        console.print(f"[red]failed: {', '.join(failures)}[/red]")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
