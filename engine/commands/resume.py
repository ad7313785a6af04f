"""`tunedeck resume [RUN] [--follow] [--json]`: continue a stopped, crashed or failed run in the same
folder from its newest complete checkpoint; its events continue in the same log."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("resume", help="continue a stopped or crashed run from its newest checkpoint")
    parser.add_argument("run", nargs="?", default="latest", help="run id, unique prefix, folder, or latest (default)")
    parser.add_argument("--follow", "-f", action="store_true",
                        help="show a progress bar until the run ends (Ctrl-C detaches, the run goes on)")
    parser.add_argument("--json", action="store_true", help='print {"run_id", "run_dir"} as JSON')
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..launch import resume_run

    target = resume_run(args.run)
    status = target.read_status()
    if args.json:
        print(json.dumps({"run_id": target.id, "run_dir": str(target.dir)}), flush=True)
        if args.follow:
            from ._follow import follow_json

            return follow_json(target, _offset(target))
        return 0
    print(f"{status.get('message', 'Resuming')} — run {target.id}")
    if args.follow:
        from ._follow import follow_progress

        return follow_progress(target, _offset(target))
    print(f"  watch   tunedeck logs {target.id} -f   (or tunedeck attach {target.id} for the live monitor)")
    return 0


def _offset(run) -> int:
    """Follow from the end of the events written before this resume."""
    try:
        return run.events_path.stat().st_size
    except OSError:
        return 0
