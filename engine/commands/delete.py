"""`tunedeck delete RUN [--yes]`: remove a run folder — and only the run folder.

The user's data and base model are never inside a run folder (the config only names them), and
``delete_run`` refuses anything that is not a run folder directly inside the run store, a run whose
worker is alive, and a run whose config points inside its own folder.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def delete_run(ref: str) -> str:
    """Delete a finished run's folder; returns a sentence for people. TunedeckError if it may not."""
    from engine.errors import TunedeckError
    from engine.paths import runs_dir
    from engine.runs import ALIVE, get_run

    run = get_run(ref)
    folder = run.dir
    store = runs_dir().resolve()
    if folder.is_symlink() or folder.resolve().parent != store:
        raise TunedeckError(f"{folder} is not a folder inside the run store {store}; Tunedeck deletes only its own runs.")
    info = run.info(with_log=False)
    if info.state in ALIVE:
        raise TunedeckError(f"Run {run.id} is still {info.state} (pid {info.pid}); stop it first (`tunedeck stop {run.id}`).")
    config = run.config()
    for key in ("model", "data", "eval_data"):
        value = config.get(key)
        if isinstance(value, str) and value != "demo":
            target = Path(value).expanduser()
            if target.exists() and folder.resolve() in (target.resolve(), *target.resolve().parents):
                raise TunedeckError(
                    f"Run {run.id}'s {key} ({value}) lies inside its own folder; move it out before deleting the run."
                )
    shutil.rmtree(folder)
    return f"Deleted run {run.id} ({folder})."


def register(sub) -> None:
    p = sub.add_parser("delete", help="delete a finished run's folder (never your data or model)",
                       description="Delete a run folder: config, logs, checkpoints and adapter. Your data and "
                       "base model are not touched.")
    p.add_argument("run", help="run id, unique prefix, or folder")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.errors import TunedeckError
    from engine.runs import get_run

    target = get_run(args.run)
    if not args.yes:
        if not sys.stdin.isatty():
            raise TunedeckError(f"Not deleting {target.id} without confirmation; add --yes to delete it.")
        answer = input(f"Delete run {target.id} and its checkpoints ({target.dir})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Kept.")
            return 1
    print(delete_run(args.run))
    return 0
