"""The built-in demo: SmolLM2-135M-Instruct and a support-ticket -> JSON dataset, both offline.

Three data sets: ``demo`` (SFT: each ticket with its one line of strict JSON), ``demo-preference``
(the same task as pairs: the strict JSON chosen, a chatty, fenced or wrong answer rejected), for
DPO/KTO after the SFT run, and ``demo-prompts`` (the same tickets as prompts only, each after one
worked example exchange, no answers: for GRPO with the json_valid and json_keys rewards).
``python -m engine.builtin.make_demo_data``, ``make_demo_preference`` and ``make_demo_prompts`` write them.
"""

from __future__ import annotations

from pathlib import Path

from .paths import builtin_dir

DEMO = "demo"
DEMO_PREFERENCE = "demo-preference"
DEMO_PROMPTS = "demo-prompts"
DEMOS = (DEMO, DEMO_PREFERENCE, DEMO_PROMPTS)
DATA_DESCRIPTION = "support tickets -> one line of strict JSON"
PREFERENCE_DESCRIPTION = "support tickets: the strict JSON chosen over a chatty, fenced or wrong answer"
PROMPTS_DESCRIPTION = "support tickets as prompts only (one worked example each, no answers), for GRPO"
# What the Home screen and others say of each built-in data set.
DESCRIPTIONS = {DEMO: f"built-in demo: {DATA_DESCRIPTION}", DEMO_PREFERENCE: f"built-in demo pairs: {PREFERENCE_DESCRIPTION}",
                DEMO_PROMPTS: f"built-in demo prompts: {PROMPTS_DESCRIPTION}"}
_FILES = {DEMO: "demo", DEMO_PREFERENCE: "demo-preference", DEMO_PROMPTS: "demo-prompts"}


def data_file(name: str = DEMO, split: str = "train") -> Path:
    """The file of a built-in data set's split ("train" or "validation")."""
    return builtin_dir() / f"{_FILES[name]}-{split}.jsonl"


def train_file() -> Path:
    return data_file(DEMO, "train")


def validation_file() -> Path:
    return data_file(DEMO, "validation")


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def grpo_config_file() -> Path:
    """The demo's GRPO run config (``demo-grpo.yaml``: demo-prompts with the json_valid and json_keys rewards)."""
    return builtin_dir() / "configs" / "demo-grpo.yaml"


def grpo_settings() -> dict:
    """The settings of the demo's GRPO run, keyed like ``RunConfig`` (method included, model and data not):
    what the file sets, validated as a run config (a ConfigError if the file is broken)."""
    import yaml

    from .config import RunConfig

    path = grpo_config_file()
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    values = RunConfig.from_yaml(path.read_text(encoding="utf-8"), source=str(path)).to_dict()
    return {k: values[k] for k in raw if k not in ("model", "data")}
