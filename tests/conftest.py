import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# No test touches the network: the Hub is offline for every test and every child process.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `make test` runs two test processes on two cores, and most tests start a child that uses torch: one
# thread each keeps them from spinning against each other (7% less wall time on the training tests).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def tunedeck_home(tmp_path, monkeypatch):
    """Every test gets its own run store; the model cache is shared (converting the demo is slow)."""
    home = tmp_path / "tunedeck-home"
    monkeypatch.setenv("TUNEDECK_HOME", str(home))
    monkeypatch.setenv("TUNEDECK_CONFIG", str(tmp_path / "tunedeck-config"))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A ~200k-parameter Llama with a local tokenizer and chat template, saved to a folder."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def demo_model_dir() -> str:
    """The demo model converted to its safetensors cache (converted once, ~15 s, then reused)."""
    from engine import models

    return models.materialize("demo")


@pytest.fixture
def toy_data(tmp_path) -> Path:
    """A learnable task for the tiny model: repeat the word three times."""
    words = ["apple", "river", "cloud", "stone", "green", "seven", "tiger", "lemon"]
    path = tmp_path / "toy.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Repeat: {w}"},
                          {"role": "assistant", "content": f"{w} {w} {w}"}]} for w in words * 8]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
