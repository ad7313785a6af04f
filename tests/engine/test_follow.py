"""engine.follow: replaying and tailing a run folder, resume semantics, liveness; and following real
tiny training runs (one completes; one is killed mid-run, resumed, and its curve has no duplicates)."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from engine import launch
from engine.config import RunConfig
from engine.follow import CRASH_SETTLE, RunFollower, follow
from engine.runs import create_run, get_run, process_identity

pytestmark = pytest.mark.timeout(300)


def _run():
    return create_run("model: demo\ndata: demo\nmethod: lora\n", model="demo", method="lora")


def _write_attempt(run, start_step, steps, t0, *, resumed_from=None, max_steps=10):
    run.append_event({"type": "start", "time": t0, "step": start_step, "max_steps": max_steps, "method": "lora",
                      "device": "cpu", "resumed_from": resumed_from, "num_examples": 40})
    for s in steps:
        run.append_event({"type": "log", "time": t0 + (s - start_step), "step": s, "loss": 10.0 - s + start_step / 10,
                          "learning_rate": 1e-4, "grad_norm": 1.0, "epoch": s / 10, "tokens_per_second": 100.0})


def test_replays_the_history_then_only_reports_changes():
    run = _run()
    run.write_status(state="completed", step=3, max_steps=3)
    _write_attempt(run, 0, [1, 2, 3], 1000.0, max_steps=3)
    run.append_event({"type": "eval", "time": 1003.5, "step": 3, "eval_loss": 7.5})
    run.append_event({"type": "end", "time": 1004.0, "step": 3, "state": "completed", "message": "Completed 3 steps."})
    follower = RunFollower(run.id)
    view = follower.poll()
    assert [s for s, _ in view.losses] == [1, 2, 3]
    assert view.eval_losses == ((3, 7.5),) and view.best_eval_loss == 7.5
    assert (view.state, view.step, view.max_steps, view.fraction) == ("completed", 3, 3, 1.0)
    assert view.message == "Completed 3 steps."  # status.json has none: the end event says it
    assert view.elapsed() == pytest.approx(4.0)  # start to end, whatever the clock says now
    assert view.eta() is None
    assert follower.poll() is None  # nothing new


def test_a_half_written_line_waits_for_its_end():
    run = _run()
    run.write_status(state="running", **process_identity(os.getpid()), step=0)
    _write_attempt(run, 0, [1], 1000.0)
    follower = RunFollower(run)
    assert [s for s, _ in follower.poll().losses] == [1]
    with open(run.events_path, "a") as f:
        f.write('{"type":"log","time":1002,"step":2,"lo')
    view = follower.poll()
    assert view is None or [s for s, _ in view.losses] == [1]
    with open(run.events_path, "a") as f:
        f.write('ss":8.5}\n')
    assert follower.poll().losses[-1] == (2, 8.5)


def test_a_resume_drops_what_the_previous_attempt_logged_after_the_checkpoint():
    run = _run()
    _write_attempt(run, 0, range(1, 8), 1000.0)  # logged 1..7, then crashed
    run.append_event({"type": "checkpoint", "time": 1004.5, "step": 4, "path": "checkpoints/checkpoint-4"})
    run.append_event({"type": "end", "time": 1007.0, "step": 7, "state": "crashed", "message": "killed"})
    _write_attempt(run, 4, range(5, 11), 2000.0, resumed_from="checkpoint-4")  # redoes 5..10
    run.write_status(state="completed", step=10, max_steps=10)
    view = RunFollower(run).poll()
    steps = [s for s, _ in view.losses]
    assert steps == list(range(1, 11))
    assert dict(view.losses)[6] == pytest.approx(10.0 - 6 + 0.4)  # the resumed attempt's value, not the first
    assert view.checkpoints == (4,)
    assert (view.attempts, view.resumed_from) == (2, "checkpoint-4")
    assert view.elapsed() == pytest.approx(7.0 + 6.0)  # both attempts, not the gap between them


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_a_dead_worker_shows_as_crashed_with_its_last_log_line():
    run = _run()
    run.write_status(state="running", pid=_dead_pid(), step=2)
    run.log_path.write_text("loading\nRuntimeError: something broke\n")
    _write_attempt(run, 0, [1, 2], 1000.0)
    follower = RunFollower(run)
    assert follower.poll().state == "running"  # not at once: whoever killed it may be writing why
    time.sleep(CRASH_SETTLE + 0.1)
    view = follower.poll()
    assert view.state == "crashed" and not view.alive
    assert "something broke" in view.message
    assert view.log_lines[-1] == "RuntimeError: something broke"


def test_a_stopper_that_records_the_end_just_after_the_kill_is_not_a_crash():
    run = _run()
    run.write_status(state="stopping", pid=_dead_pid(), step=2)
    _write_attempt(run, 0, [1, 2], 1000.0)
    follower = RunFollower(run)
    states = [follower.poll().state]
    run.write_status(state="stopped", message="Stopped at step 2: killed after the grace period.")
    time.sleep(CRASH_SETTLE + 0.1)
    states.append(follower.poll().state)
    assert states == ["stopping", "stopped"]


def test_live_pace_gives_an_eta():
    run = _run()
    run.write_status(state="running", **process_identity(os.getpid()), step=5, max_steps=10)
    now = time.time()
    _write_attempt(run, 0, [], now - 5)
    for s in range(1, 6):
        run.append_event({"type": "log", "time": now - 5 + s, "step": s, "loss": 1.0})
    view = RunFollower(run).poll()
    assert view.alive and view.step_rate == pytest.approx(1.0)
    assert view.eta(now) == pytest.approx(5.0, abs=0.01)
    assert view.elapsed(now) == pytest.approx(5.0, abs=0.01)


def test_several_followers_on_threads_see_the_same_run():
    run = _run()
    run.write_status(state="running", **process_identity(os.getpid()), step=0, max_steps=6)
    seen = [[], []]
    done = [threading.Event(), threading.Event()]

    def make(i):
        def on_update(view):
            seen[i].append(view)
            if view.step >= 6:
                done[i].set()
        return on_update

    followers = [RunFollower(run).start(make(i), interval=0.05) for i in range(2)]
    _write_attempt(run, 0, [1, 2, 3], 1000.0, max_steps=6)
    time.sleep(0.2)
    for s in (4, 5, 6):
        run.append_event({"type": "log", "time": 1000.0 + s, "step": s, "loss": 1.0 / s})
    assert all(d.wait(10) for d in done)
    for f in followers:
        f.stop(wait=True)
    assert [s for s, _ in seen[0][-1].losses] == [s for s, _ in seen[1][-1].losses] == [1, 2, 3, 4, 5, 6]
    assert all(t.name != "MainThread" for t in threading.enumerate() if t.name.startswith("tunedeck-follow"))


# --- real runs ------------------------------------------------------------------------------------

def _config(tiny_model, **extra):
    d = {"model": str(tiny_model), "max_steps": 6, "batch_size": 2, "max_length": 128, "save_steps": 3,
         "eval_steps": 3, "logging_steps": 1}
    d.update(extra)
    return RunConfig.from_dict(d)


def test_follows_a_real_tiny_run_to_the_end(tiny_model):
    run = launch.start_run(_config(tiny_model))
    views = list(follow(run.id, interval=0.2))
    last = views[-1]
    assert last.state == "completed", (last.message, run.log_tail(20))
    assert [s for s, _ in last.losses] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in last.eval_losses] == [3, 6]
    assert (last.step, last.max_steps, last.attempts) == (6, 6, 1)
    assert last.trainable_params and last.total_params > last.trainable_params
    assert any(v.state in ("starting", "running") for v in views)  # it was seen live, not only at the end


def test_a_killed_run_resumes_and_its_curve_has_each_step_once(tiny_model):
    run = launch.start_run(_config(tiny_model, max_steps=12, save_steps=4, eval_steps=0))
    follower = RunFollower(run)
    deadline = time.time() + 240
    view = follower.view()
    # wait until checkpoint-4 exists and a few steps after it were logged, then kill -9 the worker
    while time.time() < deadline:
        view = follower.poll() or view
        if view.checkpoints and view.step >= 6:
            break
        assert view.state not in ("completed", "failed"), view.message
        time.sleep(0.1)
    pid = run.read_status()["pid"]
    os.killpg(pid, signal.SIGKILL)
    while time.time() < deadline:
        view = follower.poll() or view
        if view.state == "crashed":
            break
        time.sleep(0.1)
    assert view.state == "crashed"
    logged_before = [s for s, _ in view.losses]
    checkpoint = view.checkpoints[-1]
    assert logged_before[-1] > checkpoint  # the first attempt got past its last checkpoint

    launch.resume_run(run.id)
    while time.time() < deadline:
        view = follower.poll() or view
        if view.state in ("completed", "failed", "crashed") and view.attempts == 2:
            break
        time.sleep(0.2)
    assert view.state == "completed", (view.message, get_run(run.id).log_tail(20))
    assert [s for s, _ in view.losses] == list(range(1, 13))
    assert (view.attempts, view.resumed_from) == (2, f"checkpoint-{checkpoint}")


def test_overfitting_is_caught_from_the_curves():
    run = _run()
    run.write_status(state="running", **process_identity(os.getpid()), step=0, max_steps=100)
    run.append_event({"type": "start", "time": 1000.0, "step": 0, "max_steps": 100})
    losses = [2.0 - 0.02 * s for s in range(1, 61)]  # the training loss falls all along
    for s, loss in enumerate(losses, 1):
        run.append_event({"type": "log", "time": 1000.0 + s, "step": s, "loss": loss})
        if s % 10 == 0:  # eval falls to step 30, then rises at 40 and 50 and 60
            value = {10: 1.9, 20: 1.7, 30: 1.6, 40: 1.65, 50: 1.7, 60: 1.8}[s]
            run.append_event({"type": "eval", "time": 1000.0 + s, "step": s, "eval_loss": value})
            view = RunFollower(run).poll()
            assert (view.overfitting is not None) == (s >= 50), s  # two rises in a row: from step 50 on
    assert "best weights (step 30)" in view.overfitting and view.best_eval_step == 30
