"""Run folders for the eval/export/runs tests.

``adapter_run`` makes a run whose adapter is a real PEFT LoRA adapter built directly on the tiny
model (weights perturbed so the adapter changes outputs): fast, and enough for export tests.
``trained_run`` trains one for real through ``engine.launch.start_run``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from engine.runs import Run, create_run


def config_yaml(model: str, data: str = "demo", method: str = "lora", **extra) -> str:
    return yaml.safe_dump({"model": str(model), "data": data, "method": method, **extra}, sort_keys=False)


def adapter_run(model_dir: Path, *, data: str = "demo", where: str = "adapter", seed: int = 1, r: int = 4) -> Run:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = create_run(config_yaml(model_dir, data, lora={"r": r, "alpha": 2 * r, "dropout": 0.0,
                                                        "targets": "all-linear"}),
                     model=Path(model_dir).name, method="lora")
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    torch.manual_seed(seed)
    peft_model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                                 target_modules="all-linear", init_lora_weights=False))
    with torch.no_grad():  # make the adapter matter: B is non-zero with init_lora_weights=False; scale it up
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(20.0)
    out = run.adapter_dir if where == "adapter" else run.checkpoints_dir / "checkpoint-5"
    out.mkdir(parents=True)
    peft_model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    if where != "adapter":
        (out / "trainer_state.json").write_text(json.dumps({"global_step": 5}))
    now = time.time()
    run.write_status(state="completed" if where == "adapter" else "stopped", step=5, max_steps=5,
                     started=now - 10, ended=now)
    return run


def trained_run(model_dir: Path, *, max_steps: int = 30, timeout: float = 300, **overrides) -> Run:
    """Train the tiny model for real through the engine (detached worker) and wait for the end."""
    from engine.config import RunConfig
    from engine.launch import start_run
    from engine.runs import FINAL

    settings = dict(model=str(model_dir), data="demo", method="lora", max_steps=max_steps, learning_rate=5e-3,
                    batch_size=8, max_length=192, save_steps=max_steps, eval_steps=max_steps, logging_steps=5,
                    lora={"r": 8, "alpha": 16, "dropout": 0.0, "targets": "all-linear"})
    settings.update(overrides)
    run = start_run(RunConfig.from_dict(settings))
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = run.info()
        if info.state in FINAL:
            assert info.state == "completed", f"{info.state}: {info.message}\n" + "\n".join(run.log_tail(30))
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run.id} did not finish in {timeout} s:\n" + "\n".join(run.log_tail(30)))
