"""Run an engine sub-command in a short-lived child process, so the TUI never imports ML libraries.

Use from a thread worker (these calls block):

    result = run_json(["data", "inspect", path, "--model", model])       # one JSON object
    for event in stream_json(["data", "stats", path, "--progress"]):    # JSON lines as they come
        ...
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator


class EngineProcessError(Exception):
    """The child failed; the message is the last line it wrote on stderr (one clear sentence)."""


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "engine", *args]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("tunedeck: ") if lines else "the helper process failed without a message"


def run_json(args: list[str], *, timeout: float | None = None, ok_codes: tuple[int, ...] = (0,)) -> dict:
    proc = subprocess.run(
        _command(args), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode not in ok_codes:
        raise EngineProcessError(_last_line(proc.stderr))
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise EngineProcessError(f"the helper process printed no JSON ({exc})") from None


def stream_json(args: list[str], *, ok_codes: tuple[int, ...] = (0,)) -> Iterator[dict]:
    """Yield each JSON line the child prints; raise EngineProcessError if it fails."""
    proc = subprocess.Popen(
        _command(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                yield json.loads(line)
        stderr = proc.stderr.read() if proc.stderr else ""
        if proc.wait() not in ok_codes:
            raise EngineProcessError(_last_line(stderr))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
