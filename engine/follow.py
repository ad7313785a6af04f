"""Follow a run from its folder: replay ``events.jsonl`` from the start, then tail it.

A light reader for viewers (the TUI monitor, a second TUI, the CLI): no ML imports, no Textual.
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
from dataclasses import dataclass, field
from pathlib import Path

from .runs import ALIVE, Run, get_run, pid_alive

Point = tuple[int, float]
CRASH_SETTLE = 1.5  # seconds a dead worker's status may still say "running" before we call it crashed


@dataclass(frozen=True)
class RunView:
    """Everything a monitor shows about a run at one moment. Immutable: safe to hand across threads."""

    run_id: str
    run_dir: Path
    state: str = "unknown"  # created|starting|running|stopping|stopped|completed|failed|crashed
    message: str | None = None  # the reason for a final state, or what the worker is doing now
    pid: int | None = None
    step: int = 0
    max_steps: int | None = None
    losses: tuple[Point, ...] = ()
    eval_losses: tuple[Point, ...] = ()
    learning_rates: tuple[Point, ...] = ()
    grad_norms: tuple[Point, ...] = ()
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    epoch: float | None = None
    checkpoints: tuple[int, ...] = ()
    method: str | None = None
    device: str | None = None
    num_examples: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    attempts: int = 0  # how many start events (1 + resumes)
    resumed_from: str | None = None
    attempt_started: float | None = None  # time of the latest start event
    earlier_seconds: float = 0.0  # training time of the attempts before the latest one
    last_time: float | None = None  # time of the latest event
    ended: float | None = None  # time of the end event of the latest attempt
    step_rate: float | None = None  # steps per second over the latest attempt
    error: str | None = None
    log_lines: tuple[str, ...] = ()
    events_read: int = 0

    @property
    def alive(self) -> bool:
        return self.state in ALIVE

    @property
    def best_eval_loss(self) -> float | None:
        return min((v for _, v in self.eval_losses), default=None)

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1][1] if self.losses else None

    @property
    def fraction(self) -> float:
        if not self.max_steps:
            return 1.0 if self.state == "completed" else 0.0
        return max(0.0, min(1.0, self.step / self.max_steps))

    def elapsed(self, now: float | None = None) -> float | None:
        """Training time so far, over all attempts; ``now`` counts while the run is alive."""
        if self.attempt_started is None:
            return None
        if self.ended is not None or not self.alive:
            until = self.ended or self.last_time or self.attempt_started
        else:
            until = time.time() if now is None else now
        return self.earlier_seconds + max(0.0, until - self.attempt_started)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds until ``max_steps`` at the recent pace; None when unknown or not running."""
        if not self.alive or not self.max_steps or not self.step_rate:
            return None
        remaining = (self.max_steps - self.step) / self.step_rate
        if self.last_time is not None:
            remaining -= max(0.0, (time.time() if now is None else now) - self.last_time)
        return max(0.0, remaining)


@dataclass
class RunHistory:
    """The mutable model a follower builds by applying events in order."""

    losses: list[Point] = field(default_factory=list)
    eval_losses: list[Point] = field(default_factory=list)
    learning_rates: list[Point] = field(default_factory=list)
    grad_norms: list[Point] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    step: int = 0
    max_steps: int | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    epoch: float | None = None
    method: str | None = None
    device: str | None = None
    num_examples: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    attempts: int = 0
    resumed_from: str | None = None
    attempt_started: float | None = None
    attempt_first_step: int = 0
    earlier_seconds: float = 0.0
    last_time: float | None = None
    ended: float | None = None
    end_state: str | None = None
    end_message: str | None = None
    status_message: str | None = None
    error: str | None = None
    rate_anchor: tuple[int, float] | None = None  # (step, time) of the first log of this attempt
    step_rate: float | None = None
    events_read: int = 0

    def apply(self, event: dict) -> None:
        self.events_read += 1
        kind = event.get("type")
        when = _num(event.get("time"))
        step = _int(event.get("step"))
        if kind == "start":
            self._start(event, when, step or 0)
        elif kind == "log":
            if step is not None:
                self._keep(step)
                loss = _num(event.get("loss"))
                if loss is not None:
                    self.losses.append((step, loss))
                lr = _num(event.get("learning_rate"))
                if lr is not None:
                    self.learning_rate = lr
                    self.learning_rates.append((step, lr))
                gn = _num(event.get("grad_norm"))
                if gn is not None:
                    self.grad_norm = gn
                    self.grad_norms.append((step, gn))
            tps = _num(event.get("tokens_per_second"))
            if tps is not None:
                self.tokens_per_second = tps
            epoch = _num(event.get("epoch"))
            if epoch is not None:
                self.epoch = epoch
            if step is not None and when is not None:
                self._pace(step, when)
        elif kind == "eval":
            value = _num(event.get("eval_loss"))
            if step is not None and value is not None:
                self._keep(step)
                self.eval_losses.append((step, value))
        elif kind == "checkpoint":
            if step is not None:
                self._keep(step)
                if step not in self.checkpoints:
                    self.checkpoints.append(step)
        elif kind == "end":
            if step is not None:
                self._keep(step)
            self.ended = when
            self.end_state = event.get("state")
            self.end_message = event.get("message")
        elif kind == "error":
            self.error = event.get("message")
            if step is not None:
                self._keep(step)
        elif kind == "status":
            self.status_message = event.get("message")
        if when is not None:
            self.last_time = when

    def _start(self, event: dict, when: float | None, step: int) -> None:
        if self.attempts and self.attempt_started is not None:
            until = self.ended or self.last_time or self.attempt_started
            self.earlier_seconds += max(0.0, until - self.attempt_started)
        self.attempts += 1
        # The resumed attempt restarts at `step`: what the previous one logged after it is redone.
        self.losses = [p for p in self.losses if p[0] <= step]
        self.eval_losses = [p for p in self.eval_losses if p[0] <= step]
        self.learning_rates = [p for p in self.learning_rates if p[0] <= step]
        self.grad_norms = [p for p in self.grad_norms if p[0] <= step]
        self.checkpoints = [s for s in self.checkpoints if s <= step]
        self.step = step
        self.attempt_first_step = step
        self.attempt_started = when
        self.ended = self.end_state = self.end_message = self.error = None
        self.rate_anchor = (step, when) if when is not None else None
        self.step_rate = None
        self.resumed_from = event.get("resumed_from")
        for key in ("method", "device", "num_examples", "trainable_params", "total_params"):
            if event.get(key) is not None:
                setattr(self, key, event[key])
        max_steps = _int(event.get("max_steps"))
        if max_steps:
            self.max_steps = max_steps
        if event.get("message"):
            self.status_message = event.get("message")

    def _keep(self, step: int) -> None:
        self.step = max(self.step, step)

    def _pace(self, step: int, when: float) -> None:
        if self.rate_anchor is None:
            self.rate_anchor = (step, when)
            return
        first_step, first_time = self.rate_anchor
        if step > first_step and when > first_time:
            self.step_rate = (step - first_step) / (when - first_time)


def _num(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def _int(value) -> int | None:
    number = _num(value)
    return None if number is None else int(number)


class RunFollower:
    """Reads a run folder incrementally. ``poll()`` from any one thread; ``start()`` runs it on its own."""

    def __init__(self, run: Run | str | Path, *, log_lines: int = 12) -> None:
        self.run = run if isinstance(run, Run) else get_run(str(run))
        self.log_lines = log_lines
        self.history = RunHistory()
        self.offset = 0
        self._status_key: tuple | None = None
        self._status: dict = {}
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
        events, self.offset = self.run.read_events(self.offset)
        for event in events:
            self.history.apply(event)
        changed |= bool(events)
        key = _stat_key(self.run.status_path)
        if key != self._status_key:
            self._status_key = key
            self._status = self.run.read_status()
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
        h, status = self.history, self._status
        state = status.get("state") or ("created" if not h.attempts else "unknown")
        message = status.get("message")
        if state in ALIVE:
            if pid_alive(status.get("pid"), status.get("pid_started")):
                self._dead_since = None
                if not message and h.status_message and h.ended is None:
                    message = h.status_message
            else:
                # Whoever stopped or killed the worker records how it ended just after the process is
                # gone: only call it crashed when status.json still says alive a moment later.
                now = time.monotonic()
                self._dead_since = self._dead_since or now
                if now - self._dead_since >= CRASH_SETTLE:
                    last = next((line for line in reversed(self._log) if line.strip()), "")
                    state = "crashed"
                    message = "The worker process ended without saying why" + (
                        f"; last log line: {last}" if last else ""
                    )
        elif not message:
            message = h.error or h.end_message
        max_steps = h.max_steps or _int(status.get("max_steps"))
        step = h.step if h.attempts else (_int(status.get("step")) or 0)
        if h.attempts and state in ALIVE:  # the worker records every step there, events every log step
            step = max(step, _int(status.get("step")) or 0)
        return RunView(
            run_id=self.run.id,
            run_dir=self.run.dir,
            state=state,
            message=message,
            pid=status.get("pid") if state in ALIVE else None,
            step=step,
            max_steps=max_steps,
            losses=tuple(h.losses),
            eval_losses=tuple(h.eval_losses),
            learning_rates=tuple(h.learning_rates),
            grad_norms=tuple(h.grad_norms),
            learning_rate=h.learning_rate,
            grad_norm=h.grad_norm,
            tokens_per_second=h.tokens_per_second if h.tokens_per_second is not None else _num(
                status.get("tokens_per_second")
            ),
            epoch=h.epoch,
            checkpoints=tuple(h.checkpoints),
            method=h.method,
            device=h.device,
            num_examples=h.num_examples,
            trainable_params=h.trainable_params,
            total_params=h.total_params,
            attempts=h.attempts,
            resumed_from=h.resumed_from,
            attempt_started=h.attempt_started,
            earlier_seconds=h.earlier_seconds,
            last_time=h.last_time,
            ended=h.ended,
            step_rate=h.step_rate,
            error=h.error,
            log_lines=self._log,
            events_read=h.events_read,
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
