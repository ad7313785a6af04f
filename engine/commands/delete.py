"""`tunedeck delete RUN [--yes]`: remove a run folder — and only the run folder.

The user's data and base model are never inside a run folder (the config only names them), and
``engine.runs.delete_run`` refuses anything that is not a run folder directly inside the run store, a run whose
worker is alive, and a run whose config points inside its own folder.
"""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("delete", help="delete a finished run's folder (never your data or model)",
                       description="Delete a run folder: config, logs, checkpoints and adapter. Your data and "
                       "base model are not touched.")
    p.add_argument("run", help="run id, unique prefix, or folder")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.errors import TunedeckError
    from engine.runs import delete_run, get_run

    target = get_run(args.run)  # an empty or ambiguous reference is refused there
    if not args.yes:
        if not sys.stdin.isatty():
            raise TunedeckError(f"Not deleting {target.id} without confirmation; add --yes to delete it.")
        answer = input(f"This deletes run {target.id} with its checkpoints ({target.dir}).\n"
                       "Type the run id to confirm: ")
        if answer.strip() != target.id:
            print("Kept (the id typed was not the run's).")
            return 1
    print(delete_run(str(target.dir)))
    return 0
