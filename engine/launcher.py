"""``python -m engine.launcher ACCELERATE-LAUNCH-ARGUMENTS``: the process a run of several processes
starts (``engine.launch`` spawns it detached). It is ``accelerate launch`` with SIGHUP ignored — a lost
terminal must not stop a run; ignoring it here is inherited by the workers too — and a stop (SIGTERM)
ends with one line instead of torchrun's traceback. Its own module: it imports accelerate, which
``engine.launch`` (used by the TUI) must not.
"""

from __future__ import annotations

import signal
import sys


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from accelerate.commands.launch import launch_command, launch_command_parser

    args = launch_command_parser().parse_args(argv)
    try:
        launch_command(args)
    except Exception as exc:
        if type(exc).__name__ != "SignalException":
            raise
        sig = getattr(exc, "sigval", None)
        name = getattr(sig, "name", None) or str(sig)
        print(f"[tunedeck launcher] {name}: the workers were asked to stop and have ended.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
