"""Runs with real adapters for the chat tests: the tiny model trained a few LoRA steps on the demo
data with the trained-token mask of engine.data.encode, saved as a run folder would be.

The run's tokenizer carries a chat template of its own (ChatML with a marker in each role header),
used for training here, so tests can tell whether chat renders with the run's template or the base
model's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TRAIN_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' #trained\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant #trained\n' }}{% endif %}"
)
CHECKPOINT_STEP = 4
STEPS = 12


def train_tiny_adapter(model_dir: Path, out: Path, *, steps: int = STEPS) -> Path:
    """Train LoRA on the tiny model; write ``out/adapter`` and ``out/checkpoints/checkpoint-4``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.data.encode import encode
    from engine.demo import train_file

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = TRAIN_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0))
    rows = [json.loads(line) for line in train_file().read_text().splitlines()[:32]]
    encoded = [encode(tokenizer, row, max_length=160) for row in rows]
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    for step in range(1, steps + 1):
        batch = encoded[(step * 4) % len(encoded):][:4] or encoded[:4]
        width = max(len(e.input_ids) for e in batch)
        ids = torch.tensor([e.input_ids + [tokenizer.pad_token_id] * (width - len(e.input_ids)) for e in batch])
        labels = torch.tensor(
            [[i if t else -100 for i, t in zip(e.input_ids, e.trained)] + [-100] * (width - len(e.input_ids))
             for e in batch]
        )
        mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        if step == CHECKPOINT_STEP:
            cp = out / "checkpoints" / f"checkpoint-{step}"
            model.save_pretrained(cp)
            tokenizer.save_pretrained(cp)
            (cp / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    model.save_pretrained(out / "adapter")
    tokenizer.save_pretrained(out / "adapter")
    return out


def make_run(trained: Path, model_dir: Path, *, state: str = "completed", final: bool = True):
    """A run folder in the current TUNEDECK_HOME holding a copy of the trained adapter."""
    from engine.runs import create_run

    run = create_run(f"model: {model_dir}\ndata: demo\nmethod: lora\n", model=str(model_dir), method="lora")
    shutil.copytree(trained / "checkpoints", run.checkpoints_dir)
    if final:
        shutil.copytree(trained / "adapter", run.adapter_dir)
    run.write_status(state=state, step=STEPS if final else CHECKPOINT_STEP, max_steps=STEPS)
    return run
