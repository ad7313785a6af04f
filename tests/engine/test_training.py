"""Real training runs on the tiny model through detached workers: loss goes down, the run outlives
the process that launched it, a SIGKILLed run shows `crashed` and resumes to cover every step, stop
leaves a loadable checkpoint and adapter, and a diverging run fails with a sentence."""

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.launch import RunStateError, resume_run, start_run, stop_run
from engine.run_state import effective_events
from engine.runs import Run, get_run, list_runs, pid_alive
from waiting import logged_step as _logged_step
from waiting import run_ended as _ended
from waiting import wait_run as _wait

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)

def _config(model, data, **extra) -> RunConfig:
    settings = {"model": str(model), "data": str(data), "max_steps": 20, "batch_size": 8, "learning_rate": 1e-2,
                "eval_steps": 0, "save_steps": 100, "max_length": 64, "lora": {"r": 8, "alpha": 16}}
    settings.update(extra)
    return RunConfig.from_dict(settings)


def _log_steps(events) -> list[int]:
    return [e["step"] for e in events if e["type"] == "log"]


def test_loss_goes_down_on_a_toy_task_and_the_outputs_are_complete(tiny_model, toy_data):
    run = start_run(_config(tiny_model, toy_data, eval_steps=10, eval_split=0.25, save_steps=10))
    assert stat.S_IMODE(run.dir.stat().st_mode) == 0o700
    _wait(run, _ended)
    info = run.info()
    assert info.state == "completed", info.message

    events = run.events()
    start = next(e for e in events if e["type"] == "start")
    assert start["step"] == 0 and start["max_steps"] == 20 and start["resumed_from"] is None
    assert start["num_examples"] == 48 and start["num_eval_examples"] == 16
    assert 0 < start["trainable_params"] < start["total_params"] and start["device"] == "cpu"
    # rows of nearly one length: packing them (no varlen kernel on a CPU) would cost more than padding
    assert start["batching"] == "padded"
    assert "Padding each batch (not padding-free): packing would cost more" in run.log_path.read_text()
    logs = [e for e in events if e["type"] == "log"]
    assert _log_steps(events) == list(range(1, 21))
    losses = [e["loss"] for e in logs]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3  # it learns
    assert all(e["tokens_per_second"] > 0 and e["learning_rate"] > 0 and e["grad_norm"] >= 0 for e in logs)
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [10, 20] and evals[1]["eval_loss"] < evals[0]["eval_loss"]
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [10, 20]
    assert events[-1]["type"] == "end" and events[-1]["state"] == "completed"

    status = run.read_status()
    assert status["step"] == 20 and status["max_steps"] == 20
    assert status["last_loss"] == losses[-1] and status["best_eval_loss"] == evals[1]["eval_loss"]
    assert status["tokens_per_second"] > 0 and status["ended"] >= status["started"]

    # checkpoints and the adapter carry the tokenizer with its chat template
    from transformers import AutoTokenizer

    for folder in (run.latest_checkpoint(), run.adapter_dir):
        assert (folder / "adapter_model.safetensors").is_file() and (folder / "adapter_config.json").is_file()
        assert AutoTokenizer.from_pretrained(str(folder)).chat_template
    assert run.latest_checkpoint().name == "checkpoint-20"

    # the adapter loads on the base with PEFT and makes the toy answers likelier than the base does
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.data.encode import encode

    tok = AutoTokenizer.from_pretrained(str(run.adapter_dir))
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)), str(run.adapter_dir))
    enc = encode(tok, {"messages": [{"role": "user", "content": "Repeat: tiger"},
                                    {"role": "assistant", "content": "tiger tiger tiger"}]}, 64)
    ids = torch.tensor([enc.input_ids])
    labels = torch.tensor([[t if m else -100 for t, m in zip(enc.input_ids, enc.trained)]])
    with torch.no_grad():
        tuned_loss = tuned(input_ids=ids, labels=labels).loss.item()
        with tuned.disable_adapter():
            base_loss = tuned(input_ids=ids, labels=labels).loss.item()
    assert tuned_loss < base_loss - 0.3

    with pytest.raises(RunStateError, match="not running"):
        stop_run(run.id)
    with pytest.raises(RunStateError, match="already completed"):
        resume_run(run.id)


def test_the_run_outlives_its_launcher_and_ignores_hangup(tiny_model, toy_data):
    """The process that started the run is SIGKILLed, the worker gets the SIGHUP of a lost SSH
    session; training still completes."""
    script = ("import sys, time\n"
              "from engine.config import RunConfig\nfrom engine.launch import start_run\n"
              f"run = start_run(RunConfig.from_dict({_config(tiny_model, toy_data, max_steps=12).to_dict()!r}))\n"
              "print(run.dir, flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        run = Run(Path(parent.stdout.readline().strip()))
        pid = _wait(run, lambda r: r.read_status().get("pid"))
        assert os.getsid(pid) == pid != os.getsid(parent.pid)  # its own session: no terminal to lose
        _wait(run, lambda r: any(e["type"] == "start" for e in r.events()))
    finally:
        parent.kill()
        parent.wait()
    os.kill(pid, signal.SIGHUP)
    _wait(run, _ended)
    assert run.info().state == "completed", run.info().message
    assert _log_steps(run.events()) == list(range(1, 13))


def test_sigkill_mid_run_shows_crashed_and_resume_covers_every_step(tiny_model, toy_data):
    run = start_run(_config(tiny_model, toy_data, max_steps=24, save_steps=5, batch_size=4))
    _wait(run, lambda r: _logged_step(r) >= 8)
    pid = run.read_status()["pid"]
    os.kill(pid, signal.SIGKILL)
    _wait(run, lambda r: not pid_alive(pid))
    killed_at = _logged_step(run)
    checkpoint = run.latest_checkpoint()
    assert killed_at < 24 and checkpoint is not None

    info = run.info()
    assert info.state == "crashed" and "ended without saying why" in info.message
    assert [i.state for i in list_runs() if i.id == run.id] == ["crashed"]
    listed = subprocess.run([sys.executable, "-m", "engine", "runs", "--json"], capture_output=True, text=True,
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    row = next(r for r in json.loads(listed.stdout) if r["id"] == run.id)
    assert row["status"] == "crashed" and row["pid"] == pid and row["method"] == "lora"
    assert {"id", "status", "step", "max_steps", "pid", "created", "model", "method"} <= set(row)

    resumed = resume_run(run.id)
    assert resumed.dir == run.dir
    _wait(run, _ended)
    assert run.info().state == "completed", run.info().message

    events = run.events()
    starts = [e for e in events if e["type"] == "start"]
    cp_step = int(checkpoint.name.split("-")[1])
    assert [s["resumed_from"] for s in starts] == [None, checkpoint.name] and starts[1]["step"] == cp_step
    assert any(e["type"] == "end" and e["state"] == "crashed" for e in events)  # the crash is on record
    # steps after the checkpoint were trained twice; the raw log shows them twice, the view once
    raw = _log_steps(events)
    assert len(raw) == 24 + (killed_at - cp_step)
    assert all(raw.count(s) == 2 for s in range(cp_step + 1, killed_at + 1))
    assert _log_steps(effective_events(events)) == list(range(1, 25))


def test_stop_leaves_a_loadable_checkpoint_and_adapter_and_resume_continues(tiny_model, toy_data):
    run = start_run(_config(tiny_model, toy_data, max_steps=400, batch_size=4))
    _wait(run, lambda r: _logged_step(r) >= 3)
    message = stop_run(run.id, grace=120)
    info = run.info()
    assert info.state == "stopped" and message == info.message
    step = info.step
    assert f"Stopped at step {step} of 400" in message and "tunedeck resume" in message
    assert run.latest_checkpoint().name == f"checkpoint-{step}"  # saved at the end of the step it was in
    events = run.events()
    assert events[-1]["type"] == "end" and events[-1]["state"] == "stopped"
    assert _log_steps(events) == list(range(1, step + 1))

    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)), str(run.adapter_dir))
    assert model.active_adapter == "default"
    a = load_file(str(run.adapter_dir / "adapter_model.safetensors"))
    b = load_file(str(run.latest_checkpoint() / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert AutoTokenizer.from_pretrained(str(run.latest_checkpoint())).chat_template

    resume_run(run.id)
    _wait(run, lambda r: _logged_step(r) >= step + 2 and r.info().state == "running")
    stop_run(run.id, grace=120)
    assert run.info().state == "stopped"
    events = run.events()
    start = [e for e in events if e["type"] == "start"][-1]
    assert start["resumed_from"] == f"checkpoint-{step}" and start["step"] == step
    final = run.info().step
    assert final > step and _log_steps(effective_events(events)) == list(range(1, final + 1))


def test_a_diverging_run_fails_with_a_sentence(tiny_model, toy_data):
    run = start_run(_config(tiny_model, toy_data, learning_rate=1e30, max_steps=10, save_steps=1))
    _wait(run, _ended)
    info = run.info()
    assert info.state == "failed"
    assert "training diverged; lower learning_rate (now 1e+30, try 0.0002) and start again." in info.message
    assert info.message.startswith("The loss became nan at step ") or info.message.startswith("The gradient norm")
    events = run.events()
    assert [e["type"] for e in events[-2:]] == ["error", "end"] and events[-1]["state"] == "failed"
    failed_at = events[-1]["step"]
    assert not run.adapter_dir.exists()  # no adapter from diverged weights
    assert all(step < failed_at for step, _ in run.checkpoints())  # nor a checkpoint of them
    assert get_run("latest").id == run.id


def test_cli_train_json_follow_and_logs(tiny_model, toy_data):
    # TUNEDECK_CHECKPOINT_SECONDS tiny: the time-based checkpoint (for slow machines) fires every step
    env = dict(os.environ, PYTHONPATH=str(ROOT), TUNEDECK_CHECKPOINT_SECONDS="0.001")
    cmd = [sys.executable, "-m", "engine", "train", "--model", str(tiny_model), "--data", str(toy_data),
           "--max-steps", "3", "--batch-size", "4", "--eval-steps", "0", "--max-length", "64", "--json", "--follow"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=200)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    run_dir = Path(lines[0]["run_dir"])
    assert lines[0]["run_id"] == run_dir.name and Run(run_dir).info().state == "completed"
    assert [e["step"] for e in lines[1:] if e.get("type") == "log"] == [1, 2, 3]
    assert lines[-1]["type"] == "end" and lines[-1]["state"] == "completed"
    assert [e["step"] for e in lines[1:] if e.get("type") == "checkpoint"] == [1, 2, 3]  # save_steps is 25
    logs = subprocess.run([sys.executable, "-m", "engine", "logs", run_dir.name], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60)
    assert logs.returncode == 0 and "completed: Completed 3 steps" in logs.stdout


def test_cli_train_follow_shows_progress_until_the_end(tiny_model, toy_data):
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="100")
    cmd = [sys.executable, "-m", "engine", "train", "--model", str(tiny_model), "--data", str(toy_data),
           "--max-steps", "2", "--batch-size", "4", "--eval-steps", "0", "--max-length", "64", "--follow"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=200)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("Started run ") and "Training LoRA on 64 examples, 2 steps, on cpu" in out
    assert "2/2" in out and "completed: Completed 2 steps" in out
    run_id = out.split()[2]
    assert get_run(run_id).info().state == "completed"
