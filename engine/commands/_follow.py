"""Following a run from the command line: a Rich progress bar with the loss (``--follow``), or the
events as JSON lines (``--json --follow``). Ctrl-C detaches; the run carries on. Shared by
``train``, ``resume`` and ``logs``; no ML imports. What the run's state is — steps, losses, ETA,
crashed or not — comes from ``engine.follow.RunFollower`` (the one reader of a run's history).
"""

from __future__ import annotations

import json
import sys
import time

from ..follow import RunFollower
from ..run_state import RunView
from ..runs import Run

POLL = 0.5
DETACHED = ("Detached; the run goes on. `tunedeck logs {id} -f` follows it again, "
            "`tunedeck stop {id}` stops it.")


def is_over(view: RunView) -> bool:
    return not view.alive and view.state not in ("created", "unknown")


def wait_until_over(follower: RunFollower, on_view=None) -> RunView:
    """Poll until the run ends (a vanished worker is called crashed after a moment's grace, since
    whoever stopped or killed it records how it ended just after); ``on_view`` gets each change."""
    while True:
        view = follower.poll()
        if view is not None and on_view is not None:
            on_view(view)
        current = follower.view()
        if is_over(current):
            return current
        time.sleep(POLL)


def exit_code(state: str) -> int:
    return 0 if state in ("completed", "stopped") else 1


def follow_json(run: Run, offset: int = 0) -> int:
    """Print every event as a JSON line until the run ends; returns the exit code."""
    ended = False

    def print_new(_view=None) -> None:
        nonlocal offset, ended
        events, offset = run.read_events(offset)
        for event in events:
            ended |= event.get("type") == "end"
            print(json.dumps(event), flush=True)

    try:
        view = wait_until_over(RunFollower(run), print_new)
    except KeyboardInterrupt:
        print(DETACHED.format(id=run.id), file=sys.stderr)
        return 0
    print_new()  # anything written as it ended
    if view.state == "crashed" and not ended:
        print(json.dumps({"type": "end", "state": "crashed", "step": view.step, "message": view.message}), flush=True)
    return exit_code(view.state)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return "left " + (f"{seconds / 3600:.1f}h" if seconds >= 5400 else f"{seconds / 60:.0f}m" if seconds >= 90
                      else f"{seconds:.0f}s")


def _detail(view: RunView) -> str:
    parts = []
    if view.last_loss is not None:
        parts.append(f"loss {view.last_loss:.4f}")
    if view.eval_losses:
        parts.append(f"val {view.eval_losses[-1][1]:.4f}")
    if view.tokens_per_second is not None:
        parts.append(f"{view.tokens_per_second:.0f} tok/s")
    return "  ".join(parts)


def follow_progress(run: Run, offset: int = 0) -> int:
    """A progress bar (step of max_steps, loss, tokens/s, time left) until the run ends; Ctrl-C detaches.
    ``offset`` is unused (the bar shows the whole history); kept so callers can pass where they began."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=False)
    progress = Progress(
        SpinnerColumn(), BarColumn(bar_width=16), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[detail]}"),
        console=console, transient=False,
    )
    follower = RunFollower(run)
    first = follower.view()
    task = progress.add_task(run.id, total=first.max_steps, completed=first.step, detail=first.message or "", eta="")
    seen = {"attempts": first.attempts, "checkpoints": set(first.checkpoints), "error": first.error}

    def show(view: RunView) -> None:
        if view.attempts > seen["attempts"]:  # a (re)start: say how it began
            seen["attempts"] = view.attempts
            progress.console.print(view.attempt_message or view.message or "", style="dim", markup=False,
                                   highlight=False)
        for step in sorted(set(view.checkpoints) - seen["checkpoints"]):
            progress.console.print(f"[dim]step {step}: saved checkpoints/checkpoint-{step}[/]")
        seen["checkpoints"] = set(view.checkpoints)
        if view.error and view.error != seen["error"]:
            progress.console.print(f"[red]{view.error}[/]")
        seen["error"] = view.error
        if view.overfitting and not seen.get("overfitting"):
            progress.console.print(f"[yellow]{view.overfitting}[/]", highlight=False)
        seen["overfitting"] = view.overfitting
        if view.state == "stopping":
            detail = "stopping: saving a checkpoint at the end of this step…"
        elif view.attempts:
            detail = _detail(view) or "training…"
        else:
            detail = view.message or ""
        progress.update(task, total=view.max_steps, completed=view.step, detail=detail, eta=_duration(view.eta()))

    try:
        with progress:
            view = wait_until_over(follower, show)
            show(view)
    except KeyboardInterrupt:
        console.print(DETACHED.format(id=run.id))
        return 0
    colour = {"completed": "green", "stopped": "yellow"}.get(view.state, "red")
    console.print(f"[{colour}]{view.state}[/]: {view.message or ''}")
    if view.state in ("failed", "crashed"):
        tail = run.log_tail(5)
        if tail:
            console.print("[dim]last lines of worker.log:[/]")
            for line in tail:
                console.print("  " + line, markup=False, highlight=False, style="dim")
    return exit_code(view.state)
