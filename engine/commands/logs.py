"""`tunedeck logs [RUN] [-f] [-n N] [--events]`: the worker's log (or its events) of a run;
`-f` follows it until the run ends (Ctrl-C stops following, never the run)."""

from __future__ import annotations

import json
import sys
import time


def register(subparsers) -> None:
    parser = subparsers.add_parser("logs", help="show (and follow) a run's worker log")
    parser.add_argument("run", nargs="?", default="latest", help="run id, unique prefix, folder, or latest (default)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    parser.add_argument("-n", "--lines", type=int, default=40, help="lines of the log to show first (default 40; 0: all)")
    parser.add_argument("--events", action="store_true", help="print events.jsonl (JSON lines) instead of worker.log")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..runs import get_run

    target = get_run(args.run)
    if args.events:
        if args.follow:
            from ._follow import follow_json

            return follow_json(target)
        for event in target.events():
            print(json.dumps(event))
        return 0
    return _log(target, args.lines, args.follow)


def _log(target, lines: int, follow: bool) -> int:
    from ..follow import RunFollower
    from ._follow import exit_code, is_over

    path = target.log_path
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    text = data.decode("utf-8", "replace")
    shown = text.splitlines()
    if lines > 0:
        shown = shown[-lines:]
    for line in shown:
        print(line.rsplit("\r", 1)[-1])
    offset = len(data)
    if not follow:
        return 0
    follower = RunFollower(target)
    warned = None
    try:
        while True:
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            if chunk:
                end = chunk.rfind(b"\n") + 1
                if end:
                    sys.stdout.write(chunk[:end].decode("utf-8", "replace"))
                    sys.stdout.flush()
                    offset += end
            if not chunk:
                follower.poll()
                view = follower.view()
                if view.overfitting and not warned:  # said once, between the log's lines
                    print(f"[tunedeck] {view.overfitting}", flush=True)
                warned = view.overfitting
                if is_over(view):
                    print(f"[{view.state}] {view.message or ''}")
                    return exit_code(view.state)
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
