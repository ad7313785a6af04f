"""Run folders written file by file exactly as the engine writes them (config.yaml, status.json,
events.jsonl, worker.log), in every state a user meets: completed, stopped, failed, crashed (the
recorded worker pid is really gone) and running (the recorded pid is a live process)."""

from __future__ import annotations

import subprocess
import sys

import yaml

from engine.paths import runs_dir
from engine.runs import Run, process_identity, write_json_atomic

T0 = 1767258000.0  # 2026-01-01 09:00 UTC


def make_run(run_id: str, state: str, *, step: int, max_steps: int, created: float, started: float | None = None,
             ended: float | None = None, best: float | None = None, pid: int | None = None, message: str | None = None,
             losses=(), evals=(), model: str = "demo", data: str = "demo", method: str = "lora",
             log: str = "") -> Run:
    folder = runs_dir() / run_id
    folder.mkdir(mode=0o700)
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"model": model, "data": data, "method": method, "max_steps": max_steps}, sort_keys=False))
    status = dict(state=state, step=step, max_steps=max_steps, created=created, started=started, ended=ended,
                  best_eval_loss=best, **(process_identity(pid) if pid else {}),
                  message=message)
    write_json_atomic(folder / "status.json", {k: v for k, v in status.items() if v is not None})
    run = Run(folder)
    begin = started or created
    last = ended or begin + 60  # a crashed run's last event comes a minute in
    run.append_event({"time": begin, "type": "start", "step": 0, "max_steps": max_steps, "device": "cpu"})
    timed = sorted([(s, "log", v) for s, v in losses] + [(s, "eval", v) for s, v in evals])
    for s, kind, value in timed:
        at = begin + (last - begin) * s / max(step, 1)
        key = "loss" if kind == "log" else "eval_loss"
        run.append_event({"time": round(at, 3), "type": kind, "step": s, key: value})
    if ended and state in ("completed", "stopped", "failed"):
        run.append_event({"time": ended, "type": "end", "step": step, "state": state, "message": message})
    if log:
        (folder / "worker.log").write_text(log)
    return run


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def standard_runs(*, live_pid: int | None = None) -> dict[str, Run]:
    """Four (five with ``live_pid``) runs, one per state."""
    runs = {
        "completed": make_run(
            "20260101-090000-demo-lora", "completed", step=60, max_steps=60, created=T0, started=T0 + 5,
            ended=T0 + 905, best=0.2113, message="Completed 60 steps.",
            losses=[(i, 2.0 * 0.95 ** i) for i in range(1, 61)], evals=[(25, 0.31), (50, 0.2113)]),
        "stopped": make_run(
            "20260101-100000-demo-qlora", "stopped", step=30, max_steps=100, created=T0 + 3600, started=T0 + 3610,
            ended=T0 + 5410, best=0.4521, method="qlora",
            message="Stopped at step 30 of 100; checkpoint-25 and adapter/ are saved.",
            losses=[(i, 2.2 * 0.97 ** i) for i in range(1, 31)], evals=[(25, 0.4521)]),
        "crashed": make_run(
            "20260101-110000-demo-full", "running", step=12, max_steps=200, created=T0 + 7200, started=T0 + 7205,
            pid=dead_pid(), method="full", losses=[(i, 2.5 * 0.99 ** i) for i in range(1, 13)],
            log="Loading model…\nstep 12 loss 2.21\nKilled\n"),
        "failed": make_run(
            "20260101-120000-tickets-lora", "failed", step=3, max_steps=50, created=T0 + 10800, started=T0 + 10805,
            ended=T0 + 10830, data="/home/me/tickets.jsonl",
            message="The loss became NaN at step 3; lower the learning rate."),
    }
    if live_pid:
        runs["running"] = make_run(
            "20260101-130000-demo-lora", "running", step=7, max_steps=40, created=T0 + 14400, started=T0 + 14405,
            pid=live_pid, losses=[(i, 1.9 * 0.97 ** i) for i in range(1, 8)])
    return runs


def finished_sft_run(run_id: str = "20260101-090000-demo-lora", *, data: str = "demo", objective: str | None = None,
                     created: float = T0) -> Run:
    """A completed LoRA run on the demo model with its final adapter written (what DPO's init_from starts
    from); ``objective`` is added to its config when given."""
    run = make_run(run_id, "completed", step=60, max_steps=60, created=created, started=created + 5,
                   ended=created + 905, best=0.2113, message="Completed 60 steps.", data=data,
                   losses=[(i, 2.0 * 0.95 ** i) for i in range(1, 61)])
    if objective is not None:
        config = yaml.safe_load(run.config_path.read_text())
        run.config_path.write_text(yaml.safe_dump({**config, "objective": objective}, sort_keys=False))
    run.adapter_dir.mkdir()
    (run.adapter_dir / "adapter_config.json").write_text(
        '{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 16, "lora_alpha": 32, "target_modules": "all-linear"}')
    return run
