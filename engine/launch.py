"""Start, stop and resume training runs as detached worker processes.

``start_run`` checks what can be checked cheaply (model and data exist, the method can run on this
hardware) so that problems are one sentence *before* a run folder fills with a failed run, then
starts ``python -m engine.worker RUN_DIR`` in its own session (``start_new_session``: no controlling
terminal, so closing the terminal or losing SSH never reaches it), stdin from /dev/null and output
appended to ``worker.log`` — never a pipe nobody drains. It returns at once.

No ML imports here: the TUI starts and stops runs through this module.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .config import RunConfig
from .errors import ConfigError, TunedeckError
from .runs import ALIVE, Run, create_run, get_run, pid_alive, process_start_time

QLORA_CPU_BNB = (0, 49)  # bitsandbytes trains 4-bit adapters on the CPU from here on


class RunStateError(TunedeckError):
    """The run is in a state that does not allow the action (stop a finished run, resume a live one)."""

    exit_code = 1


# --- checks before starting --------------------------------------------------------------------
def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def _has_nvidia_gpu() -> bool:
    try:
        from . import gpu

        return bool(gpu.list_gpus())
    except Exception:
        return False


def method_problem(method: str) -> str | None:
    """Why ``method`` cannot run on this machine, or None. Cheap: no torch import."""
    if method != "qlora":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        return ("QLoRA needs the bitsandbytes package, which is not installed: `pip install bitsandbytes`, "
                "or use method: lora.")
    if _has_nvidia_gpu():
        return None
    if sys.platform == "darwin":
        return ("QLoRA needs an NVIDIA GPU or a Linux/Windows CPU build of bitsandbytes, and this Mac has "
                "neither; use method: lora.")
    version = importlib.metadata.version("bitsandbytes")
    if _version_tuple(version) < QLORA_CPU_BNB:
        need = ".".join(map(str, QLORA_CPU_BNB))
        return (f"QLoRA without an NVIDIA GPU needs bitsandbytes >= {need} to train on the CPU (found {version}): "
                f"`pip install -U bitsandbytes`, or use method: lora.")
    return None


def _absolute_if_local(ref: str | None) -> str | None:
    if not ref or ref == "demo":
        return ref
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def preflight(config: RunConfig) -> RunConfig:
    """Check ``config`` against this machine; return it with local paths made absolute (the worker
    runs in the run folder). Raises a TunedeckError with one sentence."""
    from . import models
    from .data import is_local, open_source

    if config.processes != 1:
        raise ConfigError(f"processes: {config.processes} (multi-GPU training) is not available yet; "
                          "set processes: 1.")
    problem = method_problem(config.method)
    if problem:
        raise ConfigError(problem)
    models.resolve(config.model)  # ModelNotFound with one sentence
    for ref in (config.data, config.eval_data):
        if ref and is_local(ref):
            open_source(ref).close()  # DataError with one sentence (missing file, unreadable format)
    d = config.to_dict()
    d["model"] = _absolute_if_local(config.model)
    d["data"] = _absolute_if_local(config.data)
    d["eval_data"] = _absolute_if_local(config.eval_data)
    return RunConfig.from_dict(d, source="config")


# --- processes ---------------------------------------------------------------------------------
def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def worker_command(run: Run, *, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "engine.worker", str(run.dir)]
    return cmd + (["--resume"] if resume else [])


def _spawn(run: Run, *, resume: bool, message: str) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with open(run.log_path, "ab") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"==== {stamp} {'resume' if resume else 'start'}: {message} ====\n".encode())
        log.flush()
        proc = subprocess.Popen(
            worker_command(run, resume=resume),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=run.dir, env=env, start_new_session=True, close_fds=True,
        )
    # The worker waits for this write before it writes status.json itself.
    run.write_status(state="starting", pid=proc.pid, pid_started=process_start_time(proc.pid),
                     message=message, ended=None)
    # Reap it when it ends, so a long-lived parent (the TUI) keeps no zombie; a short-lived parent
    # (the CLI) simply exits and the worker carries on under init.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc.pid


def start_run(config: RunConfig) -> Run:
    """Create a run folder for ``config`` and start its worker detached; returns at once."""
    config = preflight(config)
    run = create_run(config.to_yaml(), model=config.model, method=config.method)
    if config.max_steps:
        run.write_status(max_steps=config.max_steps)
    _spawn(run, resume=False, message="Starting the worker…")
    return run


def _as_run(run_ref: str | Run) -> Run:
    return run_ref if isinstance(run_ref, Run) else get_run(str(run_ref))


def resume_run(run_ref: str | Run) -> Run:
    """Continue a stopped, crashed or failed run in the same folder from its newest complete
    checkpoint (or from step 0 when none was saved); returns at once."""
    run = _as_run(run_ref)
    info = run.info()
    if info.state in ALIVE:
        raise RunStateError(f"Run {run.id} is still {info.state} (pid {info.pid}); there is nothing to resume.")
    if info.state == "completed":
        raise RunStateError(f"Run {run.id} already completed all its steps; start a new run with `tunedeck train`.")
    if info.state not in ("stopped", "crashed", "failed"):
        raise RunStateError(f"Run {run.id} is {info.state}, not stopped, crashed or failed; it cannot be resumed.")
    config = preflight(RunConfig.load(run.config_path))
    if info.state == "crashed":  # the dead worker could not say so itself
        run.append_event({"type": "end", "step": info.step, "state": "crashed", "message": info.message})
    checkpoint = run.latest_checkpoint()
    message = (f"Resuming from {checkpoint.name}…" if checkpoint is not None
               else "No checkpoint was saved, so training restarts from step 0 in the same folder…")
    run.write_status(message=message, max_steps=config.max_steps or run.read_status().get("max_steps"))
    _spawn(run, resume=True, message=message)
    return run


def step_seconds(run: Run) -> float | None:
    """Seconds per optimizer step lately, from the event log (None before two steps are logged)."""
    logs = [e for e in run.events() if e.get("type") in ("log", "start")][-6:]
    pairs = [(a, b) for a, b in zip(logs, logs[1:]) if b.get("type") == "log" and (b["step"] or 0) > (a.get("step") or 0)]
    if not pairs:
        return None
    a, b = pairs[0][0], pairs[-1][1]
    steps = (b.get("step") or 0) - (a.get("step") or 0)
    return (b["time"] - a["time"]) / steps if steps > 0 else None


def default_grace(run: Run) -> float:
    """How long a stop waits for the current step and its checkpoint: at least 60 s, and three
    steps' time on a slow machine (capped at an hour)."""
    per_step = step_seconds(run) or 0.0
    return float(min(3600, max(60, 3 * per_step + 30)))


def stop_run(run_ref: str | Run, grace: float | None = None, *, wait: bool = True,
             on_wait: Callable[[float], None] | None = None) -> str:
    """Ask the worker to stop (SIGTERM): it finishes the current step, saves a checkpoint and the
    adapter, and ends ``stopped``. With ``wait`` (the default) wait up to ``grace`` seconds (None:
    ``default_grace``, at least 60 s), calling ``on_wait(seconds_left)`` about 5 times a second,
    then SIGKILL it. Returns a sentence for people."""
    run = _as_run(run_ref)
    if grace is None:
        grace = default_grace(run)
    info = run.info()
    if info.state not in ALIVE:
        raise RunStateError(f"Run {run.id} is not running (it is {info.state}); there is nothing to stop.")
    status = run.read_status()
    pid, started = status.get("pid"), status.get("pid_started")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not wait:
        return (f"Asked run {run.id} to stop: it saves a checkpoint at the end of the current step "
                f"(pid {pid}).")
    deadline = time.monotonic() + grace
    while pid_alive(pid, started) and time.monotonic() < deadline:
        if on_wait:
            on_wait(max(0.0, deadline - time.monotonic()))
        time.sleep(0.2)
    killed = False
    if pid_alive(pid, started):
        killed = True
        try:
            os.killpg(pid, signal.SIGKILL)  # the worker leads its own process group
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 10
        while pid_alive(pid, started) and time.monotonic() < end:
            time.sleep(0.05)
    status = run.read_status()
    if status.get("state") in ALIVE:  # it died without recording an end: record it for it
        checkpoint = run.latest_checkpoint()
        cp = f"`tunedeck resume {run.id}` continues from {checkpoint.name}" if checkpoint else \
            f"no checkpoint was saved, so `tunedeck resume {run.id}` restarts from step 0"
        why = f"it did not finish its step within {grace:g} s and was killed" if killed else "the worker ended"
        message = f"Stopped at step {status.get('step') or 0}: {why}; {cp}."
        run.append_event({"type": "end", "step": status.get("step") or 0, "state": "stopped", "message": message})
        run.write_status(state="stopped", message=message, ended=round(time.time(), 3))
        return message
    return status.get("message") or f"Run {run.id} is {status.get('state')}."
