"""Several processes: real 2-process runs on the CPU (torchrun under `accelerate launch`, gloo) with
the tiny model — they train, loss falls, every event is written once, a stop ends every process at
the same step with a checkpoint and leaves no process behind, a killed launcher takes its workers
with it; config mistakes are one sentence; DDP/FSDP/DeepSpeed accelerate configs load with
accelerate's own parser; the multi-machine launch script passes `bash -n` and, run here as one
machine of two processes, trains through both its accelerate and its torchrun command."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.launch import (ACCELERATE_FILE, accelerate_settings, accelerate_yaml, resume_run, scale_out_plan,
                           start_run, stop_run, write_accelerate_file)
from engine.run_state import effective_events
from engine.runs import Run, create_run
from waiting import logged_step as _logged_step
from waiting import run_ended as _ended
from waiting import wait_run as _wait

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)

def _config(model, data, **extra) -> RunConfig:
    settings = {"model": str(model), "data": str(data), "max_steps": 12, "batch_size": 4, "learning_rate": 1e-2,
                "eval_steps": 0, "save_steps": 6, "max_length": 64, "lora": {"r": 8, "alpha": 16}, "processes": 2}
    settings.update(extra)
    return RunConfig.from_dict(settings)


def _types(events) -> list[str]:
    return [e["type"] for e in events]


def _log_steps(events) -> list[int]:
    return [e["step"] for e in events if e["type"] == "log"]


def _gone(procs: list[psutil.Process], timeout: float = 15) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _processes_of(run: Run) -> list[psutil.Process]:
    """Live processes whose command line names the run folder (launcher and workers)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and str(run.dir) in " ".join(p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            pass
    return found


# --- real runs ----------------------------------------------------------------------------------
def test_two_processes_train_on_the_cpu_and_write_each_event_once(tiny_model, toy_data):
    run = start_run(_config(tiny_model, toy_data))
    pid = _wait(run, lambda r: r.read_status().get("pid"))
    assert os.getsid(pid) == pid  # the launcher leads its own session, as a single worker does
    workers = _wait(run, lambda r: [p for p in psutil.Process(pid).children() if "engine.worker" in " ".join(p.cmdline())]
                    if _logged_step(r) >= 1 else None)
    assert len(workers) == 2
    # the rendezvous store and the workers listen on the loopback only: nothing is reachable from the network
    listening = []
    for proc in [psutil.Process(pid), *workers]:
        try:
            listening += [c.laddr.ip for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            pass
    assert listening and all(ip in ("127.0.0.1", "::1") for ip in listening), listening
    os.kill(pid, signal.SIGHUP)  # a lost terminal: the launcher ignores it
    _wait(run, _ended)
    info = run.info()
    assert info.state == "completed", info.message + "\n" + "\n".join(run.log_tail(40))

    events = run.events()
    assert _types(events).count("start") == 1 and _types(events).count("end") == 1
    assert events[-1]["type"] == "end" and events[-1]["state"] == "completed"
    assert _log_steps(events) == list(range(1, 13))  # every step once, from the main process only
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [6, 12]
    start = next(e for e in events if e["type"] == "start")
    assert start["processes"] == 2 and start["backend"] == "gloo" and start["device"] == "cpu × 2 processes"
    assert "on cpu × 2 processes" in start["message"]
    logs = [e for e in events if e["type"] == "log"]
    losses = [e["loss"] for e in logs]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3  # it learns
    # 2 processes x batch 4: an epoch of 64 examples takes 8 steps
    assert logs[7]["epoch"] == pytest.approx(1.0)
    # tokens are counted over both processes: 8 examples a step, each about as long as the average
    from transformers import AutoTokenizer

    from engine.data.encode import encode

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    rows = [json.loads(line) for line in toy_data.read_text().splitlines()]
    mean_len = sum(len(encode(tok, r, 64).input_ids) for r in rows) / len(rows)
    assert logs[-1]["num_tokens"] / (12 * 8 * mean_len) == pytest.approx(1.0, rel=0.15)
    assert all(e["tokens_per_second"] > 0 for e in logs)

    status = run.read_status()
    assert status["pid"] == pid and status["processes"] == 2 and status["step"] == 12
    assert (run.adapter_dir / "adapter_model.safetensors").is_file() and (run.adapter_dir / "adapter_config.json").is_file()
    assert run.latest_checkpoint().name == "checkpoint-12"
    accelerate = (run.dir / ACCELERATE_FILE).read_text()
    assert "distributed_type: MULTI_GPU" in accelerate and "use_cpu: true" in accelerate
    log = run.log_path.read_text()
    assert log.count("] Training LoRA on 64 examples") == 1  # our own lines from the main process only
    assert _gone(workers + [psutil.Process(pid)])  # the launcher exits once its workers have
    assert not _processes_of(run)


def test_a_stop_ends_every_process_at_one_step_and_a_killed_launcher_takes_its_workers(tiny_model, toy_data):
    run = start_run(_config(tiny_model, toy_data, max_steps=400, save_steps=100))
    _wait(run, lambda r: _logged_step(r) >= 3)
    pid = run.read_status()["pid"]
    tree = psutil.Process(pid).children(recursive=True)
    message = stop_run(run.id, grace=120)
    info = run.info()
    assert info.state == "stopped" and message == info.message, message
    step = info.step
    assert f"Stopped at step {step} of 400" in message
    assert run.latest_checkpoint().name == f"checkpoint-{step}"
    events = run.events()
    assert _log_steps(events) == list(range(1, step + 1))
    assert _types(events).count("end") == 1 and events[-1]["state"] == "stopped"
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert _gone(tree) and not _processes_of(run)  # no orphan left (the launcher is gone: stop_run waited)
    assert "[tunedeck launcher] SIGTERM: the workers were asked to stop and have ended." in run.log_path.read_text()

    # resumed under the launcher again; then the launcher is killed (as the OOM killer would): the
    # workers notice and end, and the run shows crashed
    resume_run(run.id)
    _wait(run, lambda r: _types(r.events()).count("start") == 2 and _logged_step(r) > step)
    pid = run.read_status()["pid"]
    tree = psutil.Process(pid).children(recursive=True)
    assert len(tree) >= 2
    os.kill(pid, signal.SIGKILL)
    assert _gone(tree, timeout=20), "the workers outlived their launcher"
    info = run.info()
    assert info.state == "crashed" and "the launcher (pid" in info.message
    start = [e for e in run.events() if e["type"] == "start"][-1]
    assert start["resumed_from"] == f"checkpoint-{step}" and start["step"] == step
    assert _log_steps(effective_events(run.events()))[: step + 1] == list(range(1, step + 2))


# --- configuration ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("processes: 0\n", "config.yaml:1: processes must be a positive integer (1 trains in one process; 2 or more "
                       "run under accelerate launch), got 0."),
    ("processes: 2\ndistributed: zero\n", "config.yaml:2: distributed must be one of ddp, fsdp, deepspeed, got 'zero'."),
    ("distributed: fsdp\n", "config.yaml:1: distributed: fsdp shares the work of several processes, but processes "
                            "is 1; set processes: 2 or more"),
    ("method: qlora\nprocesses: 2\ndistributed: deepspeed\n", "config.yaml:3: distributed: deepspeed with method: "
                                                              "qlora is not supported"),
    ("accelerate_config: ''\n", "config.yaml:1: accelerate_config must be a non-empty string"),
    ("acelerate_config: a.yaml\n", "config.yaml:1: unknown key 'acelerate_config' (did you mean 'accelerate_config'?)."),
])
def test_scale_out_mistakes_are_one_sentence_naming_the_key(text, expected):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_yaml(text)
    message = str(err.value)
    assert message.startswith(expected) and "\n" not in message and message.endswith(".")


def test_scale_out_keys_round_trip():
    cfg = RunConfig.from_yaml("processes: 4\ndistributed: FSDP\naccelerate_config: ~/acc.yaml\n")
    assert (cfg.processes, cfg.distributed, cfg.accelerate_config) == (4, "fsdp", "~/acc.yaml")
    assert RunConfig.from_yaml(cfg.to_yaml()) == cfg
    default = RunConfig()
    assert (default.processes, default.distributed, default.accelerate_config) == (1, "ddp", None)


def test_what_cannot_run_here_is_refused_before_a_run_folder_exists(tmp_path, tunedeck_home, monkeypatch, tiny_model,
                                                                     toy_data):
    import importlib.util

    base = {"model": str(tiny_model), "data": str(toy_data), "processes": 2}

    def refused(match, **extra):
        with pytest.raises(ConfigError, match=match) as err:
            start_run(RunConfig.from_dict({**base, **extra}))
        assert "\n" not in str(err.value) and str(err.value).endswith(".")

    if importlib.util.find_spec("deepspeed") is None:
        refused(r"^distributed: deepspeed needs the deepspeed package, which is not installed: `pip install "
                r"deepspeed`, or use distributed: ddp or fsdp\.$", distributed="deepspeed")
    monkeypatch.setattr("engine.launch._visible_gpus", lambda: 0)
    refused(r"^distributed: fsdp needs NVIDIA GPUs and none is visible here; on the CPU use distributed: ddp",
            distributed="fsdp")
    monkeypatch.setattr("engine.launch._visible_gpus", lambda: 1)  # the hardware edge: one GPU
    refused(r"^processes: 2 but this machine shows 1 NVIDIA GPU; set processes: 1 or fewer")
    monkeypatch.setattr("engine.launch._visible_gpus", lambda: 0)

    refused(r"^accelerate_config: .*missing\.yaml does not exist", accelerate_config=str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    for text, match in [
        ("distributed_type: MULTI_GPU\nnum_processes: 4\n", r"^processes: 2 disagrees with num_processes: 4 in "),
        ("distributed_type: MULTI_GPU\nnum_processes: 2\nnum_machines: 2\n", r"has num_machines: 2; .*--launch-script"),
        ("distributed_type: NO\n", r"has distributed_type: NO, which does not start one worker per GPU"),
        ("- a\n", r"holds no settings"),
    ]:
        bad.write_text(text)
        refused(match, accelerate_config=str(bad))
    bad.write_text("distributed_type: MULTI_GPU\n")
    refused(r"sets no num_processes of 2 or more", accelerate_config=str(bad), processes=1)
    assert not list((tunedeck_home / "runs").glob("*"))


def test_accelerate_configs_for_each_strategy_load_with_accelerate(tmp_path, monkeypatch):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    expected = {"ddp": DistributedType.MULTI_GPU, "fsdp": DistributedType.FSDP, "deepspeed": DistributedType.DEEPSPEED}
    for strategy, kind in expected.items():
        cfg = RunConfig.from_dict({"processes": 4, "distributed": strategy, "gradient_accumulation_steps": 3})
        path = tmp_path / f"{strategy}.yaml"
        path.write_text(accelerate_yaml(accelerate_settings(cfg, gpu=True)))
        loaded = load_config_from_file(str(path))
        assert loaded.distributed_type == kind and loaded.num_processes == 4 and not loaded.use_cpu
    assert loaded.deepspeed_config["zero_stage"] == 2 and loaded.deepspeed_config["gradient_accumulation_steps"] == 3
    fsdp = load_config_from_file(str(tmp_path / "fsdp.yaml")).fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"

    # written into the run folder: generated for `distributed`, or a copy of the user's own file
    monkeypatch.setattr("engine.launch._visible_gpus", lambda: 4)  # the hardware edge: four GPUs
    cfg = RunConfig.from_dict({"processes": 4, "distributed": "fsdp"})
    run = create_run(cfg.to_yaml(), model="demo", method="lora")
    path = write_accelerate_file(run, cfg, scale_out_plan(cfg))
    assert path == run.dir / ACCELERATE_FILE and path.read_text().startswith("# Written by Tunedeck for run ")
    written = load_config_from_file(str(path))
    assert written.distributed_type == DistributedType.FSDP and written.num_processes == 4 and not written.use_cpu
    mine = tmp_path / "mine.yaml"
    mine.write_text("distributed_type: FSDP\nnum_processes: 4\nfsdp_config:\n  fsdp_version: 2\n")
    cfg = RunConfig.from_dict({"accelerate_config": str(mine)})
    plan = scale_out_plan(cfg)
    assert plan["processes"] == 4 and plan["strategy"] == "fsdp"
    run = create_run(cfg.to_yaml(), model="demo", method="lora")
    copied = write_accelerate_file(run, cfg, plan)
    assert copied.read_text().endswith(mine.read_text())
    assert load_config_from_file(str(copied)).distributed_type == DistributedType.FSDP


# --- several machines ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launch_script_for_several_machines(tiny_model, toy_data, tmp_path):
    cfg = _config(tiny_model, toy_data, max_steps=3, save_steps=100)
    run = create_run(cfg.to_yaml(), model=cfg.model, method=cfg.method)
    out = tmp_path / "nodes"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "engine", "export", run.id, "--launch-script", str(out / "train.sh"),
                           "--json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["launch_script"]
    script = out / "train.sh"
    assert result["script"] == str(script) and os.access(script, os.X_OK)
    assert sorted(p.name for p in out.iterdir()) == ["train.accelerate.yaml", "train.config.yaml", "train.sh"]
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    for needed in ('NUM_MACHINES="${NUM_MACHINES:-2}"', 'MACHINE_RANK="${MACHINE_RANK:-0}"', "MAIN_IP=", "MAIN_PORT=",
                   'PROCS_PER_MACHINE="${PROCS_PER_MACHINE:-2}"', "-m accelerate.commands.launch",
                   '--num_machines "$NUM_MACHINES" --machine_rank "$MACHINE_RANK"',
                   '--main_process_ip "$MAIN_IP" --main_process_port "$MAIN_PORT"',
                   '--num_processes "$((NUM_MACHINES * PROCS_PER_MACHINE))"', "-m torch.distributed.run",
                   '--nnodes "$NUM_MACHINES" --node-rank "$MACHINE_RANK"', '--master-addr "$MAIN_IP"',
                   "--rdzv-backend c10d", "train.config.yaml", "train.accelerate.yaml", "-m engine.worker"):
        assert needed in text, needed
    assert RunConfig.from_yaml((out / "train.config.yaml").read_text()) == RunConfig.load(run.config_path)
    from accelerate.commands.config.config_args import load_config_from_file

    assert load_config_from_file(str(out / "train.accelerate.yaml")).distributed_type.value == "MULTI_GPU"
    again = subprocess.run([sys.executable, "-m", "engine", "export", run.id, "--launch-script", str(script)],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert again.returncode != 0 and "already exists" in again.stderr and "Traceback" not in again.stderr

    # one machine of two processes, through each of the script's two commands
    for launcher in ("accelerate", "torchrun"):
        run_dir = tmp_path / f"run-{launcher}"
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=240, env=dict(
            env, NUM_MACHINES="1", MACHINE_RANK="0", MAIN_IP="127.0.0.1", MAIN_PORT=str(_free_port()),
            PROCS_PER_MACHINE="2", LAUNCHER=launcher, PYTHON=sys.executable, RUN_DIR=str(run_dir)))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        ran = Run(run_dir)
        assert ran.info().state == "completed", ran.info().message
        events = ran.events()
        assert _log_steps(events) == [1, 2, 3] and _types(events).count("start") == 1
        assert next(e for e in events if e["type"] == "start")["processes"] == 2
        assert (ran.adapter_dir / "adapter_model.safetensors").is_file()
