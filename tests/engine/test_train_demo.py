"""End to end on the demo model (SmolLM2-135M-Instruct from its GGUF cache): `tunedeck train` with
no YAML, as a newcomer types it, trains, and the adapter carries the demo's own chat template."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.runs import ALIVE, Run

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(900)


def test_demo_train_from_the_command_line_without_a_yaml(demo_model_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "engine", "train", "--model", "demo", "--data", "demo",
                           "--max-steps", "2", "--batch-size", "2", "--eval-steps", "0", "--json"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    run = Run(Path(json.loads(proc.stdout)["run_dir"]))
    deadline = time.time() + 850
    while run.info().state in ALIVE and time.time() < deadline:
        time.sleep(0.5)
    info = run.info()
    assert info.state == "completed", (info.message, run.log_tail(20))
    assert run.config()["model"] == "demo" and run.config()["method"] == "lora"  # chat loads the base from this

    events = run.events()
    start = next(e for e in events if e["type"] == "start")
    assert start["num_examples"] == 340 and start["num_eval_examples"] == 0
    assert start["total_params"] > 134_000_000 and 0 < start["trainable_params"] < 10_000_000
    losses = [e["loss"] for e in events if e["type"] == "log"]
    assert len(losses) == 2 and all(0 < x < 5 for x in losses)  # a pretrained model: a sane loss at once

    from transformers import AutoTokenizer

    demo_tok = AutoTokenizer.from_pretrained(demo_model_dir)
    saved = AutoTokenizer.from_pretrained(str(run.adapter_dir))
    assert saved.chat_template == demo_tok.chat_template and saved.get_vocab() == demo_tok.get_vocab()
    adapter_config = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["r"] == 16 and set(adapter_config["target_modules"]) >= {"q_proj", "v_proj", "down_proj"}
