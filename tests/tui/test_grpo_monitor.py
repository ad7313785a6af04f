"""GRPO runs in the monitor (issue 19): a run folder written as the worker writes a GRPO run (log events
with TRL's reward names and Tunedeck's full_marks, eval events, samples events), re-attached in the
app: the mean reward, each reward function's mean, the share of answers with full marks, the answer
length and KL, each with its latest value and a sparkline, and the latest sampled answers with their
scores — in three dense lines at 80x24 and as a table with the answers at 160x48; no GRPO panel for
other runs. The Runs table names the objective."""

from __future__ import annotations

import yaml

from engine.paths import runs_dir
from engine.runs import Run, write_json_atomic
from run_folders import T0, make_run
from tui.app import TunedeckApp
from tui.screens.train import TrainScreen
from tui.widgets.grpo_panel import FULL_MARKS, TOTAL, GrpoPanel
from tui.widgets.preference_panel import PreferencePanel, value_text
from tui.widgets.runs_table import RunsTable
from waiting import until

RUN_ID = "20260102-090000-demo-lora"
SFT_RUN = "20260101-090000-demo-lora"
REWARDS = ("json_valid", "json_keys")
STEPS = 6


def _log(step: int) -> dict:
    """A GRPO log event as the contract says the worker writes it: the reward climbs with the steps."""
    valid = min(1.0, 0.2 + 0.15 * step)
    keys = min(1.0, 0.1 + 0.1 * step)
    return {"time": T0 + 10 * step, "type": "log", "step": step, "loss": 0.01 * step, "learning_rate": 5e-6,
            "reward": valid + keys, "reward_std": 0.3, "rewards/json_valid/mean": valid,
            "rewards/json_keys/mean": keys, "completions/mean_length": 40.0 - step, "kl": 0.001 * step,
            "full_marks": 0.1 * step}


SAMPLES = [
    {"prompt": "Ticket: my invoice is wrong", "completion": '{"category": "billing", "priority": "high"}',
     "scores": {"json_valid": 1.0, "json_keys": 0.5}, "reward": 1.5},
    {"prompt": "Ticket: my invoice is wrong", "completion": "Sure! Here is the JSON:\n```json",
     "scores": {"json_valid": 0.0, "json_keys": 0.0}, "reward": 0.0},
    {"prompt": "Ticket: the app crashes", "completion": '{"category": "bug", "priority": "low", "product": "app"}',
     "scores": {"json_valid": 1.0, "json_keys": 1.0}, "reward": 2.0},
]


def _grpo_run() -> Run:
    folder = runs_dir() / RUN_ID
    folder.mkdir(parents=True, mode=0o700)
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"model": "demo", "data": "demo", "method": "lora", "objective": "grpo", "max_steps": STEPS,
         "rewards": ["json_valid", {"name": "json_keys", "keys": ["category", "priority", "product"]}]},
        sort_keys=False))
    write_json_atomic(folder / "status.json", {"state": "completed", "step": STEPS, "max_steps": STEPS,
                                               "created": T0, "started": T0, "ended": T0 + 100,
                                               "message": "Completed 6 steps.", "reward": _log(STEPS)["reward"],
                                               "full_marks": _log(STEPS)["full_marks"]})
    run = Run(folder)
    run.append_event({"time": T0, "type": "start", "step": 0, "max_steps": STEPS, "device": "cpu",
                      "method": "lora", "objective": "grpo"})
    for step in range(1, STEPS + 1):
        run.append_event(_log(step))
        if step % 3 == 0:
            last = _log(step)
            run.append_event({"time": T0 + 10 * step + 1, "type": "eval", "step": step,
                              **{"eval_" + k: v for k, v in last.items() if k not in ("time", "type", "step",
                                                                                      "learning_rate")}})
        run.append_event({"time": T0 + 10 * step + 2, "type": "samples", "step": step,
                          "items": [dict(s, completion=f"step {step} " + s["completion"]) for s in SAMPLES]})
    run.append_event({"time": T0 + 100, "type": "end", "step": STEPS, "state": "completed",
                      "message": "Completed 6 steps."})
    return run


async def _attach(pilot, run_id: str):
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, TrainScreen) and app.screen.view is not None
                and app.screen.view.run_id == run_id and app.screen.view.state == "completed", 30, "the monitor")
    await pilot.pause(0.2)
    return app.screen


async def test_the_monitor_shows_a_grpo_runs_rewards_and_what_it_generates():
    make_run(SFT_RUN, "completed", step=10, max_steps=10, created=T0 - 3600, started=T0 - 3595, ended=T0 - 3000,
             best=0.5, message="Completed 10 steps.", losses=[(i, 2.0 - 0.1 * i) for i in range(1, 11)])
    run = _grpo_run()
    last, evals = _log(STEPS), _log(STEPS)
    app = TunedeckApp(attach_run=run.id)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _attach(pilot, run.id)
        panel = screen.query_one(GrpoPanel)
        assert panel.display and panel.size.height == 3  # three dense lines at 80x24
        assert not screen.query_one(PreferencePanel).display
        lines = panel.render().plain.splitlines()
        assert len(lines) == 3 and all(len(line) <= panel.content_size.width for line in lines)
        assert lines[0].startswith(f"GRPO reward {value_text(last['reward'], TOTAL)} ")
        assert f"eval {value_text(evals['reward'], TOTAL)}" in lines[0]
        assert f"full {value_text(last['full_marks'], FULL_MARKS)} " in lines[0] and "60%" in lines[0]
        assert "json_valid +1.00" in lines[1] and f"json_keys {value_text(last['rewards/json_keys/mean'])}" in lines[1]
        assert "length 34.00" in lines[2] and "KL 0.006" in lines[2]
        # the newest sampled answer, of the last logged step, with its score
        assert "now 2 step 6 {\"category\": \"bug\"" in lines[2]

        await pilot.resize_terminal(160, 48)
        await until(pilot, lambda: panel.size.height == panel.table_lines(), 10, "the table form")
        lines = panel.render().plain.splitlines()
        assert lines[0].split() == ["GRPO", "rewards", "train", "eval"]
        rows = {line[:16].strip(): line[16:] for line in lines[1:7]}
        assert list(rows) == ["reward", "full marks", "json_valid", "json_keys", "answer length", "KL"]
        reward = rows["reward"].split()
        assert reward[0] == value_text(last["reward"], TOTAL) and len(reward[1]) == STEPS  # a bar a logged step
        assert reward[2] == value_text(evals["reward"], TOTAL) and len(reward[3]) == 2  # a bar an evaluation
        assert rows["full marks"].split()[0] == "60%"
        assert "the weighted total of the rewards" in rows["reward"]
        samples = lines[7:]
        assert samples[0].startswith("What it generates now (step 6)") and "score = json_valid + json_keys" in samples[0]
        assert samples[1].strip() == "▸ Ticket: my invoice is wrong"
        assert samples[2].split()[:3] == ["1.5", "(1", "0.5)"] and 'step 6 {"category": "billing"' in samples[2]
        assert "Sure! Here is the JSON: ⏎ ```json" in samples[3] and samples[3].split()[0] == "0"
        assert samples[4].strip() == "▸ Ticket: the app crashes"
        assert samples[5].split()[:3] == ["2", "(1", "1)"]

        # other runs look as before: no GRPO panel (the run before this one in the store)
        await pilot.press("left_square_bracket")
        await _attach(pilot, SFT_RUN)
        assert not panel.display

    app = TunedeckApp()
    async with app.run_test(size=(130, 30)) as pilot:
        await pilot.press("5")
        await app.workers.wait_for_complete()
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: run.id in table.order, 10, "the runs")
        assert str(table.get_cell(run.id, "method")) == "lora · GRPO"
        assert str(table.get_cell(run.id, "best")) == f"rwd {evals['reward']:.2f}"  # its eval reward, not a loss
