"""Runs with real adapters for the chat tests: a real detached worker run (engine.launch.start_run)
of the tiny model on the demo data, made once per test session and copied into each test's run store.

The tiny model is copied and given a chat template of its own (ChatML with a marker in each role
header) for training; after training, the copy's template is put back to plain ChatML, as when a
base model's template changes upstream after a fine-tune. Chat must keep using the template saved
with the run (the one training rendered with), so tests can tell the two apart.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from engine.data.encode import FALLBACK_CHAT_TEMPLATE

TRAIN_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' #trained\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant #trained\n' }}{% endif %}"
)
STEPS = 12
CONTEXT = 2048


def _set_template(model_dir: Path, template: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(model_dir)


def train_tiny_run(tiny_model: Path, workdir: Path, *, timeout: float = 300) -> tuple[Path, Path]:
    """(trained run folder, base model folder): LoRA on the tiny model by the real worker."""
    from engine.config import RunConfig
    from engine.launch import start_run
    from engine.runs import ALIVE

    model_dir = workdir / "tiny-base"
    shutil.copytree(tiny_model, model_dir)
    _set_template(model_dir, TRAIN_TEMPLATE)
    # A longer context than the shared tiny model's 512 (rotary positions: no weights change), so
    # answers can run long enough for tests to stop them midway.
    config = json.loads((model_dir / "config.json").read_text())
    config["max_position_embeddings"] = CONTEXT
    (model_dir / "config.json").write_text(json.dumps(config, indent=2))
    old_home = os.environ.get("TUNEDECK_HOME")
    os.environ["TUNEDECK_HOME"] = str(workdir / "home")
    try:
        cfg = RunConfig.from_dict({
            "model": str(model_dir), "data": "demo", "method": "lora", "max_steps": STEPS, "batch_size": 4,
            "max_length": 160, "learning_rate": 5e-3, "save_steps": 4, "eval_steps": 0, "logging_steps": 1,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        })
        run = start_run(cfg)
        deadline = time.time() + timeout
        while run.info().state in ALIVE + ("created",) and time.time() < deadline:
            time.sleep(0.3)
        info = run.info()
        assert info.state == "completed", (info.state, info.message, run.log_tail(20))
    finally:
        if old_home is None:
            os.environ.pop("TUNEDECK_HOME", None)
        else:
            os.environ["TUNEDECK_HOME"] = old_home
    _set_template(model_dir, FALLBACK_CHAT_TEMPLATE)
    return run.dir, model_dir


def checkpoint_steps(trained: Path) -> list[int]:
    from engine.runs import Run

    return [n for n, _ in Run(trained).checkpoints()]


def make_run(trained: Path, *, state: str = "completed", final: bool = True):
    """A copy of the trained run in the current TUNEDECK_HOME (a new id), optionally without its
    final adapter (as while it is still training)."""
    from engine.runs import Run, create_run

    source = Run(trained)
    config = source.config_path.read_text()
    run = create_run(config, model=source.config().get("model", ""), method="lora")
    shutil.copytree(source.checkpoints_dir, run.checkpoints_dir)
    shutil.copy(source.events_path, run.events_path)
    if final:
        shutil.copytree(source.adapter_dir, run.adapter_dir)
    steps = checkpoint_steps(trained)
    run.write_status(state=state, step=STEPS if final else steps[-1], max_steps=STEPS)
    return run


_SHARED: dict[str, Path] = {}


def shared_trained_run(tiny_model: Path, tmp_path_factory) -> Path:
    """The trained tiny run, made once per test session whichever test module asks first."""
    key = str(tiny_model)
    if key not in _SHARED:
        _SHARED[key] = train_tiny_run(tiny_model, tmp_path_factory.mktemp("tiny-trained"))[0]
    return _SHARED[key]
