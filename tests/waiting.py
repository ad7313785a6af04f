"""Waiting in tests, in one place: for a run folder to reach a state, and for the app to show
something. Each gives up with a message that says what it waited for (and, for a run, its state
and the end of its worker log)."""

from __future__ import annotations

import time


def wait_run(run, until, timeout: float = 200, poll: float = 0.05):
    """``until(run)``'s first truthy value, polled until ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = until(run)
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out; state {run.info().state}; log:\n" + "\n".join(run.log_tail(40)))


def run_ended(run) -> bool:
    from engine.runs import ALIVE

    return run.info().state not in ALIVE


def worker_gone(run) -> bool:
    """The run has ended and its worker process has exited (it releases the run's lock as it goes)."""
    from engine.runs import is_run_process

    return run_ended(run) and not is_run_process(run.read_status())


def logged_step(run) -> int:
    return max([e["step"] for e in run.events() if e.get("type") == "log"], default=0)


async def until(pilot, predicate, timeout: float = 240, what: str = "condition", interval: float = 0.1):
    """Let the app run until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(interval)
    raise AssertionError(f"timed out waiting for {what}")
