"""The one reducer of a run's history: ``events.jsonl`` in, run state out.

Every reader of events folds them here — the live monitor and a second TUI (``engine.follow``), the
CLI's progress bar and ``--json --follow``, the Runs table's training time, the loss overlay of two
runs, and the stop command's step time. No ML imports, no Textual, no file reading: callers feed
events in order (``RunHistory.apply``) and read the state.

The rules, written once:

* A resume appends a ``start`` event whose ``step`` is where training restarts (the newest complete
  checkpoint). What the previous attempt logged after that step is trained, and logged, again, so
  it is dropped (``superseded``).
* Training time is the sum of the segments from each ``start`` to its ``end``; a segment left open
  by a crash ends at its last event; the open segment of a live run runs to ``now``.
* Every numeric field of a ``log`` event becomes a series (``loss``, ``learning_rate``,
  ``grad_norm``, ``mean_token_accuracy``, and whatever metrics an objective adds, e.g. DPO's
  ``rewards/accuracies``, GRPO's ``reward``, ``rewards/<name>/mean``, ``full_marks``); every numeric
  field of an ``eval`` event too (``eval_loss``, ...).
* A ``samples`` event (GRPO: a few answers sampled at a logging step, with their scores) replaces the
  previous ones: ``samples`` holds the latest, each item with its ``step``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .runs import ALIVE, as_float, as_int

Point = tuple[int, float]
STEPPED = ("log", "eval", "checkpoint")  # the kinds a resume may train and log again
NOT_SERIES = {"step", "time", "epoch", "tokens_per_second", "num_tokens"}


def _smoothed(points, step: int, window: int = 5) -> float | None:
    """The mean of the last ``window`` points at or before ``step`` (a noisy curve's level there)."""
    upto = [v for s, v in points if s <= step][-window:]
    return sum(upto) / len(upto) if upto else None


def superseded(event: dict, restart_step: int) -> bool:
    """True for an event that a resume from ``restart_step`` trains and logs again."""
    return event.get("type") in STEPPED and (as_int(event.get("step")) or 0) > restart_step


def effective_events(events: list[dict]) -> list[dict]:
    """The events as a viewer should show them: each ``start`` drops the ``superseded`` ones before it."""
    out: list[dict] = []
    for event in events:
        if event.get("type") == "start":
            restart = as_int(event.get("step")) or 0
            out = [e for e in out if not superseded(e, restart)]
        out.append(event)
    return out


class Curves:
    """The curves a run's state offers, for anything with ``points(name)``."""

    def points(self, name: str) -> tuple[Point, ...]:
        raise NotImplementedError

    @property
    def losses(self) -> tuple[Point, ...]:
        return self.points("loss")

    @property
    def eval_losses(self) -> tuple[Point, ...]:
        return self.points("eval_loss")

    @property
    def learning_rates(self) -> tuple[Point, ...]:
        return self.points("learning_rate")

    @property
    def grad_norms(self) -> tuple[Point, ...]:
        return self.points("grad_norm")

    @property
    def best_eval_loss(self) -> float | None:
        return min((v for _, v in self.eval_losses), default=None)

    @property
    def eval_reward_accuracy(self) -> float | None:
        """A DPO run's latest eval reward accuracy: the share of held-out pairs where the tuned model
        gives the chosen answer the higher reward (0.5 is chance). None for SFT and KTO (no pairs)."""
        points = self.points("eval_rewards/accuracies")
        return points[-1][1] if points else None

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1][1] if self.losses else None

    @property
    def peak_memory(self) -> float | None:
        """The most memory the worker has measured itself using (bytes)."""
        peaks = self.points("peak_memory")
        return max(v for _, v in peaks) if peaks else None

    @property
    def best_eval_step(self) -> int | None:
        evals = self.eval_losses
        return min(evals, key=lambda p: p[1])[0] if evals else None

    @property
    def overfitting(self) -> str | None:
        """The warning, in plain words, when the eval loss has risen at two evaluations in a row while
        the training loss kept falling; None otherwise."""
        evals, losses = self.eval_losses, self.losses
        if len(evals) < 3 or not losses:
            return None
        (s0, e0), (_, e1), (s2, e2) = evals[-3:]
        if not (e0 < e1 < e2):
            return None
        before, now = _smoothed(losses, s0), _smoothed(losses, s2)
        if before is None or now is None or not now < before:
            return None
        return (f"Overfitting: the eval loss has risen at two evaluations in a row (to {e2:.4g} at step {s2}) while "
                f"the training loss keeps falling; the model is memorising its examples. Stop now and keep the "
                f"best weights (step {self.best_eval_step}), or train fewer epochs, on more or more varied data, "
                "or with a lower learning rate.")


@dataclass
class RunHistory(Curves):
    """The state built by applying a run's events in order (mutable; ``RunView`` is its snapshot)."""

    series: dict[str, list[Point]] = field(default_factory=dict)
    checkpoints: list[int] = field(default_factory=list)
    step: int = 0
    max_steps: int | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    epoch: float | None = None
    method: str | None = None
    objective: str | None = None
    device: str | None = None
    num_examples: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    estimated_memory: int | None = None  # bytes, for the largest batch of the run's data
    batching: str | None = None  # "padding-free" | "padded"
    attempts: int = 0
    resumed_from: str | None = None
    attempt_started: float | None = None
    attempt_message: str | None = None  # how the latest attempt began ("Training LoRA on ...")
    earlier_seconds: float = 0.0  # training time of the attempts before the latest one
    last_time: float | None = None
    ended: float | None = None  # time of the latest attempt's end event
    end_state: str | None = None
    end_message: str | None = None
    status_message: str | None = None
    error: str | None = None
    rate_anchor: tuple[int, float] | None = None  # (step, time) of the first log of this attempt
    step_rate: float | None = None  # steps per second over the latest attempt
    samples: list[dict] = field(default_factory=list)  # GRPO: the latest sampled answers, each with its step
    events_read: int = 0

    # --- folding ------------------------------------------------------------------------------
    def apply(self, event: dict) -> None:
        if not isinstance(event, dict):
            return  # a damaged line is not an event
        self.events_read += 1
        kind = event.get("type")
        when = as_float(event.get("time"))
        step = as_int(event.get("step"))
        if kind == "start":
            self._start(event, when, step or 0)
        elif kind == "log":
            if step is not None:
                self._keep(step)
                self._points(event, step)
                self.learning_rate = as_float(event.get("learning_rate"), self.learning_rate)
                self.grad_norm = as_float(event.get("grad_norm"), self.grad_norm)
                if when is not None:
                    self._pace(step, when)
            self.tokens_per_second = as_float(event.get("tokens_per_second"), self.tokens_per_second)
            self.epoch = as_float(event.get("epoch"), self.epoch)
        elif kind == "eval":
            if step is not None:
                self._keep(step)
                self._points(event, step)
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
        elif kind == "samples":
            items = event.get("items")
            if step is not None and isinstance(items, list):
                self.samples = [{**item, "step": step} for item in items if isinstance(item, dict)]
        if when is not None:
            self.last_time = when

    def extend(self, events) -> RunHistory:
        for event in events:
            self.apply(event)
        return self

    def _start(self, event: dict, when: float | None, step: int) -> None:
        if self.attempts and self.attempt_started is not None:
            self.earlier_seconds += self._segment(None)
        self.attempts += 1
        for name, points in self.series.items():
            self.series[name] = [p for p in points if p[0] <= step]
        self.checkpoints = [s for s in self.checkpoints if s <= step]
        self.samples = [s for s in self.samples if (s.get("step") or 0) <= step]
        self.step = step
        self.attempt_started = when
        self.ended = self.end_state = self.end_message = self.error = None
        self.rate_anchor = (step, when) if when is not None else None
        self.step_rate = None
        self.resumed_from = event.get("resumed_from")
        self.attempt_message = event.get("message")
        for key in ("method", "objective", "device", "num_examples", "trainable_params", "total_params",
                    "estimated_memory", "batching"):
            if event.get(key) is not None:
                setattr(self, key, event[key])
        self.max_steps = as_int(event.get("max_steps")) or self.max_steps
        if event.get("message"):
            self.status_message = event.get("message")

    def _points(self, event: dict, step: int) -> None:
        for name, value in event.items():
            if name in NOT_SERIES or name == "type":
                continue
            number = as_float(value)
            if number is not None:
                self.series.setdefault(name, []).append((step, number))

    def _keep(self, step: int) -> None:
        self.step = max(self.step, step)

    def _pace(self, step: int, when: float) -> None:
        if self.rate_anchor is None:
            self.rate_anchor = (step, when)
            return
        first_step, first_time = self.rate_anchor
        if step > first_step and when > first_time:
            self.step_rate = (step - first_step) / (when - first_time)

    # --- reading ------------------------------------------------------------------------------
    def points(self, name: str) -> tuple[Point, ...]:
        return tuple(self.series.get(name, ()))

    def _segment(self, now: float | None) -> float:
        """Seconds of the latest attempt: to its end, to ``now`` while open, else to its last event."""
        if self.attempt_started is None:
            return 0.0
        until = self.ended if self.ended is not None else (now if now is not None else self.last_time)
        return max(0.0, (until or self.attempt_started) - self.attempt_started)

    def training_seconds(self, now: float | None = None) -> float | None:
        """Time spent training over every attempt; ``now`` (for a live run) extends the open one.
        None before the first ``start`` event."""
        if not self.attempts:
            return None
        return self.earlier_seconds + self._segment(now)

    @property
    def step_seconds(self) -> float | None:
        return 1.0 / self.step_rate if self.step_rate else None


@dataclass(frozen=True)
class RunView(Curves):
    """Everything a monitor shows about a run at one moment. Immutable: safe to hand across threads."""

    run_id: str
    run_dir: Path
    state: str = "unknown"  # created|starting|running|stopping|stopped|completed|failed|crashed
    message: str | None = None  # the reason for a final state, or what the worker is doing now
    pid: int | None = None
    step: int = 0
    max_steps: int | None = None
    series: dict[str, tuple[Point, ...]] = field(default_factory=dict)
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    epoch: float | None = None
    checkpoints: tuple[int, ...] = ()
    method: str | None = None
    objective: str | None = None
    device: str | None = None
    num_examples: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    estimated_memory: int | None = None
    batching: str | None = None
    attempts: int = 0  # how many start events (1 + resumes)
    resumed_from: str | None = None
    attempt_started: float | None = None  # time of the latest start event
    attempt_message: str | None = None
    earlier_seconds: float = 0.0  # training time of the attempts before the latest one
    last_time: float | None = None  # time of the latest event
    ended: float | None = None  # time of the end event of the latest attempt
    step_rate: float | None = None  # steps per second over the latest attempt
    error: str | None = None
    log_lines: tuple[str, ...] = ()
    samples: tuple[dict, ...] = ()  # GRPO: the latest sampled answers {prompt, completion, scores, reward, step}
    events_read: int = 0

    @classmethod
    def of(cls, history: RunHistory, *, run_id: str, run_dir: Path, state: str, message: str | None,
           pid: int | None, step: int, max_steps: int | None, tokens_per_second: float | None,
           log_lines: tuple[str, ...]) -> RunView:
        h = history
        return cls(
            run_id=run_id, run_dir=run_dir, state=state, message=message, pid=pid, step=step,
            max_steps=max_steps, series={k: tuple(v) for k, v in h.series.items()},
            learning_rate=h.learning_rate, grad_norm=h.grad_norm, tokens_per_second=tokens_per_second,
            epoch=h.epoch, checkpoints=tuple(h.checkpoints), method=h.method, objective=h.objective,
            device=h.device, num_examples=h.num_examples, trainable_params=h.trainable_params,
            total_params=h.total_params, estimated_memory=h.estimated_memory, batching=h.batching,
            attempts=h.attempts, resumed_from=h.resumed_from,
            attempt_started=h.attempt_started, attempt_message=h.attempt_message, earlier_seconds=h.earlier_seconds, last_time=h.last_time,
            ended=h.ended, step_rate=h.step_rate, error=h.error, log_lines=log_lines,
            samples=tuple(dict(s) for s in h.samples), events_read=h.events_read,
        )

    def points(self, name: str) -> tuple[Point, ...]:
        return self.series.get(name, ())

    @property
    def alive(self) -> bool:
        return self.state in ALIVE

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
