"""Following a run from the command line: a Rich progress bar with the loss (``--follow``), or the
events as JSON lines (``--json --follow``). Ctrl-C detaches; the run carries on. Shared by
``train``, ``resume`` and ``logs``; no ML imports.
"""

from __future__ import annotations

import json
import sys
import time

from ..runs import ALIVE, Run, pid_alive

POLL = 0.5
DETACHED = ("Detached; the run goes on. `tunedeck logs {id} -f` follows it again, "
            "`tunedeck stop {id}` stops it.")


def state_of(run: Run) -> str:
    """The run's state with liveness, cheaply (no config or log reading): for polling loops."""
    status = run.read_status()
    state = status.get("state", "unknown")
    if state in ALIVE and not pid_alive(status.get("pid"), status.get("pid_started")):
        return "crashed"
    return state


def settled_info(run: Run):
    """The run's info; a run that looks crashed is looked at again a moment later, because whoever
    stopped or killed its worker records how it ended just after the process is gone."""
    info = run.info()
    if info.state == "crashed":
        time.sleep(1.5)
        info = run.info()
    return info


def _exit_code(state: str) -> int:
    return 0 if state in ("completed", "stopped") else 1


def _fmt(x, digits: int = 4) -> str:
    if isinstance(x, (int, float)):
        return f"{x:.{digits}f}"
    return str(x)


def follow_json(run: Run, offset: int = 0) -> int:
    """Print every event as a JSON line until the run ends; returns the exit code."""
    try:
        while True:
            events, offset = run.read_events(offset)
            for event in events:
                print(json.dumps(event), flush=True)
            if state_of(run) not in ALIVE:
                info = settled_info(run)
                events, offset = run.read_events(offset)  # anything written as it ended
                for event in events:
                    print(json.dumps(event), flush=True)
                if not any(e.get("type") == "end" for e in events) and info.state == "crashed":
                    print(json.dumps({"type": "end", "state": "crashed", "step": info.step,
                                      "message": info.message}), flush=True)
                return _exit_code(info.state)
            time.sleep(POLL)
    except KeyboardInterrupt:
        print(DETACHED.format(id=run.id), file=sys.stderr)
        return 0


def follow_progress(run: Run, offset: int = 0) -> int:
    """A progress bar (step of max_steps, loss, tokens/s) until the run ends; Ctrl-C detaches."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=False)
    progress = Progress(
        SpinnerColumn(), BarColumn(bar_width=16), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[detail]}"),
        console=console, transient=False,
    )
    status = run.read_status()
    task = progress.add_task(run.id, total=status.get("max_steps"), completed=status.get("step") or 0,
                             detail=status.get("message") or "", eta="")
    last = {"loss": None, "eval": None, "tps": None}
    pace: list[tuple[float, int]] = []  # (time, step) of recent logs, for the time left

    def eta(step: int, total) -> str:
        if len(pace) < 2 or not total:
            return ""
        (t0, s0), (t1, s1) = pace[0], pace[-1]
        if s1 <= s0:
            return ""
        left = (total - step) * (t1 - t0) / (s1 - s0)
        return "left " + (f"{left / 3600:.1f}h" if left >= 5400 else f"{left / 60:.0f}m" if left >= 90 else f"{left:.0f}s")

    def detail() -> str:
        parts = []
        if last["loss"] is not None:
            parts.append(f"loss {_fmt(last['loss'])}")
        if last["eval"] is not None:
            parts.append(f"val {_fmt(last['eval'])}")
        if last["tps"] is not None:
            parts.append(f"{last['tps']:.0f} tok/s")
        return "  ".join(parts)

    try:
        with progress:
            while True:
                events, offset = run.read_events(offset)
                for e in events:
                    kind = e.get("type")
                    if kind == "status":
                        progress.update(task, detail=e.get("message", ""))
                    elif kind == "start":
                        pace.clear()
                        pace.append((e.get("time") or time.time(), e.get("step") or 0))
                        progress.update(task, total=e.get("max_steps"), completed=e.get("step") or 0,
                                        detail=detail() or "training…")
                        progress.console.print(f"[dim]{e.get('message', '')}[/]")
                    elif kind == "log":
                        last["loss"] = e.get("loss")
                        last["tps"] = e.get("tokens_per_second") or last["tps"]
                        pace.append((e.get("time") or time.time(), e.get("step") or 0))
                        del pace[:-20]
                        total = progress.tasks[0].total
                        progress.update(task, completed=e.get("step") or 0, detail=detail(),
                                        eta=eta(e.get("step") or 0, total))
                    elif kind == "eval":
                        last["eval"] = e.get("eval_loss")
                        progress.update(task, detail=detail())
                    elif kind == "checkpoint":
                        progress.console.print(f"[dim]step {e.get('step')}: saved {e.get('path')}[/]")
                    elif kind == "error":
                        progress.console.print(f"[red]{e.get('message', '')}[/]")
                state = state_of(run)
                if state not in ALIVE:
                    info = settled_info(run)
                    events, offset = run.read_events(offset)
                    for e in events:
                        if e.get("type") == "log":
                            progress.update(task, completed=e.get("step") or 0)
                    break
                if state == "stopping":
                    progress.update(task, detail="stopping: saving a checkpoint at the end of this step…")
                time.sleep(POLL)
    except KeyboardInterrupt:
        console.print(DETACHED.format(id=run.id))
        return 0
    colour = {"completed": "green", "stopped": "yellow"}.get(info.state, "red")
    console.print(f"[{colour}]{info.state}[/]: {info.message or ''}")
    if info.state in ("failed", "crashed") and info.log_tail:
        console.print("[dim]last lines of worker.log:[/]")
        for line in info.log_tail[-5:]:
            console.print("  " + line, markup=False, highlight=False, style="dim")
    return _exit_code(info.state)
