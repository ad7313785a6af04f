"""The Runs screen on real run folders: every state shown right (crashed when the worker's pid is
gone), sorting, monitor/chat hand-off, delete with confirmation (only the run folder goes), the
loss overlay of two runs, and evaluation and export through real child processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from run_folders import T0, make_run, standard_runs
from tiny_run import adapter_run
from tui.app import TunedeckApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.export_run import ExportRunScreen
from tui.widgets.eval_table import EvalTable
from tui.widgets.loss_overlay import LossOverlay
from tui.widgets.runs_table import RunsTable
from waiting import until as _until


async def _open(pilot):
    await pilot.press("5")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    assert pilot.app.current_mode == "runs"
    return pilot.app.screen


async def _select(pilot, run_id: str) -> None:
    table = pilot.app.screen.query_one(RunsTable)
    table.move_cursor(row=table.order.index(run_id), animate=False)
    await pilot.pause()
    assert table.current.id == run_id


def _cell(table, run_id, column) -> str:
    return str(table.get_cell(run_id, column))


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


async def test_table_shows_every_run_in_its_real_state(live_pid):
    runs = standard_runs(live_pid=live_pid)
    app = TunedeckApp()
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await _open(pilot)
        table = screen.query_one(RunsTable)
        assert table.order == [runs[k].id for k in ("running", "failed", "crashed", "stopped", "completed")]
        states = {k: _cell(table, r.id, "state") for k, r in runs.items()}
        assert states == {"completed": "completed", "stopped": "stopped", "crashed": "crashed",
                          "failed": "failed", "running": "running"}
        done = runs["completed"].id
        assert [_cell(table, done, c) for c in ("steps", "best", "duration", "method", "model", "data")] == [
            "60/60", "0.2113", "15m00s", "lora", "demo", "demo"]
        assert _cell(table, runs["failed"].id, "data") == "tickets.jsonl"  # a path shows as its file name
        assert _cell(table, runs["crashed"].id, "steps") == "12/200"

        await _select(pilot, runs["crashed"].id)
        details = str(screen.query_one("#run-details").render())
        assert "ended without saying why" in details and "Killed" in details  # the log's last lines


async def test_sorting_by_key_and_by_header_click():
    runs = standard_runs()
    app = TunedeckApp()
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await _open(pilot)
        table = screen.query_one(RunsTable)
        ids = sorted(r.id for r in runs.values())
        await pilot.press("s")  # from created (newest first) on to the next column: run id, A to Z
        assert table.sort_key == "id" and table.order == ids
        table.sort_by("best")  # lowest eval loss first, runs without one last
        assert table.order[:2] == [runs["completed"].id, runs["stopped"].id]
        # clicking a header sorts by it; clicking again reverses
        x = sum(c.get_render_width(table) for c in table.ordered_columns[:3]) + 2  # inside "steps"
        await pilot.click(RunsTable, offset=(x, 0))
        assert table.sort_key == "steps" and table.order[0] == runs["completed"].id  # most steps first
        await pilot.click(RunsTable, offset=(x, 0))
        assert table.order[0] == runs["failed"].id  # fewest steps first
        assert "steps ▲" in str(table.columns["steps"].label)
        table.sort_by("created", reverse=True)
        await _select(pilot, runs["stopped"].id)
        table.set_rows(list(table.rows_by_id.values()))  # a refresh keeps the cursor on the same run
        assert table.current.id == runs["stopped"].id


async def test_monitor_and_chat_hand_the_run_over(tiny_model):
    runs = standard_runs()
    with_adapter = adapter_run(tiny_model)
    app = TunedeckApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await _open(pilot)
        await _select(pilot, runs["stopped"].id)
        await pilot.press("enter")
        assert app.current_mode == "train" and app.project.run_id == runs["stopped"].id

        app.project = replace(app.project, run_id=runs["completed"].id)  # e.g. the Train screen moved on to another run
        screen = await _open(pilot)
        assert screen.query_one(RunsTable).current.id == runs["completed"].id  # back here, the cursor follows
        await _select(pilot, runs["failed"].id)  # no adapter, no checkpoint: nothing to chat with
        await pilot.press("c")
        assert app.current_mode == "runs"
        assert any("nothing to chat with" in n.message for n in app._notifications)

        await _select(pilot, with_adapter.id)
        await pilot.press("c")
        assert app.current_mode == "chat" and app.project.run_id == with_adapter.id


async def test_delete_asks_first_and_removes_only_the_run_folder(tmp_path, live_pid):
    data = tmp_path / "tickets.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    mine = make_run("20260101-140000-tickets-lora", "completed", step=5, max_steps=5, created=T0, started=T0,
                    ended=T0 + 30, data=str(data), model=str(tmp_path))
    alive = make_run("20260101-150000-demo-lora", "running", step=1, max_steps=9, created=T0 + 60,
                     started=T0 + 60, pid=live_pid)
    app = TunedeckApp()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot)
        await _select(pilot, mine.id)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        assert "not touched" in str(app.screen.query_one("#confirm-body").render())
        await pilot.press("n")
        assert app.screen is screen and mine.dir.exists()

        await pilot.press("d")
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not mine.dir.exists()
        assert data.read_text().startswith('{"messages"') and tmp_path.is_dir()  # the user's data is intact
        assert mine.id not in screen.query_one(RunsTable).order

        await _select(pilot, alive.id)  # a live run is not deleted, and no question is asked
        await pilot.press("d")
        assert app.screen is screen and alive.dir.exists()
        assert any("stop it" in n.message for n in app._notifications)


async def test_two_marked_runs_overlay_their_loss_curves():
    runs = standard_runs()
    app = TunedeckApp()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot)
        await _select(pilot, runs["completed"].id)
        await pilot.press("space")
        await _select(pilot, runs["stopped"].id)
        await pilot.press("space")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.query_one("#runs-tabs").active == "tab-compare"
        curves = screen.query_one(LossOverlay).curves
        assert [c.run_id for c in curves] == [runs["completed"].id, runs["stopped"].id]
        events = [e for e in runs["completed"].events() if e["type"] == "log"]
        assert curves[0].losses == tuple((e["step"], e["loss"]) for e in events)
        assert curves[0].eval_losses == ((25, 0.31), (50, 0.2113)) and len(curves[1].losses) == 30
        assert _cell(screen.query_one(RunsTable), runs["completed"].id, "mark") == "●"


async def test_evaluate_runs_in_the_background_and_shows_the_table(tiny_model):
    run = adapter_run(tiny_model)
    app = TunedeckApp()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot)
        screen.eval_limit = 4
        await _select(pilot, run.id)
        await pilot.press("e")
        assert screen.eval_running == run.id
        assert screen.query_one("#runs-tabs").active == "tab-eval"
        await pilot.press("down")  # the UI stays live while the helper process works
        await _until(pilot, lambda: screen.eval_running is None)
        table = screen.query_one(EvalTable)
        assert table.row_count == 4
        assert [str(table.get_row_at(i)[0]) for i in range(4)] == [
            "base, zero-shot", "base, few-shot", "base, retrieval few-shot", "fine-tuned"]
        saved = json.loads((run.dir / "eval.json").read_text())
        assert saved["scored"] == 4 and saved["structured"] is True
        assert str(screen.query_one("#eval-verdict").render()) == saved["verdict"]


async def test_export_from_the_screen_writes_the_adapter(tiny_model, tmp_path):
    run = adapter_run(tiny_model)
    app = TunedeckApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await _open(pilot)
        await _select(pilot, run.id)
        await pilot.press("x")
        assert isinstance(app.screen, ExportRunScreen)
        app.screen.query_one("#export-to").value = str(tmp_path / "out")
        await pilot.press("enter")
        await _until(pilot, lambda: any("Exported" == n.title for n in app._notifications))
        assert (tmp_path / "out" / "adapter_config.json").is_file()
        assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


# --- snapshots -----------------------------------------------------------------------------------

EVAL = {
    "run": "20260101-090000-demo-lora", "weights": "adapter", "split": "validation split", "scored": 60, "k": 3,
    "structured": True, "seconds": 212.0, "verdict": "Fine-tuning was worth it: 93% field accuracy against 61% "
    "for the best prompting alternative (retrieval few-shot), +32 points.",
    "rows": [
        {"label": "base, zero-shot", "exact_match": 0.0, "json_valid": 0.35, "field_accuracy": 0.22,
         "eval_loss": 1.912, "perplexity": 6.77, "prompt_tokens": 92.0},
        {"label": "base, few-shot", "exact_match": 0.1, "json_valid": 0.9, "field_accuracy": 0.55,
         "prompt_tokens": 388.5},
        {"label": "base, retrieval few-shot", "exact_match": 0.15, "json_valid": 0.95, "field_accuracy": 0.61,
         "prompt_tokens": 391.2},
        {"label": "fine-tuned", "exact_match": 0.6, "json_valid": 1.0, "field_accuracy": 0.93,
         "eval_loss": 0.211, "perplexity": 1.23, "prompt_tokens": 92.0},
    ],
}


GENERAL = {
    "n_prompts": 32, "passage_words": 343, "seconds": 4.2, "state": "format",
    "verdict": "The model now answers everything in the task's JSON format: 27 of 32 general prompts got such an "
               "answer (base model: 0); perplexity on general text x1.84 (12.1 → 22.3); replay: 0.1, fewer steps "
               "or a lower learning rate keep more of it.",
    "rows": [
        {"label": "base model", "perplexity": 12.1, "correct": 0.55, "n_correct": 11, "n_answerable": 20,
         "follows": 0.6, "n_follows": 17, "n_checked": 28, "mean_words": 14.5, "trained_format": 0.0},
        {"label": "fine-tuned", "perplexity": 22.3, "correct": 0.1, "n_correct": 2, "n_answerable": 20,
         "follows": 0.107, "n_follows": 3, "n_checked": 28, "mean_words": 9.0, "trained_format": 0.84},
    ],
}


async def test_evaluation_tab_shows_the_general_ability_probe_and_its_verdict():
    from tui.widgets.eval_table import ProbeTable

    runs = standard_runs()
    (runs["completed"].dir / "eval.json").write_text(json.dumps({**EVAL, "general": GENERAL}))
    (runs["stopped"].dir / "eval.json").write_text(json.dumps(EVAL))  # evaluated with --no-probe
    app = TunedeckApp()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await _open(pilot)
        await _select(pilot, runs["completed"].id)
        screen.query_one("#runs-tabs").active = "tab-eval"
        await pilot.pause()
        table = screen.query_one(ProbeTable)
        assert not table.has_class("-no-probe") and table.row_count == 2
        assert [str(table.get_row_at(i)[0]) for i in range(2)] == ["base model", "fine-tuned"]
        assert [str(c) for c in table.get_row_at(1)[1:]] == ["22.30", "10% (2/20)", "11% (3/28)", "9.0", "84%"]
        verdict = screen.query_one("#general-verdict")
        assert str(verdict.render()) == GENERAL["verdict"] and verdict.has_class("-dropped")
        assert "32 prompts, 343 words of text" in str(screen.query_one("#general-caption").render())
        await _select(pilot, runs["stopped"].id)
        assert table.has_class("-no-probe") and screen.query_one("#general-verdict").has_class("-no-probe")


@pytest.fixture
def fixed_home(monkeypatch, tmp_path):
    """Same paths and clock zone on every machine, so the pictures are the same."""
    import shutil

    home = tmp_path.parent / "tunedeck-runs-snapshot"
    shutil.rmtree(home, ignore_errors=True)
    monkeypatch.setenv("TUNEDECK_HOME", str(home))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield home
    monkeypatch.undo()
    time.tzset()
    shutil.rmtree(home, ignore_errors=True)


def test_snapshot_evaluation_80x24(snap_compare, fixed_home):
    runs = standard_runs()
    (runs["completed"].dir / "eval.json").write_text(json.dumps(EVAL))

    async def evaluation(pilot):
        screen = await _open(pilot)
        await _select(pilot, runs["completed"].id)
        screen.query_one("#runs-tabs").active = "tab-eval"
        await pilot.pause()

    assert snap_compare(TunedeckApp(), terminal_size=(80, 24), run_before=evaluation)


def test_snapshot_compare_160x48(snap_compare, fixed_home):
    runs = standard_runs()

    async def compare(pilot):
        await _open(pilot)
        await _select(pilot, runs["completed"].id)
        await pilot.press("space")
        await _select(pilot, runs["stopped"].id)
        await pilot.press("space")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(TunedeckApp(), terminal_size=(160, 48), run_before=compare)


def test_duration_adds_up_the_training_segments_of_a_resumed_run():
    from tui.widgets.runs_table import TrainingTime

    run = make_run("20260101-160000-demo-lora", "completed", step=20, max_steps=20, created=T0, started=T0,
                   ended=None, losses=[(5, 1.0), (10, 0.9)])  # first segment: crashed a minute in
    run.events_path.write_text("")  # write the log by hand, as a crash and a resume leave it
    for event in ({"time": T0, "type": "start", "step": 0}, {"time": T0 + 100, "type": "log", "step": 10},
                  {"time": T0 + 500, "type": "start", "step": 10}, {"time": T0 + 560, "type": "log", "step": 20}):
        run.append_event(event)
    clock = TrainingTime()
    assert clock.seconds(run, now=T0 + 600) == pytest.approx(100 + 100)  # alive: the open segment runs to now
    run.append_event({"time": T0 + 580, "type": "end", "step": 20, "state": "completed"})
    assert clock.seconds(run, now=None) == pytest.approx(100 + 80)  # read incrementally: only the new line
    run.events_path.write_text("")  # a replaced log starts over
    run.append_event({"time": T0, "type": "start", "step": 0})
    run.append_event({"time": T0 + 30, "type": "end", "step": 3, "state": "stopped"})
    assert clock.seconds(run, now=None) == pytest.approx(30)
