"""How the engine's processes talk: JSON lines over pipes, the server side and the client side.

No ML import and no Textual here: the TUI, the CLI and the servers all use this module.

The framing
-----------
Every line is one JSON object (UTF-8, ``ensure_ascii=False``); nothing else is ever written on the
protocol stream.

* A request is ``{"id": ID, "op": NAME, ...}``. One with ``"id": null`` is a notice (``cancel``): no
  answer comes back.
* Everything a server writes about a request carries its ``id``: any number of progress lines (the
  server's own vocabulary, e.g. ``{"id", "type": "token", ...}``), then exactly one final line, the
  only one with ``ok``: ``{"id", "ok": true, ...result}`` or ``{"id", "ok": false, "error": SENTENCE}``.
* Start-up is the request ``null``: a server writes ``{"id": null, "ok": true, ...}`` once it reads
  requests (lines with ``"id": null`` before it are start-up progress).
* Closing the server's stdin asks it to finish.

``ok`` marks the end, not a terminal ``type``: each server keeps its own vocabulary (the chat's
``type``, the data tools' ``event``) and the framing needs neither.

One-shot commands (``tunedeck data stats --progress``, ``tunedeck eval --json --progress``) print JSON
lines and exit; their exit status and the last line of their stderr say whether they failed.

A child's stderr is always read while it runs (a thread keeps its last lines): a child that writes a
lot there must never block on a full pipe while we wait for its stdout.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import subprocess
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator

from .errors import TunedeckError


def encode(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def write_line(stream, obj: dict) -> None:
    stream.write(encode(obj) + "\n")
    stream.flush()


def one_sentence(exc: BaseException) -> str:
    """A user's error as it is; anything else as its type and the first line of its message."""
    if isinstance(exc, TunedeckError):
        return str(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# --------------------------------------------------------------------------------------------------
# Server side


class Output:
    """A server's protocol stream: the real stdout, with fd 1 itself (and ``sys.stdout``) pointed at
    stderr, so that stray prints from libraries can never corrupt the protocol."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._stream = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()  # lines from several threads never interleave

    def emit(self, line: dict) -> None:
        with self._lock:
            try:
                write_line(self._stream, line)
            except (BrokenPipeError, ValueError):
                pass  # the client went away; the end of stdin will end the server

    def ready(self, **fields) -> None:
        self.emit({"id": None, "ok": True, **fields})

    def fail(self, rid, message: str) -> None:
        self.emit({"id": rid, "ok": False, "error": message})


def requests(out: Output) -> Iterator[dict]:
    """The requests read from stdin until it closes; a line that is not a JSON object gets an error."""
    for raw in sys.stdin.buffer:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            continue
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        if isinstance(request, dict):
            yield request
        else:
            out.fail(None, f"Not a JSON request: {text[:80]!r}.")


def answer(out: Output, rid, work: Callable[[], dict | None],
           describe: Callable[[BaseException], str] = one_sentence) -> None:
    """Run ``work()`` for request ``rid`` and write its final line: the dict it returns, or the failure
    in one sentence. The server stays usable; an unexpected failure's traceback goes to stderr."""
    try:
        result = work()
    except Exception as exc:  # noqa: BLE001 - every failure becomes one error line
        if not isinstance(exc, TunedeckError):
            traceback.print_exc()
        out.fail(rid, describe(exc))
    else:
        out.emit({"id": rid, "ok": True, **(result or {})})


# --------------------------------------------------------------------------------------------------
# Client side


class EngineProcessError(Exception):
    """A child failed; the message is one sentence."""


def lower_priority(pid: int) -> None:
    """Background helpers yield the CPU to the app (and to training): the UI is what people wait on."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 10)
    except (AttributeError, OSError):
        pass


def stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Terminate, then kill if it has not exited within ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# A line of stderr that says why a process died: an exception's last line, or the system's word.
_CAUSE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Fault)\b|Killed\b|Segmentation fault|"
                    r".*out of memory)", re.IGNORECASE)


def failure_message(name: str, code: int | None, stderr: list[str], hint: str = ".") -> str:
    """One sentence for a child that failed: its own error sentence (the CLI writes ``tunedeck: ...``
    on stderr), else how it ended and the line that says why — never an unrelated warning."""
    lines = [line.strip() for line in stderr if line.strip()]
    if lines and lines[-1].startswith("tunedeck: "):
        return lines[-1].removeprefix("tunedeck: ")
    cause = next((line for line in reversed(lines) if _CAUSE.match(line)), "")
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
    return f"The {name} {how}" + (f" ({cause[:200]})" if cause else "") + hint


def command(args, module: str = "engine", python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", module, *args]


class Child:
    """A running ``python -m MODULE ARGS``: JSON lines from its stdout, its stderr drained all along by
    a thread that keeps the last lines."""

    def __init__(self, args=(), *, module: str = "engine", stdin: bool = False, python: str | None = None,
                 env: dict | None = None, nice: bool = False, name: str = "helper process") -> None:
        self.name = name
        self.stopped = False  # set by stop(): its end is then no failure
        self.stderr: deque[str] = deque(maxlen=200)
        self.proc = subprocess.Popen(
            command(args, module, python),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
            env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
        )
        self._drain = threading.Thread(target=self._read_stderr, name=f"{name}-stderr", daemon=True)
        self._drain.start()
        if nice:
            lower_priority(self.proc.pid)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            line = line.rstrip("\n").rsplit("\r", 1)[-1]  # a progress bar: its last state
            if line.strip():
                self.stderr.append(line)

    def lines(self) -> Iterator[dict]:
        """Each JSON object it prints, until its stdout closes (other lines are skipped)."""
        for raw in self.proc.stdout:
            raw = raw.strip()
            if not raw.startswith("{"):
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                yield line

    def results(self, ok_codes: tuple[int, ...] = (0,)) -> Iterator[dict]:
        """Its JSON lines, then EngineProcessError if it failed (not if we stopped it); stopped at the end."""
        try:
            yield from self.lines()
            code = self.proc.wait()
            if code not in ok_codes and not self.stopped:
                raise EngineProcessError(self.failure(code))
        finally:
            self.stop()

    def send(self, obj: dict) -> None:
        """Write one line to its stdin; OSError or ValueError if it is gone."""
        write_line(self.proc.stdin, obj)

    def failure(self, code: int | None, hint: str = ".") -> str:
        """Once it has exited: one sentence for its failure."""
        self._drain.join(timeout=2)  # the rest of its stderr (a grandchild may hold the pipe open)
        return failure_message(self.name, code, list(self.stderr), hint)

    def stop(self, grace: float = 3.0) -> None:
        self.stopped = True
        stop(self.proc, grace)


def run_json(args: list[str], *, timeout: float | None = None, ok_codes: tuple[int, ...] = (0,)) -> dict:
    """``tunedeck ARGS`` printing one JSON document (it may span lines). Blocks: use from a thread."""
    # communicate() reads stdout and stderr together, so neither pipe can fill up
    proc = subprocess.run(command(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=timeout)
    if proc.returncode not in ok_codes:
        raise EngineProcessError(failure_message("helper process", proc.returncode, proc.stderr.splitlines()))
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise EngineProcessError(f"the helper process printed no JSON ({exc})") from None


def stream_json(args: list[str], *, ok_codes: tuple[int, ...] = (0,), **spawn) -> Iterator[dict]:
    """Each JSON line ``tunedeck ARGS`` prints, as it comes; EngineProcessError if it fails. Blocks."""
    yield from Child(args, **spawn).results(ok_codes)


class ChildJobs:
    """Streaming sub-commands, one per key, that can be stopped: starting a job under a key stops the
    one before it (a new file makes the old scan pointless)."""

    def __init__(self) -> None:
        self._children: dict[str, Child] = {}
        self._lock = threading.Lock()
        self.closed = False

    def stream(self, key: str, args: list[str], *, ok_codes: tuple[int, ...] = (0,)) -> Iterator[dict]:
        with self._lock:
            if self.closed:
                return
            child = Child(args, nice=True)
            old, self._children[key] = self._children.get(key), child
        if old is not None:
            old.stop()
        try:
            yield from child.results(ok_codes)
        finally:
            with self._lock:
                if self._children.get(key) is child:
                    del self._children[key]

    def close(self) -> None:
        """Stop every job and start no more (the screen is going away)."""
        with self._lock:
            self.closed = True
        self.stop()

    def stop(self, key: str | None = None) -> None:
        with self._lock:
            children = list(self._children.values()) if key is None else [self._children.get(key)]
        for child in children:
            if child is not None:
                child.stop()


class Service:
    """A long-lived server child (the framing above): send requests from any thread and read each
    one's lines; a reader thread routes the lines by id. If the child dies, every pending request
    ends with ``{"ok": false, "error": ..., "crashed": true}`` and ``on_exit`` is called with that
    sentence (from the reader thread) unless we were closing it."""

    def __init__(self, args=(), *, module: str = "engine", python: str | None = None, env: dict | None = None,
                 nice: bool = False, name: str = "helper process", hint: str = ".") -> None:
        self._spawn = dict(module=module, python=python, env=env, nice=nice, name=name)
        self.args, self.name, self.hint = list(args), name, hint
        self.child: Child | None = None
        self.on_exit: Callable[[str], None] | None = None
        self.failure: str | None = None  # how the last child ended
        self._queues: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._settled = threading.Event()  # ready, or gone
        self._ready = False
        self._closing = False

    # --- the process ---------------------------------------------------------------------------
    @property
    def proc(self) -> subprocess.Popen | None:
        return self.child.proc if self.child else None

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.child.proc.pid if self.child else None

    def start(self) -> None:
        if self.alive:
            return
        self._closing = self._ready = False
        self._settled.clear()
        self.child = child = Child(self.args, stdin=True, **self._spawn)
        threading.Thread(target=self._route, args=(child,), name=f"{self.name}-out", daemon=True).start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once the child reads requests; False if it died first or the time ran out."""
        self._settled.wait(timeout)
        return self._ready

    def _route(self, child: Child) -> None:
        for line in child.lines():
            rid = line.get("id")
            if rid is None:
                if line.get("ok") is True:
                    self._ready = True
                    self._settled.set()
                continue
            with self._lock:
                q = self._queues.get(rid)
            if q is not None:
                q.put(line)
        message = child.failure(child.proc.wait(), self.hint)
        if child is not self.child:
            return  # replaced by restart(); its requests were already ended
        self.failure = message
        self._settled.set()
        self._fail_pending(message, crashed=True)
        if self.on_exit is not None and not self._closing:
            self.on_exit(message)

    def _fail_pending(self, message: str, **extra) -> None:
        with self._lock:
            pending = list(self._queues.items())
        for rid, q in pending:
            q.put({"id": rid, "ok": False, "error": message, **extra})

    def stderr_tail(self, lines: int = 20) -> list[str]:
        return list(self.child.stderr)[-lines:] if self.child else []

    # --- requests ------------------------------------------------------------------------------
    def send(self, op: str, **fields) -> str:
        """Send one request; returns its id. Starts the child if needed."""
        self.start()
        rid = f"r{next(self._ids)}"
        with self._lock:
            self._queues[rid] = queue.Queue()
        if not self.notify({"id": rid, "op": op, **fields}):
            with self._lock:
                q = self._queues.get(rid)
            code = self.proc.poll() if self.proc else None
            q.put({"id": rid, "ok": False, "error": self.child.failure(code, self.hint), "crashed": True})
        return rid

    def notify(self, line: dict) -> bool:
        """Write one line (a notice such as cancel, or a request); False if the child is gone."""
        child = self.child
        try:
            with self._write_lock:
                child.send(line)
            return True
        except (AttributeError, OSError, ValueError):
            return False

    def events(self, rid: str, timeout: float | None = None) -> Iterator[dict]:
        """The lines of request ``rid``, its final one (the one with ``ok``) last."""
        with self._lock:
            q = self._queues.get(rid)
        if q is None:
            return
        try:
            while True:
                try:
                    line = q.get(timeout=timeout)
                except queue.Empty:
                    yield {"id": rid, "ok": False, "error": f"The {self.name} did not answer within {timeout:g} s."}
                    return
                yield line
                if "ok" in line:
                    return
        finally:
            with self._lock:
                self._queues.pop(rid, None)

    def request(self, op: str, timeout: float | None = None, **fields) -> dict:
        """Send a request and return its final line (the others are dropped)."""
        last: dict = {}
        for last in self.events(self.send(op, **fields), timeout=timeout):
            pass
        return last

    # --- lifecycle -----------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Close its stdin (the server finishes what it is doing and exits), wait up to ``timeout``
        seconds, then stop it."""
        child = self.child
        if child is None:
            return
        self._closing = True
        if child.proc.poll() is None:
            try:
                with self._write_lock:
                    child.proc.stdin.close()
            except OSError:
                pass
            try:
                child.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.stop(grace=2)
        self._fail_pending(f"The {self.name} was closed.")

    def kill(self) -> None:
        if self.alive:
            self.child.proc.kill()
            self.child.proc.wait()

    def restart(self) -> None:
        old, self.child = self.child, None
        if old is not None and old.proc.poll() is None:
            old.proc.kill()
            old.proc.wait()
        self._fail_pending(f"The {self.name} was restarted.")
        self.start()
