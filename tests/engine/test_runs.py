"""The run store and the launcher's bookkeeping, without training: liveness with real processes,
resume semantics of the event log, listing, lookup, and refusals before a run folder exists."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.launch import RunStateError, resume_run, start_run, stop_run
from engine.run_state import effective_events
from engine.runs import RunNotFound, create_run, get_run, list_runs, process_identity

ROOT = Path(__file__).resolve().parents[2]


def _run(model="demo", method="lora"):
    return create_run(f"model: {model}\ndata: demo\nmethod: {method}\n", model=model, method=method)


def test_run_folder_is_private_and_status_is_atomic(tunedeck_home):
    run = _run()
    assert stat.S_IMODE(run.dir.stat().st_mode) == 0o700
    assert run.read_status()["state"] == "created"
    run.write_status(state="running", step=3)
    run.write_status(last_loss=1.5)
    status = run.read_status()
    assert status["step"] == 3 and status["last_loss"] == 1.5 and status["state"] == "running"
    assert [p.name for p in run.dir.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_a_running_status_whose_process_is_gone_is_crashed_with_the_log_tail():
    run = _run()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    run.write_status(state="running", **process_identity(proc.pid), step=7)
    run.log_path.write_text("loading\nstep 7\nSegmentation fault\n")
    assert run.info().state == "running"
    proc.kill()
    proc.wait()
    info = run.info()
    assert info.state == "crashed" and info.step == 7
    assert info.message.endswith("last log line: Segmentation fault") and info.log_tail[-1] == "Segmentation fault"


def test_a_reused_pid_is_not_taken_for_the_worker():
    run = _run()
    me = process_identity(os.getpid())
    run.write_status(state="running", **{**me, "pid_started": me["pid_started"] - 1000})
    assert run.info().state == "crashed"


def test_effective_events_drop_steps_a_resume_trains_again():
    events = [{"type": "start", "step": 0}]
    events += [{"type": "log", "step": s} for s in range(1, 8)]
    events += [{"type": "checkpoint", "step": 5}, {"type": "eval", "step": 6}]
    events += [{"type": "start", "step": 5, "resumed_from": "checkpoint-5"}]
    events += [{"type": "log", "step": s} for s in range(6, 11)]
    view = effective_events(events)
    assert [e["step"] for e in view if e["type"] == "log"] == list(range(1, 11))
    assert [e["step"] for e in view if e["type"] in ("eval", "checkpoint")] == [5]
    assert [e["type"] for e in view].count("start") == 2


def test_lookup_by_id_prefix_latest_and_path():
    a = _run("demo")
    time.sleep(0.01)
    b = _run("other", "full")
    a.write_status(created=1.0)
    assert get_run(a.id).dir == a.dir and get_run(str(b.dir)).dir == b.dir
    assert get_run("latest").id == b.id
    assert [i.id for i in list_runs()] == [b.id, a.id]
    with pytest.raises(RunNotFound, match="No run 'zzz'"):
        get_run("zzz")


def test_runs_json_lists_the_fields_scripts_need():
    run = _run()
    run.write_status(state="completed", step=10, max_steps=10, last_loss=0.5)
    proc = subprocess.run([sys.executable, "-m", "engine", "runs", "--json"], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["id"] == run.id and row["status"] == "completed" and row["step"] == 10 and row["max_steps"] == 10
    assert row["model"] == "demo" and row["method"] == "lora" and row["last_loss"] == 0.5
    assert {"pid", "created", "run_dir"} <= set(row)
    table = subprocess.run([sys.executable, "-m", "engine", "runs"], capture_output=True, text=True,
                           cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="100"), timeout=60)
    assert run.id in table.stdout and "completed" in table.stdout and "10/10" in table.stdout


def test_stop_and_resume_refuse_what_makes_no_sense():
    run = _run()
    run.write_status(state="completed", step=3)
    with pytest.raises(RunStateError, match="is not running"):
        stop_run(run.id)
    with pytest.raises(RunStateError, match="already completed"):
        resume_run(run.id)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.write_status(state="running", **process_identity(proc.pid))
        with pytest.raises(RunStateError, match="still running"):
            resume_run(run.id)
    finally:
        proc.kill()
        proc.wait()


def test_stop_kills_a_worker_that_ignores_sigterm_after_the_grace_period():
    run = _run()
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                             "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == b"ready"
    run.write_status(state="running", **process_identity(proc.pid), step=4)
    waited = []
    started = time.monotonic()
    import threading

    threading.Thread(target=proc.wait, daemon=True).start()  # reap it, as the launcher does
    message = stop_run(run.id, grace=1.0, on_wait=waited.append)
    assert time.monotonic() - started < 15 and waited and waited[0] <= 1.0
    assert proc.wait(timeout=10) == -9
    assert run.info().state == "stopped"
    assert message.startswith("Stopped at step 4: it did not finish its step within 1 s and was killed;")
    assert "restarts from step 0" in message
    assert run.events()[-1]["state"] == "stopped"


def test_problems_are_refused_before_a_run_folder_exists(tmp_path, tunedeck_home):
    with pytest.raises(ConfigError, match="fsdp"):  # FSDP shards over GPUs; this machine has none
        start_run(RunConfig.from_dict({"processes": 2, "distributed": "fsdp"}))
    from engine.errors import DataError, ModelNotFound

    with pytest.raises(DataError, match="does not exist"):
        start_run(RunConfig.from_dict({"data": str(tmp_path / "missing.jsonl")}))
    with pytest.raises(ModelNotFound):
        start_run(RunConfig.from_dict({"model": str(tmp_path)}))  # a folder without config.json
    assert not list((tunedeck_home / "runs").glob("*"))
