"""Tunedeck tried as a hostile or unlucky user would: shell injection through a launch script,
signals to processes that are not the run's, two workers in one folder, an adapter lost mid-swap,
a full disk, a cut-short checkpoint, an empty run reference, damaged run folders, and the inputs
that used to end in a traceback. Each test failed before its fix."""

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from engine.config import RunConfig
from engine.errors import TunedeckError
from engine.launch import RunStateError, resume_run, start_run, stop_run
from engine.paths import runs_dir
from engine.runs import Run, RunBusy, RunNotFound, create_run, get_run, list_runs, process_identity
from waiting import run_ended, wait_run, worker_gone

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def _cli(*args, env=None, cwd=None, input=None):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=240,
                          cwd=cwd or ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})), input=input)


def _tiny(tiny_model, toy_data, **extra) -> RunConfig:
    settings = {"model": str(tiny_model), "data": str(toy_data), "max_steps": 20, "batch_size": 8,
                "learning_rate": 1e-2, "eval_steps": 0, "save_steps": 100, "max_length": 64,
                "lora": {"r": 8, "alpha": 16}}
    return RunConfig.from_dict({**settings, **extra})


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)


def _folder(name: str, config: dict, status: dict | None) -> Run:
    folder = runs_dir() / name
    folder.mkdir(mode=0o700)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if status is not None:
        (folder / "status.json").write_text(json.dumps(status))
    return Run(folder)


# --- security ---------------------------------------------------------------------------------------
def test_a_launch_script_runs_hostile_names_without_executing_them(tmp_path):
    hostile_data = str(tmp_path / "d\ntouch PWNED #.jsonl")
    run = _folder("run$(touch PWNED)", {"model": "demo", "data": hostile_data, "method": "lora"},
                  {"state": "completed", "created": 1.0, "step": 1})
    out = tmp_path / "out"
    out.mkdir()
    from engine.export import write_launch_script

    result = write_launch_script(str(run.dir), out / "train.sh")
    script = Path(result["script"])
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    work = tmp_path / "work"
    work.mkdir()
    # PYTHON=true: everything up to the launch runs for real, then `exec true` stands in for training
    proc = subprocess.run(["bash", str(script)], cwd=work, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHON="true", NUM_MACHINES="1", MACHINE_RANK="0"))
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("PWNED")) and not (ROOT / "PWNED").exists()
    assert (out / "run$(touch PWNED)-run" / "config.yaml").is_file()  # the name, taken literally
    assert "\ntouch PWNED" not in script.read_text()  # the newline stays inside its comment


def test_stop_never_signals_a_process_that_is_not_the_runs_worker():
    stranger = _sleeper()
    try:
        run = create_run("model: demo\ndata: demo\n")
        # a hand-written status naming a live process: its start time is right, no launcher recorded it
        run.write_status(state="running", pid=stranger.pid, pid_started=psutil.Process(stranger.pid).create_time())
        assert run.info().state == "crashed"
        with pytest.raises(RunStateError):
            stop_run(run.id, grace=1)
        # a forged command line is no better
        run.write_status(state="running", **{**process_identity(stranger.pid), "pid_cmdline": ["python", "-m",
                                                                                            "engine.worker"]})
        with pytest.raises(RunStateError):
            stop_run(run.id, grace=1)
        # pid 1 is never anyone's worker
        run.write_status(state="running", pid=1, pid_started=psutil.Process(1).create_time(),
                         pid_cmdline=psutil.Process(1).cmdline())
        with pytest.raises(RunStateError):
            stop_run(run.id, grace=1)
        assert stranger.poll() is None  # alive and untouched
    finally:
        stranger.kill()
        stranger.wait()


def test_inherited_torchrun_variables_leave_a_single_worker_alone(tiny_model, toy_data, monkeypatch):
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "10.9.9.9",
                       "MASTER_PORT": "1", "TORCHELASTIC_RUN_ID": "x"}.items():
        monkeypatch.setenv(key, value)  # what a cluster shell exports
    run = start_run(_tiny(tiny_model, toy_data, max_steps=3))
    pid = run.read_status()["pid"]
    assert pid != 1 and "engine.worker" in " ".join(psutil.Process(pid).cmdline())
    wait_run(run, run_ended)
    info = run.info()
    assert info.state == "completed", info.message
    start = next(e for e in run.events() if e["type"] == "start")
    assert "processes" not in start and run.read_status()["pid"] == pid


# --- data safety ------------------------------------------------------------------------------------
def test_two_resumes_start_one_worker(tiny_model, toy_data):
    run = create_run(_tiny(tiny_model, toy_data, max_steps=400).to_yaml())
    run.write_status(state="stopped", step=0, max_steps=400)
    results, barrier = [], threading.Barrier(3)

    def resume() -> None:
        barrier.wait()
        try:
            results.append(resume_run(run.id))
        except (RunBusy, RunStateError) as exc:
            results.append(exc)

    threads = [threading.Thread(target=resume) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [r for r in results if isinstance(r, Run)]
    assert len(started) == 1, results
    assert all("already" in str(r) or "still" in str(r) for r in results if not isinstance(r, Run))
    with pytest.raises((RunBusy, RunStateError)):  # and while it trains, one more is refused too
        resume_run(run.id)
    workers = [p for p in psutil.process_iter(["cmdline"]) if str(run.dir) in " ".join(p.info["cmdline"] or [])]
    assert len(workers) == 1
    stop_run(run.id, grace=60)
    assert run.info().state == "stopped"


def test_a_worker_started_by_hand_beside_a_live_one_leaves_it_alone(tiny_model, toy_data):
    run = start_run(_tiny(tiny_model, toy_data, max_steps=400))
    wait_run(run, lambda r: r.info().state == "running")
    second = subprocess.run([sys.executable, "-m", "engine.worker", str(run.dir)], capture_output=True, text=True,
                            timeout=60, cwd=run.dir, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert second.returncode == 1 and "already being trained" in second.stdout
    assert run.info().state == "running"
    stop_run(run.id, grace=60)


def test_an_adapter_killed_mid_swap_is_put_back(tmp_path):
    from engine.runs import swap_in

    run = create_run("model: demo\ndata: demo\n")
    old = run.dir / "adapter"
    old.mkdir()
    (old / "adapter_config.json").write_text('{"v": "old"}')
    new = run.dir / ".adapter-a1b2"
    new.mkdir()
    (new / "adapter_config.json").write_text('{"v": "new"}')
    swap_in(new, old)  # the atomic exchange: never a moment without adapter/
    assert json.loads((old / "adapter_config.json").read_text()) == {"v": "new"} and not new.exists()
    # what two renames left when the worker was killed between them: no adapter/, both copies hidden
    os.replace(old, run.dir / ".adapter-old-4242")
    fresh = run.dir / ".adapter-c3d4"
    fresh.mkdir()
    (fresh / "adapter_config.json").write_text('{"v": "newest"}')
    weights = run.weights()
    assert weights.label == "adapter" and json.loads((weights.path / "adapter_config.json").read_text()) == {"v": "newest"}
    # with only the old copy left, the old one comes back
    (run.dir / "adapter").rename(run.dir / ".adapter-x")
    import shutil

    shutil.rmtree(run.dir / ".adapter-x")
    assert json.loads((run.weights().path / "adapter_config.json").read_text()) == {"v": "new"}


def test_a_cut_short_checkpoint_is_passed_over_for_the_newest_whole_one(tiny_model, toy_data):
    run = start_run(_tiny(tiny_model, toy_data, max_steps=6, save_steps=3))
    wait_run(run, worker_gone)
    (run.checkpoints_dir / "checkpoint-6" / "trainer_state.json").write_text("")  # a kill mid-write
    assert run.latest_checkpoint().name == "checkpoint-3"
    weights = run.checkpoints_dir / "checkpoint-3" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert run.latest_checkpoint() is None
    run.write_status(state="stopped")
    resume_run(run.id)  # from step 0 rather than from a broken checkpoint
    wait_run(run, run_ended)
    assert run.info().state == "completed", run.info().message


def _mount_small_disk(path: Path, size: str) -> bool:
    path.mkdir(parents=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_full_disk_is_said_and_the_run_ends_failed(tiny_model, toy_data, tmp_path, monkeypatch):
    disk = tmp_path / "small-disk"
    if not _mount_small_disk(disk, "2m"):
        pytest.skip("mounting a small tmpfs needs privileges this machine does not give")
    try:
        monkeypatch.setenv("TUNEDECK_HOME", str(disk / "home"))
        run = start_run(_tiny(tiny_model, toy_data, max_steps=200, save_steps=1))
        wait_run(run, run_ended, timeout=200)
        info = run.info()
        assert info.state == "failed", info.message + "\n" + "\n".join(run.log_tail(20))
        assert info.message.startswith(f"Disk full at {run.dir} (") and "MB free" in info.message
        assert "tunedeck resume" in info.message
        latest = run.latest_checkpoint()
        assert latest is None or (latest / "trainer_state.json").stat().st_size > 0
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def test_an_empty_or_ambiguous_reference_deletes_nothing():
    a = create_run("model: demo\ndata: demo\n", model="a")
    b = create_run("model: demo\ndata: demo\n", model="b")
    for ref in ("", "   ", "2"):
        proc = _cli("delete", ref, "--yes")
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(RunNotFound):
        get_run("")
    assert a.dir.is_dir() and b.dir.is_dir()


def test_delete_asks_for_the_whole_run_id():
    run = create_run("model: demo\ndata: demo\n")

    def answer(text: str) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "engine", "delete", run.id], stdin=follower, stdout=follower,
                                stderr=follower, env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
        os.close(follower)
        out = b""
        while b"confirm" not in out:
            out += os.read(leader, 1024)
        os.write(leader, text.encode() + b"\n")
        proc.wait(timeout=60)
        try:
            while True:
                out += os.read(leader, 1024)
        except OSError:
            pass
        os.close(leader)
        return out.decode()

    assert "Kept" in answer("y") and run.dir.is_dir()
    assert "Deleted" in answer(run.id) and not run.dir.exists()


@pytest.mark.parametrize("damage", [
    lambda run: run.status_path.write_text("[1, 2, 3]"),
    lambda run: run.status_path.write_text("null"),
    lambda run: run.status_path.write_text('{"state": "running", "step": "abc", "pid": "x"}'),
    lambda run: run.status_path.write_text('{"state": "completed", "created": "yesterday"}'),
    lambda run: run.status_path.write_text("{not json"),
    lambda run: run.status_path.unlink(),
])
def test_one_damaged_run_folder_does_not_break_listing(damage):
    good = create_run("model: demo\ndata: demo\n", model="good")
    good.write_status(state="completed", step=3, created=time.time() + 10)
    bad = create_run("model: demo\ndata: demo\n", model="bad")
    damage(bad)
    with open(good.events_path, "a") as f:  # a damaged events log too
        f.write('[1, 2]\n"text"\n{"type": "log", "step": "abc", "loss": "x"}\n')
    states = {i.id: i.state for i in list_runs()}
    assert states[good.id] == "completed" and states[bad.id] == "damaged"
    assert get_run("latest").id == good.id and get_run(bad.id).dir == bad.dir
    for args in (["runs"], ["runs", "--json"]):
        proc = _cli(*args, env={"COLUMNS": "200"})
        assert proc.returncode == 0 and "Traceback" not in proc.stderr and bad.id in proc.stdout, proc.stderr
    damaged = next(r for r in json.loads(_cli("runs", "--json").stdout) if r["id"] == bad.id)
    assert damaged["status"] == "damaged" and "status.json" in damaged["message"]
    from engine.follow import RunFollower

    assert RunFollower(good).poll().state == "completed"
    assert RunFollower(bad).poll().state in ("damaged", "created")
    assert _cli("delete", bad.id, "--yes").returncode == 0 and not bad.dir.exists()


# --- smaller ----------------------------------------------------------------------------------------
def test_stop_of_a_finished_run_says_only_that(tunedeck_home):
    run = create_run("model: demo\ndata: demo\n")
    run.write_status(state="completed", step=3)
    proc = _cli("stop", run.id)
    assert proc.returncode != 0 and "Stopping" not in proc.stdout and "not running" in proc.stderr


def test_resumed_token_count_goes_on_and_run_files_are_private(tiny_model, toy_data):
    run = start_run(_tiny(tiny_model, toy_data, max_steps=400, save_steps=5))
    wait_run(run, lambda r: r.latest_checkpoint() is not None and r.info().state == "running")
    stop_run(run.id, grace=60)
    before = [e for e in run.events() if e["type"] == "log"]
    resume_run(run.id)
    wait_run(run, lambda r: sum(e["type"] == "log" for e in r.events()) > len(before) + 2)
    stop_run(run.id, grace=60)
    from engine.run_state import effective_events

    logs = [e for e in effective_events(run.events()) if e["type"] == "log"]
    counts = [e["num_tokens"] for e in logs]
    assert counts == sorted(counts) and counts[-1] > max(e["num_tokens"] for e in before)
    for path in run.dir.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_a_mix_of_sources_starts_and_trains_from_a_yaml_file(tiny_model, toy_data, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text(toy_data.read_text())
    config = tmp_path / "mix.yaml"  # relative paths: read beside the YAML file
    config.write_text(yaml.safe_dump({"model": str(tiny_model), "max_steps": 2, "max_length": 64, "eval_steps": 0,
                                      "data": [{"path": toy_data.name, "weight": 3}, {"path": "other.jsonl", "weight": 1}]}))
    proc = _cli("train", str(config), "--json", cwd=tmp_path.parent)
    assert proc.returncode == 0, proc.stderr
    run = Run(Path(json.loads(proc.stdout)["run_dir"]))
    wait_run(run, run_ended)
    assert run.info().state == "completed", run.info().message
    assert run.info().data == f"{toy_data} + {other}"
    assert "Reading data " in run.log_path.read_text() and " + " in run.log_path.read_text()
