"""Full fine-tuning: every weight trains, and model/ is a complete transformers model folder with the
tokenizer and its chat template."""

import time

import pytest

from engine.config import RunConfig
from engine.launch import start_run
from engine.runs import ALIVE

pytestmark = pytest.mark.timeout(300)


def test_full_fine_tuning_saves_a_loadable_model(tiny_model):
    cfg = RunConfig.from_dict({"model": str(tiny_model), "data": "demo", "method": "full", "max_steps": 3,
                               "batch_size": 4, "eval_steps": 0, "max_length": 256, "learning_rate": 1e-3})
    run = start_run(cfg)
    deadline = time.time() + 250
    while run.info().state in ALIVE and time.time() < deadline:
        time.sleep(0.3)
    info = run.info()
    assert info.state == "completed", (info.message, run.log_tail(20))
    start = next(e for e in run.events() if e["type"] == "start")
    assert start["trainable_params"] == start["total_params"]
    assert not run.adapter_dir.exists()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tuned = AutoModelForCausalLM.from_pretrained(str(run.model_dir))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    changed = [n for n, p in tuned.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])]
    assert len(changed) == len(list(base.parameters()))  # every weight moved
    assert AutoTokenizer.from_pretrained(str(run.model_dir)).chat_template
