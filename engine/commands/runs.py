"""`tunedeck runs [--json]`: every run, newest first, with its state (a run whose worker died
without saying so is shown `crashed`), step, loss, model and method. A preference run's method names
its objective (``lora · DPO``); its JSON adds ``eval_reward_accuracy``, the latest held-out reward
accuracy from its events (None for KTO, which has no pairs, or before the first evaluation)."""

from __future__ import annotations

import json
import time

from ..config import PREFERENCE_OBJECTIVES


def register(subparsers) -> None:
    parser = subparsers.add_parser("runs", help="list training runs and their state",
                                   description="List training runs, newest first.")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list (id, status, step, max_steps, pid, created, model, method, ...)")
    parser.set_defaults(func=run)


def as_json(info) -> dict:
    d = info.to_dict()
    d["status"] = info.state
    if info.objective in PREFERENCE_OBJECTIVES:
        d["eval_reward_accuracy"] = eval_reward_accuracy(info)
    return d


def eval_reward_accuracy(info) -> float | None:
    """The latest eval reward accuracy of a preference run, folded from its events by the one reducer."""
    from ..run_state import RunHistory
    from ..runs import Run

    return RunHistory().extend(Run(info.dir).events()).eval_reward_accuracy


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0, time.time() - ts)
    if s < 60:
        return f"{s:.0f}s ago"
    if s < 3600:
        return f"{s / 60:.0f}m ago"
    if s < 86400:
        return f"{s / 3600:.0f}h ago"
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def run(args) -> int:
    from ..paths import runs_dir
    from ..runs import list_runs, method_label

    runs = list_runs()
    if args.json:
        print(json.dumps([as_json(i) for i in runs], indent=1))
        return 0
    if not runs:
        print(f"No runs yet in {runs_dir()}; start one with `tunedeck train --model demo --data demo --max-steps 20`.")
        return 0
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    colours = {"running": "cyan", "starting": "cyan", "stopping": "yellow", "completed": "green",
               "stopped": "yellow", "failed": "red", "crashed": "red"}
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("RUN", "STATUS", "STEP", "LOSS", "MODEL", "METHOD", "CREATED"):
        table.add_column(col, no_wrap=col in ("RUN", "STATUS", "STEP", "METHOD"))
    for i in runs:
        step = f"{i.step}/{i.max_steps}" if i.max_steps else str(i.step)
        loss = f"{i.last_loss:.4f}" if isinstance(i.last_loss, (int, float)) else "-"
        model = i.model or "-"
        if model not in ("demo",) and "/" in model and Path(model).is_absolute():
            model = Path(model).name
        c = colours.get(i.state, "white")
        table.add_row(i.id, f"[{c}]{i.state}[/]", step, loss, model, method_label(i.method, i.objective) or "-", _ago(i.created))
    console = Console()
    console.print(table)
    for i in runs:
        if i.state in ("failed", "crashed") and i.message:
            console.print(Text.assemble((i.id, "red"), f": {i.message}"), highlight=False)
            if i.state == "crashed":
                console.print(f"  `tunedeck resume {i.id}` continues from its newest checkpoint.", highlight=False)
    return 0
