"""Key press to redrawn frame on the Train monitor while a training run keeps every core busy.

A real LoRA run on the demo model (or --model REF) is started detached; `tunedeck attach RUN` runs in
a real terminal (tmux, 80x24 by default). Each press of `s` toggles the loss chart's smoothing, which
redraws the plot and flips the caption between "smoothing on" and "smoothing off"; the pane is polled
with `tmux capture-pane` until the caption has flipped and the plot's lines have changed. The figure therefore includes tmux's own
send-keys and capture costs (measured separately and printed). Presses are spaced 100-300 ms apart,
at random, so they do not line up with the monitor's own redraws (events every step, samples at 1 Hz).

Prints p50 / p95 / max over the presses and the machine's CPU use during the measurement.
Budget: p95 < 100 ms. Asserts nothing.

    .venv/bin/python bench/bench_keypress.py [--presses 50] [--model demo] [--size 80x24]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def tmux(socket: str, *args: str, capture: bool = False) -> str:
    out = subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, check=not capture)
    return out.stdout


def pane(socket: str) -> str:
    return tmux(socket, "capture-pane", "-p", "-t", "bench", capture=True)


def wait_for(socket: str, predicate, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = pane(socket)
        if predicate(text):
            return text
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}; the screen was:\n{text}")


def chart(text: str) -> list[str]:
    """The plot's lines: from below the caption down to the x-axis label."""
    lines = text.splitlines()
    top = next((i for i, line in enumerate(lines) if "smoothing o" in line), 0)
    bottom = next((i for i in range(top + 1, len(lines)) if lines[i].strip() == "step"), len(lines))
    return lines[top + 1:bottom]


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=50)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", default="80x24")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("tmux is needed for this benchmark (a real terminal).")
    width, height = args.size.split("x")

    home = Path(tempfile.mkdtemp(prefix="tunedeck-bench-"))
    os.environ["TUNEDECK_HOME"] = str(home / "home")
    os.environ["TUNEDECK_CONFIG"] = str(home / "config")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from engine import launch
    from engine.config import RunConfig
    from engine.follow import RunFollower

    config = RunConfig.from_dict({"model": args.model, "method": "lora", "max_steps": 100_000, "batch_size": 8,
                                  "max_length": 256, "save_steps": 100_000, "eval_steps": 0})
    run = launch.start_run(config)
    socket = f"tunedeck-bench-{os.getpid()}"
    print(f"run {run.id} (LoRA on {args.model}) in {run.dir}")
    try:
        follower = RunFollower(run)
        deadline = time.monotonic() + 900
        view = follower.view()
        # three logged steps, so that smoothing visibly changes the plot
        while time.monotonic() < deadline and not (view.state == "running" and len(view.losses) >= 3):
            view = follower.poll() or view
            if view.state in ("failed", "crashed", "completed"):
                raise SystemExit(f"the run {view.state}: {view.message}")
            time.sleep(0.5)
        print(f"training: step {view.step}, {view.tokens_per_second or 0:.0f} tokens/s")

        command = f"exec {sys.executable} -m engine attach {run.id}"
        tmux(socket, "new-session", "-d", "-s", "bench", "-x", width, "-y", height, "-c", str(ROOT), command)
        wait_for(socket, lambda t: "● running" in t and "smoothing on" in t, 60, "the monitor")
        time.sleep(2.0)  # let the first sample and history settle

        # tmux's own cost: one send-keys of a key the app ignores, and one capture-pane
        t0 = time.perf_counter()
        for _ in range(20):
            pane(socket)
        capture_ms = (time.perf_counter() - t0) / 20 * 1000

        psutil.cpu_percent(interval=None)
        cpu_samples = []
        latencies = []
        state = "on"
        for _ in range(args.presses):
            time.sleep(random.uniform(0.1, 0.3))
            want = "smoothing off" if state == "on" else "smoothing on"
            before = chart(pane(socket))
            t0 = time.perf_counter()
            tmux(socket, "send-keys", "-t", "bench", "s")
            while True:
                now = pane(socket)
                if want in now and chart(now) != before:
                    break
                if time.perf_counter() - t0 > 10:
                    raise SystemExit("the screen did not change within 10 s of a key press")
            latencies.append((time.perf_counter() - t0) * 1000)
            state = "off" if state == "on" else "on"
            cpu_samples.append(psutil.cpu_percent(interval=None))
        view = follower.poll() or view
    finally:
        tmux(socket, "kill-server", capture=True)
        try:
            launch.stop_run(run.id, grace=30)
        except Exception as exc:  # already ended
            print(f"(stop: {exc})")

    cores = psutil.cpu_count() or 1
    print()
    print(f"key press -> redrawn frame, Train monitor at {args.size}, {len(latencies)} presses")
    print(f"  p50 {percentile(latencies, 0.5):6.1f} ms")
    print(f"  p95 {percentile(latencies, 0.95):6.1f} ms   (budget < 100 ms)")
    print(f"  max {max(latencies):6.1f} ms   mean {statistics.mean(latencies):.1f} ms")
    print(f"  tmux capture-pane alone: {capture_ms:.1f} ms per call (part of every figure above)")
    print(f"  machine CPU during the presses: mean {statistics.mean(cpu_samples):.0f}% of {cores} cores "
          f"(min {min(cpu_samples):.0f}%); training reached step {view.step}")
    from _report import report

    how = (f"`s` on the Train monitor in tmux {args.size}, {len(latencies)} presses, a {args.model} run training; "
           f"CPU {statistics.mean(cpu_samples):.0f}%")
    report(f"tui: key press -> frame under training load, p50 / p95 ({args.size})",
           f"{percentile(latencies, 0.5):.0f} / {percentile(latencies, 0.95):.0f} ms", "p95 < 100 ms", how)


if __name__ == "__main__":
    main()
