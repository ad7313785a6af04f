"""Guard rails against the classic fine-tuning failures, on real tiny-model runs: early stopping and
the best checkpoint kept (keep: best)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import RunConfig
from waiting import run_ended, wait_run


def _contradicting_eval(tmp_path: Path) -> Path:
    """Validation rows that answer the training task's prompts differently: as the model learns the
    training answers, its eval loss on these must turn up — overfitting, on purpose."""
    words = ["apple", "river", "cloud", "stone", "green", "seven", "tiger", "lemon"]
    path = tmp_path / "eval.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Repeat: {w}"},
                          {"role": "assistant", "content": f"no {w[::-1]} here"}]} for w in words]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(model, data, eval_data, **extra) -> RunConfig:
    # full fine-tuning of the tiny model at this rate: eval loss falls for ~8 steps, then rises
    settings = {"model": str(model), "data": str(data), "eval_data": str(eval_data), "method": "full",
                "max_steps": 24, "batch_size": 8, "learning_rate": 5e-3, "eval_steps": 2, "save_steps": 1000,
                "max_length": 48, "logging_steps": 1}
    settings.update(extra)
    return RunConfig.from_dict(settings)


def _evals(run) -> list[tuple[int, float]]:
    return [(e["step"], e["eval_loss"]) for e in run.events() if e["type"] == "eval"]


def test_an_overfitting_run_stops_early_and_ends_with_its_best_weights(tiny_model, toy_data, tmp_path):
    from engine.launch import start_run

    run = start_run(_config(tiny_model, toy_data, _contradicting_eval(tmp_path), early_stopping_patience=2))
    wait_run(run, run_ended, timeout=300)
    info = run.info()
    assert info.state == "completed", (info.message, run.log_tail(30))
    evals = _evals(run)
    best_step, best_loss = min(evals, key=lambda e: e[1])
    last_step = evals[-1][0]
    # it stopped two evaluations after the best, well before max_steps
    assert "Stopped early at step" in info.message and last_step < 24, info.message
    assert last_step == best_step + 2 * 2 and [s for s, _ in evals].index(best_step) == len(evals) - 3
    assert f"best at step {best_step}" in info.message and "\n" not in info.message
    # the run's model is the weights saved at the best evaluation (best/ was moved into place)
    kept = json.loads((run.model_dir / "best.json").read_text())
    assert kept["step"] == best_step and abs(kept["eval_loss"] - best_loss) < 1e-9
    assert (run.model_dir / "config.json").is_file() and not run.best_dir.exists()
    assert run.weights().path == run.model_dir
    status = run.read_status()
    assert status["best_step"] == best_step


def test_keep_best_without_patience_trains_to_the_end_and_keep_last_keeps_the_last(tiny_model, toy_data, tmp_path):
    from engine.launch import start_run

    eval_data = _contradicting_eval(tmp_path)
    best = start_run(_config(tiny_model, toy_data, eval_data))
    last = start_run(_config(tiny_model, toy_data, eval_data, keep="last", max_steps=23))  # 23: no eval on the last step
    for run in (best, last):
        wait_run(run, run_ended, timeout=300)
        assert run.info().state == "completed", run.info().message
    # keep: best (the default) trains all 24 steps and ends with the best evaluation's weights
    evals = _evals(best)
    best_step = min(evals, key=lambda e: e[1])[0]
    assert best_step < 24 and evals[-1][0] == 24
    assert best.info().message.startswith(f"Completed 24 steps; best at step {best_step} (eval loss ")
    assert json.loads((best.model_dir / "best.json").read_text())["step"] == best_step
    # keep: last ends with the last weights, though an earlier evaluation was better
    assert last.info().message.startswith("Completed 23 steps; the model is in")
    assert min(_evals(last), key=lambda e: e[1])[0] < 23 and not (last.model_dir / "best.json").exists() and not last.best_dir.exists()
