"""Talk to the chat process (engine/chat.py) from the TUI or the CLI. No ML import here.

    client = ChatClient()
    for event in client.load(run="latest"):          # status… then loaded (or error)
        ...
    for event in client.generate(messages, mode="compare"):   # token… then done (or error)
        ...
    client.cancel()        # from any thread: stops the generation in progress
    client.restart()       # a fresh process (after a crash); load again
    client.close()

The calls that return iterators block while they wait for events: use them from a thread worker.
If the process dies, every pending request ends with an error event saying so, and the last lines
it wrote on stderr are kept in ``stderr_tail()``.

Also here: which runs can be chatted with (``chat_targets``, ``default_target``) and the system
prompt a run trained with (``training_system_prompt``), read from the run folder without ML imports.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import runs

TERMINAL = ("loaded", "done", "rendered", "bye", "error")


class ChatClient:
    def __init__(self, *, python: str | None = None, env: dict | None = None) -> None:
        self.python = python or sys.executable
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._queues: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stderr: deque[str] = deque(maxlen=200)
        self._ready = threading.Event()
        self.current: str | None = None  # the generation in progress, if any
        self.last_load: dict | None = None
        self.on_exit = None  # called with one sentence (from a reader thread) when the process dies
        self._closing = False

    # --- the process ---------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        if self.alive:
            return
        self._closing = False
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env["PYTHONUNBUFFERED"] = "1"
        self._ready.clear()
        proc = subprocess.Popen(
            [self.python, "-m", "engine.chat"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
            env=env,
        )
        self.proc = proc
        threading.Thread(target=self._read_stdout, args=(proc,), name="chat-client-out", daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(proc,), name="chat-client-err", daemon=True).start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once the process has imported its libraries and reads requests."""
        return self._ready.wait(timeout)

    def _read_stdout(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("type") == "ready":
                self._ready.set()
                continue
            rid = event.get("id")
            with self._lock:
                q = self._queues.get(rid)
            if q is not None:
                q.put(event)
        code = proc.wait()
        if proc is not self.proc:
            return  # an old process replaced by restart(); its requests were already ended
        message = self._death_message(code)
        self._fail_pending(message)
        if self.on_exit is not None and not self._closing:
            self.on_exit(message)

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip("\n").rsplit("\r", 1)[-1]
            if line.strip():
                self._stderr.append(line)

    def _death_message(self, code: int | None) -> str:
        last = next((line.strip() for line in reversed(self._stderr) if line.strip()), "")
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        return f"The chat process {how}" + (f" ({last[:200]})" if last else "") + "; restart it and load again."

    def _fail_pending(self, message: str) -> None:
        with self._lock:
            pending = list(self._queues.items())
        for rid, q in pending:
            q.put({"id": rid, "type": "error", "message": message, "crashed": True})

    def stderr_tail(self, lines: int = 20) -> list[str]:
        return list(self._stderr)[-lines:]

    # --- requests ------------------------------------------------------------------------------
    def send(self, op: str, **fields) -> str:
        """Send one request; returns its id. Starts the process if needed."""
        self.start()
        rid = f"r{next(self._ids)}"
        with self._lock:
            self._queues[rid] = queue.Queue()
        self._write({"id": rid, "op": op, **fields})
        return rid

    def _write(self, request: dict) -> None:
        proc = self.proc
        try:
            with self._write_lock:
                assert proc is not None and proc.stdin is not None
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError, AssertionError):
            rid = request.get("id")
            with self._lock:
                q = self._queues.get(rid)
            if q is not None:
                q.put({"id": rid, "type": "error", "message": self._death_message(proc.poll() if proc else None),
                       "crashed": True})

    def events(self, rid: str, timeout: float | None = None) -> Iterator[dict]:
        """Events of request ``rid`` until its terminal one (loaded/done/rendered/bye/error)."""
        with self._lock:
            q = self._queues.get(rid)
        if q is None:
            return
        try:
            while True:
                try:
                    event = q.get(timeout=timeout)
                except queue.Empty:
                    yield {"id": rid, "type": "error", "message": f"The chat process did not answer within {timeout:g} s."}
                    return
                yield event
                if event.get("type") in TERMINAL:
                    return
        finally:
            with self._lock:
                self._queues.pop(rid, None)

    def request(self, op: str, timeout: float | None = None, **fields) -> dict:
        """Send a request and return its terminal event (the others are dropped)."""
        last = {}
        for last in self.events(self.send(op, **fields), timeout=timeout):
            pass
        return last

    def load(self, *, run: str | None = None, checkpoint: int | None = None, model: str | None = None,
             timeout: float | None = None) -> Iterator[dict]:
        self.last_load = {"run": run, "checkpoint": checkpoint, "model": model}
        return self.events(self.send("load", run=run, checkpoint=checkpoint, model=model), timeout=timeout)

    def generate(self, messages, *, mode: str = "tuned", timeout: float | None = None, **settings) -> Iterator[dict]:
        """``messages``: a list for every side, or {"base": [...], "tuned": [...]} (each pane its own
        history). ``settings``: max_new_tokens, temperature, top_p, system, min_new_tokens."""
        settings = {k: v for k, v in settings.items() if v is not None}
        rid = self.send("generate", messages=messages, mode=mode, **settings)
        self.current = rid
        return self._generation(rid, timeout)

    def _generation(self, rid: str, timeout: float | None) -> Iterator[dict]:
        try:
            yield from self.events(rid, timeout=timeout)
        finally:
            if self.current == rid:
                self.current = None

    def cancel(self, rid: str | None = None) -> None:
        """Stop the generation ``rid`` (default: the one in progress). Safe from any thread."""
        if self.alive:
            self._write({"op": "cancel", "target": rid or self.current})

    # --- lifecycle -----------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        self._closing = True
        if proc.poll() is None:
            self._write({"id": None, "op": "cancel", "target": None})
            self._write({"id": None, "op": "shutdown"})
            try:
                proc.stdin.close()
            except Exception:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._fail_pending("The chat process was closed.")

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        old = self.proc
        self.proc = None
        if old is not None and old.poll() is None:
            old.kill()
            old.wait()
        self._fail_pending("The chat process was restarted.")
        self._stderr.clear()
        self._closing = False
        self.start()


# --------------------------------------------------------------------------------------------------
# What can be chatted with


@dataclass
class ChatTarget:
    """A run that has something to chat with."""

    run_id: str
    state: str
    model: str | None
    method: str | None
    created: float | None
    final: str | None  # "adapter" | "model" | None
    checkpoints: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        what = self.final or (f"checkpoint-{self.checkpoints[-1]}" if self.checkpoints else "nothing yet")
        return f"{self.run_id} ({self.state}, {what})"


def _target(info: runs.RunInfo) -> ChatTarget | None:
    run = runs.Run(info.dir)
    final = None
    if (run.adapter_dir / "adapter_config.json").is_file():
        final = "adapter"
    elif (run.model_dir / "config.json").is_file():
        final = "model"
    cps = [n for n, p in run.checkpoints()
           if (p / "adapter_config.json").is_file() or (p / "config.json").is_file()]
    if final is None and not cps:
        return None
    return ChatTarget(info.id, info.state, info.model, info.method, info.created, final, cps)


def chat_targets() -> list[ChatTarget]:
    """Runs with an adapter, a full model or a checkpoint to chat with, newest first."""
    out = []
    for info in runs.list_runs():
        target = _target(info)
        if target is not None:
            out.append(target)
    return out


def default_target(targets: list[ChatTarget] | None = None) -> ChatTarget | None:
    """The latest completed run with a final adapter/model; else the latest run with anything."""
    targets = chat_targets() if targets is None else targets
    for t in targets:
        if t.state == "completed" and t.final:
            return t
    return targets[0] if targets else None


def training_system_prompt(run_id: str | None) -> str | None:
    """The system message of the run's first training example (the prompt the model learned with)."""
    if not run_id:
        return None
    try:
        data = runs.get_run(run_id).config().get("data")
        if data in (None, "demo"):
            from .demo import train_file

            path = train_file()
        else:
            path = Path(str(data)).expanduser()
            if path.is_dir() or path.suffix.lower() not in (".jsonl", ".json"):
                return None
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        messages = json.loads(first).get("messages") or []
        if messages and messages[0].get("role") == "system":
            return str(messages[0].get("content") or "") or None
    except Exception:
        return None
    return None
