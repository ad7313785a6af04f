"""The built-in demo: SmolLM2-135M-Instruct and a support-ticket -> JSON dataset, both offline."""

from __future__ import annotations

from pathlib import Path

from .paths import builtin_dir

DEMO = "demo"
DATA_DESCRIPTION = "support tickets -> one line of strict JSON"


def train_file() -> Path:
    return builtin_dir() / "demo-train.jsonl"


def validation_file() -> Path:
    return builtin_dir() / "demo-validation.jsonl"


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())
