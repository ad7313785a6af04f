"""The GPU proof script, in its dry-run mode: every step but the CUDA calls, on the CPU, with tiny
models (on a GPU machine `python3 bench/gpu_check.py` runs the real thing)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_the_gpu_check_runs_every_case_in_dry_run(tmp_path):
    out = tmp_path / "gpu-check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--dry-run", "--json", str(out)],
                          capture_output=True, text=True, timeout=580, cwd=ROOT,
                          env=dict(os.environ, TUNEDECK_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    cases = {(r["model"], r["method"], r["side"], r["batching"]) for r in result["rows"]}
    for model in ("demo", "qwen-0.5b"):
        assert (model, "lora", "TRL defaults", "padded") in cases
        for method in ("lora", "qlora", "full"):
            assert (model, method, "tunedeck", "padded") in cases
        assert (model, "lora", "tunedeck", "padding-free") in cases  # the packed rows were checked exact
    assert all(r["tokens_per_second"] > 0 and r["peak"] > 0 for r in result["rows"])
    assert all(r["estimate"] > 0 for r in result["rows"] if r["side"] == "tunedeck")
    assert "worker CPU" in result["panel"]  # no NVIDIA GPU here: the panel falls back to the worker's CPU and RAM
    assert "LoRA padding-free vs TRL defaults" in proc.stdout
