"""Preference runs in the app (issue 16): real tiny DPO and KTO runs through the detached worker, then
the monitor re-attached to them shows their rewards (DPO: reward accuracy, margin, chosen and
rejected, train and eval; KTO: what its events carry — margin, good and bad answers' rewards, KL), in
three dense lines at 80x24 and as a table with plain words at 160x48, and not at all for SFT; the
Runs table and `tunedeck runs` name the objective and a DPO run's eval reward accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.follow import follow
from run_folders import T0, make_run
from tui.app import TunedeckApp
from tui.screens.train import TrainScreen
from tui.widgets.loss_chart import LossPlot
from tui.widgets.preference_panel import FIGURES, PreferencePanel, value_text
from tui.widgets.runs_table import RunsTable
from waiting import until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)

WORDS = ["apple", "river", "cloud", "stone", "green", "seven", "tiger", "lemon"]  # tests/engine/test_preference.py's
SFT_RUN = "20260101-090000-demo-lora"


def _pairs(folder: Path) -> Path:
    """A learnable preference for the tiny model: repeating a word three times beats saying it once."""
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Repeat: {w}", "chosen": f"{w} {w} {w}", "rejected": w}) + "\n"
                            for w in WORDS * 4))
    return path


def _labels(folder: Path) -> Path:
    path = folder / "labels.jsonl"
    rows = []
    for w in WORDS * 4:
        rows.append({"prompt": f"Repeat: {w}", "completion": f"{w} {w} {w}", "label": True})
        rows.append({"prompt": f"Repeat: {w}", "completion": f"no {w}", "label": False})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@contextmanager
def _store(home: Path):
    """Run store ``home`` for the engine calls inside (a module fixture's, shared by its tests)."""
    old = os.environ.get("TUNEDECK_HOME")
    os.environ["TUNEDECK_HOME"] = str(home)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TUNEDECK_HOME", None)
        else:
            os.environ["TUNEDECK_HOME"] = old


def _train(model: Path, data: Path, **extra):
    """Train for real through the detached worker and wait for the end."""
    from engine.launch import start_run

    settings = {"model": str(model), "data": str(data), "objective": "dpo", "max_steps": 4, "batch_size": 4,
                "learning_rate": 5e-3, "eval_steps": 2, "eval_split": 0.25, "save_steps": 4, "max_length": 64,
                "logging_steps": 1, "lora": {"r": 8, "alpha": 16}, **extra}
    run = start_run(RunConfig.from_dict(settings))
    last = list(follow(run, interval=0.2))[-1]
    assert last.state == "completed", run.log_tail(30)
    return run


@pytest.fixture(scope="module")
def dpo_run(tiny_model, tmp_path_factory):
    """A real 4-step DPO run with eval at steps 2 and 4, and a finished SFT run in the same store."""
    home = tmp_path_factory.mktemp("dpo-home")
    with _store(home):
        run = _train(tiny_model, _pairs(home))
        make_run(SFT_RUN, "completed", step=60, max_steps=60, created=T0, started=T0 + 5, ended=T0 + 905,
                 best=0.2113, message="Completed 60 steps.", losses=[(i, 2.0 * 0.95 ** i) for i in range(1, 61)],
                 evals=[(25, 0.31), (50, 0.2113)])  # written as the engine writes an SFT run
    return run


def _last(run, kind: str, key: str) -> float:
    return [e[key] for e in run.events() if e["type"] == kind][-1]


def _panel_text(app) -> str:
    return app.screen.query_one(PreferencePanel).render().plain


async def _attach(pilot, run_id: str):
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, TrainScreen) and app.screen.view is not None
                and app.screen.view.run_id == run_id and app.screen.view.state == "completed", 120, "the monitor")
    await pilot.pause(0.2)
    return app.screen


async def test_the_monitor_shows_a_dpo_runs_reward_accuracy(dpo_run, monkeypatch):
    monkeypatch.setenv("TUNEDECK_HOME", str(dpo_run.dir.parent.parent))
    accuracy, eval_accuracy = _last(dpo_run, "log", "rewards/accuracies"), _last(dpo_run, "eval", "eval_rewards/accuracies")
    margin, eval_margin = _last(dpo_run, "log", "rewards/margins"), _last(dpo_run, "eval", "eval_rewards/margins")
    app = TunedeckApp(attach_run=dpo_run.id)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _attach(pilot, dpo_run.id)
        panel = screen.query_one(PreferencePanel)
        assert panel.display and panel.size.height == 3  # three dense lines at 80x24
        assert "lora · DPO" in str(screen.query_one("#run-title").render())
        lines = _panel_text(app).splitlines()
        assert lines[0].startswith("DPO accuracy") and len(lines) == 3
        # the latest train and eval values, each beside its sparkline over the 4 logged steps
        assert f"accuracy {value_text(accuracy, FIGURES['dpo'][0]):>6} " in lines[0]
        assert f"eval {value_text(eval_accuracy, FIGURES['dpo'][0]):>6}" in lines[0]
        assert f"margin   {value_text(margin):>6} " in lines[0] and f"eval {value_text(eval_margin):>6}" in lines[0]
        assert "chosen" in lines[1] and "rejected" in lines[1]
        assert lines[2] == "reward accuracy: how often the model prefers the chosen answer; 50% is chance"
        assert all(len(line) <= panel.content_size.width for line in lines)
        assert [s for s, _ in screen.query_one(LossPlot).losses] == [1, 2, 3, 4]  # the loss chart still has room
        assert screen.query_one(LossPlot).size.height >= 3

        await pilot.resize_terminal(160, 48)
        await until(pilot, lambda: panel.size.height == 5, 10, "the table form")
        lines = _panel_text(app).splitlines()
        assert lines[0].split() == ["DPO", "rewards", "train", "eval"]
        rows = {line[:16].strip(): line[16:] for line in lines[1:]}
        assert list(rows) == ["reward accuracy", "reward margin", "chosen reward", "rejected reward"]
        acc = rows["reward accuracy"].split()
        assert acc[0] == value_text(accuracy, FIGURES["dpo"][0]) and len(acc[1]) == 4  # a bar a logged step
        assert acc[2] == value_text(eval_accuracy, FIGURES["dpo"][0]) and len(acc[3]) == 2  # a bar an eval
        assert "how often the tuned model prefers the chosen answer; 50% is chance" in rows["reward accuracy"]

        # SFT runs look as before: no panel (the run before this one in the store)
        await pilot.press("left_square_bracket")
        await _attach(pilot, SFT_RUN)
        assert not panel.display
        assert "lora · " not in str(screen.query_one("#run-title").render())


async def test_the_runs_table_and_the_cli_name_dpo_and_its_eval_reward_accuracy(dpo_run, monkeypatch):
    home = dpo_run.dir.parent.parent
    monkeypatch.setenv("TUNEDECK_HOME", str(home))
    eval_accuracy = _last(dpo_run, "eval", "eval_rewards/accuracies")
    app = TunedeckApp()
    async with app.run_test(size=(130, 30)) as pilot:
        await pilot.press("5")
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: dpo_run.id in table.order, 10, "the runs")
        cell = lambda run_id, column: str(table.get_cell(run_id, column))  # noqa: E731
        assert cell(dpo_run.id, "method") == "lora · DPO"
        assert cell(dpo_run.id, "best") == f"acc {eval_accuracy:.0%}"
        assert (cell(SFT_RUN, "method"), cell(SFT_RUN, "best")) == ("lora", "0.2113")  # SFT as before
        table.move_cursor(row=table.order.index(dpo_run.id), animate=False)
        await pilot.pause()
        details = str(app.screen.query_one("#run-details").render())
        assert f"eval reward accuracy {eval_accuracy:.0%}" in details and "method lora · DPO" in details

    env = {**os.environ, "TUNEDECK_HOME": str(home), "COLUMNS": "160"}
    cli = [sys.executable, "-m", "engine", "runs"]
    text = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=True).stdout
    assert "lora · DPO" in text
    listed = {r["id"]: r for r in json.loads(subprocess.run(
        [*cli, "--json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=True).stdout)}
    assert listed[dpo_run.id]["objective"] == "dpo" and listed[dpo_run.id]["eval_reward_accuracy"] == eval_accuracy
    assert "eval_reward_accuracy" not in listed[SFT_RUN]


async def test_the_monitor_shows_what_a_kto_run_logs(tiny_model, tmp_path):
    """KTO has no pairs, so no accuracy: the margin between good and bad answers, each side's reward
    and the KL term, as its real events carry them."""
    run = _train(tiny_model, _labels(tmp_path), objective="kto", max_steps=2)
    logged = [e for e in run.events() if e["type"] == "log"]
    assert logged and "rewards/accuracies" not in logged[-1] and {"kl", "rewards/margins"} <= set(logged[-1])
    app = TunedeckApp(attach_run=run.id)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await _attach(pilot, run.id)
        panel = screen.query_one(PreferencePanel)
        assert panel.display
        lines = _panel_text(app).splitlines()
        assert lines[0].split() == ["KTO", "rewards", "train", "eval"]
        rows = {line[:16].strip(): line[16:] for line in lines[1:]}
        assert list(rows) == ["reward margin", "good answers", "bad answers", "KL"]
        assert rows["good answers"].split()[0] == value_text(logged[-1]["rewards/chosen"])
        assert rows["KL"].split()[0] == value_text(logged[-1]["kl"], FIGURES["kto"][3])
        assert "good minus bad answers' reward" in rows["reward margin"]
        assert "accuracy" not in _panel_text(app)

        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: panel.size.height == 3, 10, "the dense form")
        lines = _panel_text(app).splitlines()
        assert lines[0].startswith("KTO margin") and "good" in lines[0] and "bad" in lines[1] and "KL" in lines[1]
        assert lines[2].startswith("reward: how much likelier an answer became")
