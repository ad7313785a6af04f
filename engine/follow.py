"""Follow a run from its folder: replay ``events.jsonl`` from the start, then tail it.

A light reader for viewers (the TUI monitor, a second TUI, the CLI): no ML imports, no Textual.
The events are folded by ``engine.run_state`` (the one reducer); this module adds the files around
them (status.json, the end of worker.log) and the process' liveness.
``RunFollower.poll()`` reads what is new (events from the last byte offset, status.json, the end of
worker.log) and returns a fresh immutable ``RunView`` when anything changed. ``RunFollower.start``
does that about every half second on a daemon thread and hands each new view to a callback, so
several viewers can watch one run without any coordination: each keeps its own offset.

A resume appends a new ``start`` event whose ``step`` is where training restarted (the newest
complete checkpoint); points the previous attempt logged after that step are dropped, since the
resumed attempt logs them again.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from .run_state import RunHistory, RunView
from .runs import ALIVE, Run, as_float, as_int, crash_message, get_run, is_run_process

CRASH_SETTLE = 1.5  # seconds a dead worker's status may still say "running" before we call it crashed


class HistoryReader:
    """A run's events folded incrementally: each ``read()`` applies only the lines appended since
    the last one; a replaced (or truncated) events file starts the history over."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.history = RunHistory()
        self.offset = 0
        self._identity: tuple | None = None

    def read(self) -> bool:
        """Fold what is new; True when there was anything."""
        try:
            st = os.stat(self.run.events_path)
        except OSError:
            return False
        identity = (st.st_dev, st.st_ino)
        if identity != self._identity or st.st_size < self.offset:
            self.history, self.offset, self._identity = RunHistory(), 0, identity
        events, self.offset = self.run.read_events(self.offset)
        self.history.extend(events)
        return bool(events)


class RunFollower:
    """Reads a run folder incrementally. ``poll()`` from any one thread; ``start()`` runs it on its own."""

    def __init__(self, run: Run | str | Path, *, log_lines: int = 12) -> None:
        self.run = run if isinstance(run, Run) else get_run(str(run))
        self.log_lines = log_lines
        self.reader = HistoryReader(self.run)
        self._status_key: tuple | None = None
        self._status: dict = {}
        self._problem: str | None = None
        self._log_key: tuple | None = None
        self._log: tuple[str, ...] = ()
        self._view: RunView | None = None
        self._dead_since: float | None = None
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()

    # --- reading ------------------------------------------------------------------------------
    def poll(self) -> RunView | None:
        """Read what is new; a new view if anything changed since the last call, else None."""
        changed = self._view is None
        changed |= self.reader.read()
        key = _stat_key(self.run.status_path)
        if key != self._status_key:
            self._status_key = key
            self._problem = self.run.problem()
            self._status = {} if self._problem else self.run.read_status()
            changed = True
        key = _stat_key(self.run.log_path)
        if key != self._log_key:
            self._log_key = key
            self._log = tuple(self.run.log_tail(self.log_lines))
            changed = True
        view = self._build()
        if not changed and self._view is not None and view.state == self._view.state:
            return None
        self._view = view
        return view

    def view(self) -> RunView:
        """The latest view (reads once if nothing was read yet)."""
        if self._view is None:
            self.poll()
        assert self._view is not None
        return self._view

    def _build(self) -> RunView:
        h, status = self.reader.history, self._status
        state = str(status.get("state") or ("created" if not h.attempts else "unknown"))
        message = status.get("message") if isinstance(status.get("message"), str) else None
        if self._problem and self.run.status_path.exists():
            state, message = "damaged", f"Run folder {self.run.dir} is damaged: {self._problem}."
        elif state in ALIVE:
            if is_run_process(status):
                self._dead_since = None
                if not message and h.status_message and h.ended is None:
                    message = h.status_message
            else:
                # Whoever stopped or killed the worker records how it ended just after the process is
                # gone: only call it crashed when status.json still says alive a moment later.
                now = time.monotonic()
                self._dead_since = self._dead_since or now
                if now - self._dead_since >= CRASH_SETTLE:
                    state, message = "crashed", crash_message(self._log)
        elif not message:
            message = h.error or h.end_message
        max_steps = h.max_steps or as_int(status.get("max_steps"))
        step = h.step if h.attempts else (as_int(status.get("step")) or 0)
        if h.attempts and state in ALIVE:  # the worker records every step there, events every log step
            step = max(step, as_int(status.get("step")) or 0)
        return RunView.of(
            h, run_id=self.run.id, run_dir=self.run.dir, state=state, message=message,
            pid=as_int(status.get("pid")) if state in ALIVE else None, step=step, max_steps=max_steps,
            tokens_per_second=h.tokens_per_second if h.tokens_per_second is not None
            else as_float(status.get("tokens_per_second")),
            log_lines=self._log,
        )

    # --- following on a thread -----------------------------------------------------------------
    def start(self, on_update, *, interval: float = 0.5) -> RunFollower:
        """Call ``on_update(view)`` from a daemon thread with the full history first, then each change.

        Polls every ``interval`` seconds while the run is alive, four times slower once it is over
        (it can still be resumed by another process). If ``on_update`` raises, following stops.
        """
        if self._thread is not None:
            raise RuntimeError("this follower is already running")
        self._halt.clear()

        def loop() -> None:
            while not self._halt.is_set():
                try:
                    view = self.poll()
                except OSError:
                    view = None
                if view is not None and not self._halt.is_set():
                    try:
                        on_update(view)
                    except Exception:
                        return
                alive = self._view is not None and self._view.alive
                self._halt.wait(interval if alive else interval * 4)

        self._thread = threading.Thread(target=loop, daemon=True, name=f"tunedeck-follow-{self.run.id}")
        self._thread.start()
        return self

    def stop(self, *, wait: bool = False) -> None:
        self._halt.set()
        thread, self._thread = self._thread, None
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


def _stat_key(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def follow(run: Run | str | Path, *, interval: float = 0.5, until_final: bool = True):
    """Yield a view now and after each change (a generator for scripts and the CLI)."""
    follower = RunFollower(run)
    while True:
        view = follower.poll()
        if view is not None:
            yield view
        current = follower.view()
        if until_final and not current.alive and current.state not in ("created", "unknown"):
            return
        time.sleep(interval)
