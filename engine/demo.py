"""The built-in demo: SmolLM2-135M-Instruct and a support-ticket -> JSON dataset, both offline.

Two data sets: ``demo`` (SFT: each ticket with its one line of strict JSON) and ``demo-preference``
(the same task as pairs: the strict JSON chosen, a chatty, fenced or wrong answer rejected), for
DPO/KTO after the SFT run. ``python -m engine.builtin.make_demo_data`` and
``python -m engine.builtin.make_demo_preference`` write them.
"""

from __future__ import annotations

from pathlib import Path

from .paths import builtin_dir

DEMO = "demo"
DEMO_PREFERENCE = "demo-preference"
DEMOS = (DEMO, DEMO_PREFERENCE)
DATA_DESCRIPTION = "support tickets -> one line of strict JSON"
PREFERENCE_DESCRIPTION = "support tickets: the strict JSON chosen over a chatty, fenced or wrong answer"
_FILES = {DEMO: "demo", DEMO_PREFERENCE: "demo-preference"}


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
