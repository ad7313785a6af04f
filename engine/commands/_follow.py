"""Following a run from the command line: a Rich progress bar with the loss (``--follow``), or the
events as JSON lines (``--json --follow``). Ctrl-C detaches; the run carries on. Shared by
``train``, ``resume`` and ``logs``; no ML imports.
"""

from __future__ import annotations

import json
import sys
import time

from ..runs import ALIVE, Run

POLL = 0.25
DETACHED = ("Detached; the run goes on. `tunedeck logs {id} -f` follows it again, "
            "`tunedeck stop {id}` stops it.")


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
            info = run.info(with_log=False)
            if info.state not in ALIVE:
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=False)
    progress = Progress(
        SpinnerColumn(), BarColumn(bar_width=16), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
        console=console, transient=False,
    )
    status = run.read_status()
    task = progress.add_task(run.id, total=status.get("max_steps"), completed=status.get("step") or 0,
                             detail=status.get("message") or "")
    last = {"loss": None, "eval": None, "tps": None}

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
                        progress.update(task, total=e.get("max_steps"), completed=e.get("step") or 0,
                                        detail=detail() or "training…")
                        progress.console.print(f"[dim]{e.get('message', '')}[/]")
                    elif kind == "log":
                        last["loss"] = e.get("loss")
                        last["tps"] = e.get("tokens_per_second") or last["tps"]
                        progress.update(task, completed=e.get("step") or 0, detail=detail())
                    elif kind == "eval":
                        last["eval"] = e.get("eval_loss")
                        progress.update(task, detail=detail())
                    elif kind == "checkpoint":
                        progress.console.print(f"[dim]step {e.get('step')}: saved {e.get('path')}[/]")
                    elif kind == "error":
                        progress.console.print(f"[red]{e.get('message', '')}[/]")
                info = run.info()
                if info.state not in ALIVE:
                    info = settled_info(run)
                    events, offset = run.read_events(offset)
                    for e in events:
                        if e.get("type") == "log":
                            progress.update(task, completed=e.get("step") or 0)
                    break
                if info.state == "stopping":
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
