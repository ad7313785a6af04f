"""``python -m engine.launcher ACCELERATE-LAUNCH-ARGUMENTS``: the process a run of several processes
starts (``engine.launch`` spawns it detached). It is ``accelerate launch`` with SIGHUP ignored — a lost
terminal must not stop a run; ignoring it here is inherited by the workers too — and a stop (SIGTERM)
ends with one line instead of torchrun's traceback. Its own module: it imports accelerate, which
``engine.launch`` (used by the TUI) must not.

On one machine the rendezvous store listens on the loopback only: torchrun's static rendezvous
creates a TCPStore that binds every interface, so the processes could be reached (and a run
disturbed) from the network. Here the store gets a socket bound to 127.0.0.1 (``master_listen_fd``).
Only a launch script for several machines (``tunedeck export --launch-script``) listens beyond it.
"""

from __future__ import annotations

import signal
import sys


LOOPBACK = ("127.0.0.1", "localhost")


def _loopback_store() -> None:
    """Make torchrun's static rendezvous host its store on 127.0.0.1 only (see the module's docstring)."""
    import socket

    from torch.distributed import TCPStore
    from torch.distributed.elastic.rendezvous import static_tcp_rendezvous as static

    def store(host, port, world_size=None, is_master=False, *args, **kwargs):
        if is_master and host in LOOPBACK and kwargs.get("master_listen_fd") is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", int(port)))
            port = sock.getsockname()[1]
            kwargs["master_listen_fd"] = sock.detach()
        return TCPStore(host, port, world_size, is_master, *args, **kwargs)

    static.TCPStore = store


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _loopback_store()
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
