"""Estimates learn from runs here, like for like: a run's measured peak is compared with the estimate for
the largest batch it really trained, not with the worst batch its data could make (shown before training)."""

from __future__ import annotations

import json

from engine import calibration
from engine.config import RunConfig
from engine.estimate import calibration_method
from tiny_run import trained_run


def test_calibration_compares_the_peak_with_the_batch_the_run_really_saw(tiny_model, tmp_path, tunedeck_home):
    # 40 short rows and 2 long ones: one step of 2 rows almost surely never meets the two long rows together
    rows = [{"messages": [{"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": f"{i}"}]}
            for i in range(40)]
    rows += [{"messages": [{"role": "user", "content": "Repeat: " + "word " * 120},
                           {"role": "assistant", "content": "word " * 40}]} for _ in range(2)]
    data = tmp_path / "uneven.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = trained_run(tiny_model, max_steps=1, data=str(data), batch_size=2, eval_steps=0, logging_steps=1,
                      max_length=512)
    status = run.read_status()
    assert status["state"] == "completed", status.get("message")
    worst = status["estimated_memory"]
    seen = status["estimated_memory_seen"]
    assert status["largest_batch"] == 2 and 0 < status["largest_batch_tokens"]
    assert seen < worst  # the long rows were not both in the one batch trained
    cfg = RunConfig.from_dict(run.config(), source="config")
    factor = calibration.factor("cpu", "llama", calibration_method(cfg.method, cfg.objective))
    assert factor is not None and factor[1] == 1
    measured = status["peak_memory"]
    assert abs(factor[0] - measured / seen) < 1e-3  # before the fix: measured / worst
