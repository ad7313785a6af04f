"""A warm `tunedeck data serve` child process for the Data screen: it loads the model's tokenizer
once and then renders any example in milliseconds, where a fresh `tunedeck data render` costs
seconds of imports. The TUI itself never imports transformers. Blocking calls: use from a thread.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading

from .engine_process import EngineProcessError


class RenderHelper:
    def __init__(self, model: str) -> None:
        self.model = model
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def _start(self) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "data", "serve", "--model", self.model],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1,
        )
        _lower_priority(self._proc.pid)  # its start (importing transformers) must not stall the app
        while True:
            line = self._proc.stdout.readline()
            if not line:
                raise EngineProcessError(self._failure())
            if line.startswith("{") and json.loads(line).get("event") == "ready":
                return

    def _failure(self) -> str:
        code = self._proc.wait() if self._proc else None
        text = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            text = self._stderr.read()
        lines = [line for line in text.strip().splitlines() if line.strip()]
        self._proc = None
        if lines:
            return lines[-1].removeprefix("tunedeck: ")
        return f"the render helper stopped (exit code {code})"

    def request(self, payload: dict) -> dict:
        """Send one request and return its answer; raises EngineProcessError on failure."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            req_id = next(self._ids)
            try:
                self._proc.stdin.write(json.dumps({"id": req_id, **payload}) + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                raise EngineProcessError(self._failure()) from None
            while True:
                line = self._proc.stdout.readline()
                if not line:
                    raise EngineProcessError(self._failure())
                if not line.startswith("{"):
                    continue
                answer = json.loads(line)
                if answer.get("id") != req_id:
                    continue
                if not answer.get("ok"):
                    raise EngineProcessError(answer.get("error") or "the render helper failed")
                return answer

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        _stop(proc)  # nothing of its state is worth a graceful exit
        if self._stderr is not None:
            self._stderr.close()


class ChildJobs:
    """Engine sub-commands streaming JSON lines, one per key, that can be stopped: starting a job
    under a key kills the one before it (a new file makes the old scan pointless)."""

    def __init__(self) -> None:
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self.closed = False

    def stream(self, key: str, args: list[str], *, ok_codes: tuple[int, ...] = (0,)):
        stderr = tempfile.TemporaryFile(mode="w+")
        with self._lock:
            if self.closed:
                stderr.close()
                return
            proc = subprocess.Popen(
                [sys.executable, "-m", "engine", *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )
            _lower_priority(proc.pid)
            old = self._procs.get(key)
            self._procs[key] = proc
        if old is not None:
            _stop(old)
        try:
            for line in proc.stdout:
                if line.startswith("{"):
                    yield json.loads(line)
            code = proc.wait()
            if code < 0:  # stopped by us
                return
            if code not in ok_codes:
                stderr.seek(0)
                lines = [x for x in stderr.read().strip().splitlines() if x.strip()]
                raise EngineProcessError(lines[-1].removeprefix("tunedeck: ") if lines else f"the helper failed (exit code {code})")
        finally:
            _stop(proc)
            stderr.close()
            with self._lock:
                if self._procs.get(key) is proc:
                    del self._procs[key]

    def close(self) -> None:
        """Stop every job and start no more (the screen is going away)."""
        with self._lock:
            self.closed = True
        self.stop()

    def stop(self, key: str | None = None) -> None:
        with self._lock:
            procs = list(self._procs.values()) if key is None else [self._procs.get(key)]
        for proc in procs:
            if proc is not None:
                _stop(proc)


def _lower_priority(pid: int) -> None:
    """Background scans yield the CPU to the app (and to training): the UI is what people wait on."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 10)
    except (AttributeError, OSError):
        pass


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LatestOnly:
    """One background thread that runs ``fn`` on the most recent item submitted, dropping the ones
    overtaken while it was busy (holding ↓ down renders only the row it stops on). It does not
    occupy the shared worker pool while it waits for a slow helper."""

    def __init__(self, fn, name: str = "latest-only") -> None:
        self._fn = fn
        self._cond = threading.Condition()
        self._item = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item) -> None:
        with self._cond:
            self._item = item
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._item is None and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                item, self._item = self._item, None
            try:
                self._fn(item)
            except Exception:  # a failed item must not end the thread; fn reports its own errors
                pass
