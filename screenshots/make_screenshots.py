"""`make screenshots`: drive the real app and save an SVG of every screen, and of home in every theme.

Uses a real finished demo run: the newest completed LoRA run of the demo in $TUNEDECK_HOME (or in
the screenshots' own home under the user cache dir); if there is none, it trains one first
(30 steps, a few CPU minutes). The chat screenshot asks the fine-tuned and the base model the same
ticket, for real, and waits for both answers.

    .venv/bin/python screenshots/make_screenshots.py [--size 120x36] [--steps 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TICKET = ("Hi, my Nimbus Headphones from order K12345 still haven't arrived after two weeks. "
          "Please help ASAP, this is urgent!")


def finished_demo_run(steps: int) -> str:
    from engine import launch, runs
    from engine.config import RunConfig

    for info in runs.list_runs():
        if info.state == "completed" and info.model == "demo" and info.data == "demo" and info.method == "lora":
            return info.id
    print(f"No finished demo run in {runs.runs_dir()}: training one ({steps} steps)…", flush=True)
    config = RunConfig.from_dict({"model": "demo", "data": "demo", "method": "lora", "max_steps": steps,
                                  "batch_size": 8, "max_length": 256, "learning_rate": 1e-3,
                                  "eval_steps": 10, "save_steps": steps})
    run = launch.start_run(config)
    while True:
        info = run.info()
        if info.state not in runs.ALIVE:
            break
        print(f"  step {info.step}/{info.max_steps}", end="\r", flush=True)
        time.sleep(5)
    if info.state != "completed":
        raise SystemExit(f"The demo run ended {info.state}: {info.message}")
    return run.id


async def settle(pilot, seconds: float = 1.0) -> None:
    await pilot.pause()
    await asyncio.sleep(seconds)
    await pilot.pause()


async def wait_for(pilot, predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            print(f"  (gave up waiting for {what})", flush=True)
            return
        await asyncio.sleep(0.5)
    await pilot.pause()


async def shoot(size: tuple[int, int], run_id: str, out: Path) -> None:
    from tui.app import TunedeckApp

    def save(app, name: str) -> None:
        app.save_screenshot(filename=f"{name}.svg", path=str(out))
        print(f"  saved screenshots/{name}.svg", flush=True)

    app = TunedeckApp(attach_run=None)
    app.project = replace(app.project, run_id=run_id)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, 1.5)
        save(app, "home")
        for theme in ("tunedeck-light", "tunedeck-high-contrast"):
            app.theme = theme
            await settle(pilot, 0.5)
            save(app, f"home-{theme.removeprefix('tunedeck-')}")
        app.theme = "tunedeck-dark"

        await pilot.press("1")
        await settle(pilot, 12)  # rows at once; the tokenizer and token stats come from a helper process
        save(app, "data")
        await pilot.press("t")
        await settle(pilot, 4)
        save(app, "data-tokens")

        await pilot.press("2")
        await settle(pilot, 1)
        await pilot.press("down", "enter")  # "Wrong output format"
        for _ in range(5):
            await pilot.press("enter")
            await settle(pilot, 0.3)
        await settle(pilot, 10)  # parameter counts and memory come from a helper process
        save(app, "method")

        await pilot.press("u")
        await settle(pilot, 8)
        save(app, "train-setup")
        await pilot.press("m")
        await settle(pilot, 4)
        save(app, "train-monitor")

        await pilot.press("5")
        await settle(pilot, 3)
        save(app, "runs")

        await pilot.press("4")
        screen = app.screen
        await wait_for(pilot, lambda: getattr(screen, "loaded", None) is not None, 120, "the chat model")
        await pilot.press("ctrl+t")  # compare: base and fine-tuned side by side
        await settle(pilot, 0.5)
        screen.query_one("#chat-input").value = TICKET
        await pilot.press("enter")
        await settle(pilot, 1)
        await wait_for(pilot, lambda: not getattr(screen, "generating", False), 180, "the answers")
        await settle(pilot, 1)
        save(app, "chat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="120x36")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    if "TUNEDECK_HOME" not in os.environ:
        from engine.paths import cache_dir

        os.environ["TUNEDECK_HOME"] = str(cache_dir() / "screenshots-home")
    width, height = map(int, args.size.split("x"))
    run_id = finished_demo_run(args.steps)
    print(f"Using run {run_id}", flush=True)
    asyncio.run(shoot((width, height), run_id, HERE))


if __name__ == "__main__":
    main()
