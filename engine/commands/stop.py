"""`tunedeck stop [RUN] [--grace S] [--no-wait]`: stop a run cleanly. The worker finishes its current
step, saves a checkpoint and the adapter, and ends `stopped`; after the grace period it is killed.
`tunedeck resume RUN` continues it."""

from __future__ import annotations

from ._args import number

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("stop", help="stop a run (it saves a checkpoint first; resume continues it)")
    parser.add_argument("run", nargs="?", default="latest", help="run id, unique prefix, folder, or latest (default)")
    parser.add_argument("--grace", type=number, default=None,
                        help="seconds to wait for the current step and the checkpoint before killing "
                        "(default: 60, or three steps' time on a slow machine)")
    parser.add_argument("--no-wait", action="store_true", help="send the stop request and return at once")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..launch import default_grace, stop_run
    from ..runs import get_run

    target = get_run(args.run)
    if args.grace is None:
        args.grace = default_grace(target)
    if args.no_wait:
        print(stop_run(target, args.grace, wait=False))
        return 0
    tty = sys.stdout.isatty()

    def on_signalled(pid: int) -> None:  # only once the worker is known to be this run's, and alive
        print(f"Stopping {target.id} (pid {pid}): it finishes the current step and saves a checkpoint; "
              f"killed after {args.grace:g} s if it has not.", flush=True)

    def on_wait(left: float) -> None:
        if tty:
            print(f"\r  waiting… {left:4.0f} s left before SIGKILL ", end="", flush=True)

    try:
        message = stop_run(target, args.grace, on_wait=on_wait, on_signalled=on_signalled)
    finally:
        if tty:
            print("\r" + " " * 50 + "\r", end="", flush=True)
    print(message)
    return 0
