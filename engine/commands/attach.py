"""`tunedeck attach [RUN]`: open the app on the live monitor of a run (default: the latest).

The monitor replays the run's whole history from its folder, then follows it; closing the app
leaves the run going. Several terminals may attach to one run.
"""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "attach",
        help="watch a run live in the app (re-attach after closing the terminal)",
        description="Open the app on the monitor of a run: its loss curves, progress, GPU and log. "
        "Closing the app does not stop the run.",
    )
    parser.add_argument("run", nargs="?", default="latest",
                        help="run id, unique id prefix, run folder, or 'latest' (default)")
    parser.set_defaults(func=_attach)


def _attach(args) -> int:
    from ..cli import open_app
    from ..paths import runs_dir
    from ..runs import get_run

    run = get_run(args.run)  # RunNotFound is a TunedeckError: one sentence on stderr
    config = run.config()
    model = str(config.get("model") or args.model)
    data = str(config.get("data") or args.data)
    inside = run.dir.parent.resolve() == runs_dir().resolve()
    return open_app(data, model, run=run.id if inside else str(run.dir))
