"""engine/ipc.py with real child processes: small Python modules written for each test, run the way
the engine's children are (``python -m MODULE``)."""

from __future__ import annotations

import os
import textwrap
import threading
import time

import pytest

from engine import ipc


@pytest.fixture
def module(tmp_path):
    """Write a module; returns the keyword arguments that spawn it."""

    def write(name: str, source: str) -> dict:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
        return {"module": name, "env": {**os.environ, "PYTHONPATH": path}}

    return write


def within(seconds: float, fn):
    """fn() on a thread; fails instead of hanging if it does not return in time."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s (a pipe nobody drains?)"
    if "error" in box:
        raise box["error"]
    return box["value"]


CHATTY = """
    import json, sys
    for i in range(20_000):  # about 1.5 MB, far more than a pipe holds
        print(f"warning {i}: a library that talks a lot on stderr " + "." * 20, file=sys.stderr)
    print(json.dumps({"event": "result", "rows": 3}), flush=True)
    print("tunedeck: the last sentence on stderr says what went wrong", file=sys.stderr)
    sys.exit(int(sys.argv[1]))
"""


def test_a_child_that_fills_stderr_before_its_json_does_not_hang(module):
    spawn = module("chatty", CHATTY)
    assert within(30, lambda: list(ipc.stream_json(["0"], **spawn))) == [{"event": "result", "rows": 3}]


def test_a_failed_child_ends_in_the_sentence_it_wrote_last(module):
    spawn = module("chatty", CHATTY)
    lines = []

    def run():
        for line in ipc.stream_json(["2"], **spawn):
            lines.append(line)

    with pytest.raises(ipc.EngineProcessError) as failure:
        within(30, run)
    assert lines == [{"event": "result", "rows": 3}]
    assert str(failure.value) == "the last sentence on stderr says what went wrong"


def test_without_its_own_sentence_a_failure_says_how_the_child_ended(module):
    spawn = module("crash", """
        import sys
        print("Traceback (most recent call last):", file=sys.stderr)
        print("KeyError: 'rows'", file=sys.stderr)
        sys.exit(3)
    """)
    with pytest.raises(ipc.EngineProcessError) as failure:
        within(30, lambda: list(ipc.stream_json([], **spawn)))
    assert str(failure.value) == "The helper process exited with code 3 (KeyError: 'rows')."


def test_stop_kills_a_child_that_ignores_terminate(module):
    spawn = module("stubborn", """
        import signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('{"ready": true}', flush=True)
        time.sleep(60)
    """)
    child = ipc.Child(**spawn)
    assert next(child.lines()) == {"ready": True}
    started = time.monotonic()
    child.stop(grace=0.5)
    assert child.proc.returncode == -9 and time.monotonic() - started < 10


SERVER = """
    import os, sys
    from engine import ipc
    from engine.errors import TunedeckError

    out = ipc.Output()
    print("a stray print from some library")  # must not reach the protocol
    os.write(1, b"and a stray write to fd 1\\n")
    out.ready(pid=os.getpid())

    def work(req):
        if req["op"] == "count":
            for i in range(req["n"]):
                out.emit({"id": req["id"], "type": "tick", "i": i})
            return {"type": "counted", "text": "é"}
        if req["op"] == "die":
            print("RuntimeError: dying now", file=sys.stderr, flush=True)
            print("a library warning that is not why", file=sys.stderr, flush=True)  # never quoted
            os._exit(5)
        raise TunedeckError(f"unknown op {req['op']!r}")

    for req in ipc.requests(out):
        ipc.answer(out, req.get("id"), lambda: work(req))
"""


def test_a_service_streams_answers_errors_and_survives_bad_requests(module):
    service = ipc.Service(name="test server", **module("server", SERVER))
    try:
        service.start()
        assert within(30, lambda: service.wait_ready(30))
        lines = within(30, lambda: list(service.events(service.send("count", n=3), timeout=30)))
        assert [line.get("i") for line in lines[:-1]] == [0, 1, 2]
        assert lines[-1] == {"id": lines[0]["id"], "ok": True, "type": "counted", "text": "é"}
        failed = within(30, lambda: service.request("nope", timeout=30))
        assert failed["ok"] is False and failed["error"] == "unknown op 'nope'"
        assert service.child.stderr and "a stray print from some library" in service.stderr_tail()
        assert within(30, lambda: service.request("count", n=0, timeout=30))["ok"] is True
    finally:
        service.close(timeout=5)
    assert service.proc.returncode == 0  # closing stdin ended it


def test_when_a_service_dies_pending_requests_end_and_on_exit_is_told(module):
    service = ipc.Service(name="test server", **module("server", SERVER))
    told = []
    service.on_exit = told.append
    try:
        service.start()
        dead = within(30, lambda: service.request("die", timeout=30))
        assert dead == {"id": dead["id"], "ok": False, "crashed": True,
                        "error": "The test server exited with code 5 (RuntimeError: dying now)."}
        deadline = time.monotonic() + 10
        while not told and time.monotonic() < deadline:  # called by the reader thread, just after
            time.sleep(0.05)
        assert told == [dead["error"]]
        service.restart()
        assert within(30, lambda: service.request("count", n=1, timeout=30))["ok"] is True
    finally:
        service.close(timeout=5)
