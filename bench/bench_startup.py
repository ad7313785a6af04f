"""Start-up figures (issue 2). Prints a table; asserts nothing.

- TUI start to first frame: `tunedeck` is started in a real terminal (tmux, 80x24) and the pane is
  polled every 5 ms until the home screen's text is on it. Includes the tmux start, so it slightly
  over-states. Median and worst of N runs. Budget: < 0.5 s.
- Demo model load from the safetensors cache: `engine.models.load_model("demo")` in a fresh
  process, timed around the call (imports timed separately). Budget: < 3 s (vs ~15 s from GGUF).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUNEDECK = str(Path(sys.executable).parent / "tunedeck")


def first_frame_seconds(marker: str = "Your first fine-tune") -> float:
    session = f"bench-start-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", TUNEDECK], check=True)
    try:
        while True:
            pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            if marker in pane:
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > 20:
                raise RuntimeError("the app did not draw its first frame within 20 s:\n" + pane)
            time.sleep(0.005)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def demo_load_seconds() -> tuple[float, float]:
    code = (
        "import time; t0=time.perf_counter(); import torch, transformers; t1=time.perf_counter();"
        "from engine import models; models.load_model('demo'); t2=time.perf_counter();"
        "print(t1-t0, t2-t1)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    imports, load = map(float, out.stdout.split()[-2:])
    return imports, load


def main(runs: int = 7) -> list[tuple[str, str, str]]:
    rows = []
    if shutil.which("tmux"):
        first_frame_seconds()  # warm the file cache
        times = [first_frame_seconds() for _ in range(runs)]
        rows.append(("TUI start to first frame (tmux 80x24)",
                     f"median {statistics.median(times):.3f} s, max {max(times):.3f} s", "< 0.5 s"))
    else:
        rows.append(("TUI start to first frame", "skipped: tmux not installed", "< 0.5 s"))
    from engine import models

    models.materialize("demo")  # make sure the cache exists; not timed
    imports, load = demo_load_seconds()
    rows.append(("Demo model load from cache", f"{load:.2f} s (+ {imports:.2f} s importing torch/transformers)", "< 3 s"))
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import report

    methods = ["tmux new-session, poll capture-pane every 5 ms until the home screen is drawn",
               "fresh process: models.load_model('demo') timed around the call"]
    for (name, figure, budget), method in zip(main(), methods):
        report(name, figure, budget, method)
