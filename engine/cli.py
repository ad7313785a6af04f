"""The `tunedeck` command.

`tunedeck` alone opens the app on the built-in demo; `tunedeck --data FILE --model REF` opens it on
your own. Sub-commands live one per module in `engine/commands/`; each module defines
`register(subparsers)` and is picked up by name, so adding one touches no other file.
Heavy libraries are imported only inside the sub-command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__
from .errors import TunedeckError


def _command_modules():
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunedeck",
        description="Fine-tune language models from a terminal. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"tunedeck {__version__}")
    parser.add_argument("--data", default="demo", help="dataset to open in the app (default: demo)")
    parser.add_argument("--model", default="demo", help="model folder, .gguf file or hub id (default: demo)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(sub)
    return parser


def open_app(data: str = "demo", model: str = "demo", run: str | None = None) -> int:
    from tui.app import TunedeckApp

    TunedeckApp(data=data, model=model, attach_run=run).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            return open_app(args.data, args.model)
        return int(args.func(args) or 0)
    except TunedeckError as exc:
        print(f"tunedeck: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
