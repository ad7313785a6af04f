"""QLoRA on the CPU: bitsandbytes 4-bit NF4 base, LoRA adapters that all receive gradients, and a
real detached run that evaluates mid-training and saves its adapter."""

import time

import pytest

from engine.config import RunConfig
from engine.data import load_examples
from engine.launch import method_problem, start_run
from engine.runs import ALIVE
from engine.worker import build_trainer, device_plan, encode_rows, load_model_for

pytestmark = pytest.mark.timeout(240)


def test_qlora_can_run_here():
    assert method_problem("qlora") is None  # bitsandbytes >= 0.49 trains 4-bit on this CPU


def test_qlora_base_is_4bit_nf4_and_every_adapter_learns(tiny_model, tmp_path):
    import bitsandbytes as bnb
    import torch

    cfg = RunConfig.from_dict({"model": str(tiny_model), "method": "qlora", "max_steps": 3, "batch_size": 4,
                               "eval_steps": 1000, "learning_rate": 1e-2, "max_length": 256})
    assert cfg.gradient_checkpointing  # the QLoRA default, exercised here
    model, tokenizer = load_model_for(cfg, device_plan())
    four_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 14  # 7 linear layers in each of the 2 blocks, all quantised
    assert all(m.weight.quant_type == "nf4" for m in four_bit)

    rows, _ = encode_rows(tokenizer, load_examples("demo", split="train")[:24], cfg.max_length)
    trainer = build_trainer(cfg, model, tokenizer, rows, rows[:4], tmp_path / "checkpoints")
    adapters = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert len(adapters) == 28 and all("lora_" in n for n in adapters)  # A and B for each of the 14 layers
    before = {n: p.detach().clone() for n, p in adapters.items()}
    trainer.train()
    unchanged = [n for n, p in adapters.items() if torch.equal(p.detach(), before[n])]
    assert unchanged == []  # every adapter matrix was updated: gradients reached all of them

    # and after training (B no longer zero) a backward pass gives every adapter a non-zero gradient
    batch = next(iter(trainer.get_train_dataloader()))
    model.train()
    model.zero_grad()
    loss = model(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}).loss
    loss.backward()
    no_grad = [n for n, p in adapters.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert torch.isfinite(loss) and no_grad == []
    # evaluation in the middle of training works on layers whose width is not a multiple of 64
    assert torch.isfinite(torch.tensor(trainer.evaluate()["eval_loss"]))


def test_qlora_detached_run_evaluates_and_saves_its_adapter(tiny_model):
    cfg = RunConfig.from_dict({"model": str(tiny_model), "method": "qlora", "max_steps": 4, "batch_size": 4,
                               "eval_steps": 2, "save_steps": 2, "max_length": 256, "eval_split": 0.05})
    run = start_run(cfg)
    deadline = time.time() + 180
    while run.info().state in ALIVE and time.time() < deadline:
        time.sleep(0.3)
    info = run.info()
    assert info.state == "completed", (info.message, run.log_tail(20))
    events = run.events()
    assert [e["step"] for e in events if e["type"] == "eval"] == [2, 4]
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    import json

    adapter_config = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["r"] == 16 and adapter_config["peft_type"] == "LORA"
