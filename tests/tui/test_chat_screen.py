"""The Chat screen driven by Pilot, with a real chat process (engine/chat.py) and a real adapter from
a worker run of the tiny model (tests/chat_runs.py)."""

from __future__ import annotations

import asyncio

import pytest

from chat_runs import make_run, shared_trained_run
from tui.app import TunedeckApp
from tui.screens.chat import ChatScreen
from tui.widgets.chat_pane import Answer, ChatPane, CopyLink
from waiting import until as _until

PROMPT = "My order A123 never arrived"


@pytest.fixture(scope="module")
def tiny_trained(tiny_model, tmp_path_factory):
    return shared_trained_run(tiny_model, tmp_path_factory)


async def _open_chat(pilot) -> ChatScreen:
    await pilot.press("4")
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    return screen


async def _ask(pilot, screen: ChatScreen, text: str):
    before = sum(len(_answers(p)) for p in screen.panes.values())
    screen.query_one("#chat-input").focus()
    await pilot.press(*text, "enter")
    await _until(pilot, lambda: sum(len(_answers(p)) for p in screen.panes.values()) > before, 10,
                 "the answer to start")
    await _until(pilot, lambda: not screen.generating and all(a.finished for p in screen.panes.values()
                                                              for a in _answers(p)), what="the answer to end")
    await pilot.pause(0.2)


def _answers(pane: ChatPane) -> list[Answer]:
    return list(pane.query(Answer))


def _status(screen) -> str:
    return str(screen.query_one("#chat-status").render())


async def test_chat_with_the_latest_run_compare_copy_and_clear(tiny_trained):
    older = make_run(tiny_trained)
    run = make_run(tiny_trained)
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_chat(pilot)
        await _until(pilot, lambda: screen.loaded is not None, what="the run to load")
        assert screen.loaded["run"] == run.id != older.id  # the latest completed run by default
        assert str(screen.query_one("#chat-run").value) == run.id
        status = _status(screen)
        assert "+ adapter" in status and "run's template" in status and "training system prompt" in status
        tuned, base = screen.panes["tuned"], screen.panes["base"]
        assert tuned.display and not base.display

        await _ask(pilot, screen, PROMPT)
        (answer,) = _answers(tuned)
        assert answer.text.startswith("{")  # the adapter learned the JSON format
        figures = str(answer.query_one(".answer-figures").render())
        assert "tok/s" in figures
        assert answer.markdown.source == answer.text
        assert "tok/s" in _status(screen)

        await pilot.press("ctrl+t")  # compare: both panes, same prompt, each its own history
        assert screen.mode == "compare" and tuned.display and base.display
        await _ask(pilot, screen, "Where is my refund?")
        assert len(_answers(tuned)) == 2 and len(_answers(base)) == 1
        assert [m["role"] for m in tuned.history] == ["user", "assistant"] * 2
        assert [m["role"] for m in base.history] == ["user", "assistant"]
        assert _answers(base)[0].text and _answers(tuned)[1].text

        await pilot.press("ctrl+l")  # a fresh start in both panes
        await pilot.pause()
        assert _answers(tuned) == [] and _answers(base) == [] and tuned.history == [] == base.history
        await _ask(pilot, screen, PROMPT)
        # two models side by side: the adapter answers the ticket in its JSON, the base model does not
        assert _answers(tuned)[0].text.startswith("{") and not _answers(base)[0].text.startswith("{")

        await pilot.press("ctrl+y")
        assert app.clipboard == _answers(tuned)[0].text
        link = _answers(base)[0].query_one(CopyLink)
        assert not link.has_class("-hidden")
        link.on_click()
        await pilot.pause()
        assert app.clipboard == _answers(base)[0].text

        await pilot.press("ctrl+l")
        await pilot.pause()
        assert _answers(tuned) == [] and _answers(base) == [] and tuned.history == [] == base.history


async def test_escape_stops_an_answer_and_ctrl_r_restarts_a_killed_process(tiny_trained):
    make_run(tiny_trained)
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_chat(pilot)
        await _until(pilot, lambda: screen.loaded is not None, what="the run to load")
        screen.settings.update(max_new_tokens=1500, min_new_tokens=1500)
        screen.query_one("#chat-input").focus()
        await pilot.press(*PROMPT, "enter")
        await _until(pilot, lambda: _answers(screen.panes["tuned"]) and _answers(screen.panes["tuned"])[0].text,
                     what="the first tokens")
        await pilot.press("escape")
        await _until(pilot, lambda: not screen.generating, 60, "the stop")
        await pilot.pause(0.2)
        (answer,) = _answers(screen.panes["tuned"])
        assert "stopped" in str(answer.query_one(".answer-figures").render())

        first_pid = screen.client.pid
        screen.client.kill()
        await _until(pilot, lambda: "The chat process was killed" in _status(screen) or screen.loaded is None,
                     30, "the crash to show")
        await pilot.press("ctrl+r")
        await _until(pilot, lambda: screen.loaded is not None, what="the restart")
        assert screen.client.pid != first_pid
        screen.settings.update(max_new_tokens=4, min_new_tokens=0)
        await _ask(pilot, screen, "again")
        assert len(_answers(screen.panes["tuned"])) == 2


async def test_without_runs_the_screen_says_so_and_offers_the_base_model(tiny_model):
    app = TunedeckApp(model=str(tiny_model))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_chat(pilot)
        await _until(pilot, lambda: not screen.query_one("#chat-empty").has_class("-hidden"), 30, "the offer")
        text = str(screen.query_one("#chat-empty-text").render())
        assert "no fine-tuned run yet" in text and "base model" in text
        assert screen.client.proc is None  # nothing is loaded until asked
        await pilot.click("#chat-base-button")
        await _until(pilot, lambda: screen.loaded is not None, what="the base model to load")
        assert screen.loaded["run"] is None and screen.mode == "base"
        assert screen.query_one("#chat-mode").disabled
        assert screen.panes["base"].display and not screen.panes["tuned"].display
        screen.settings.update(max_new_tokens=6)
        await _ask(pilot, screen, "Hello")
        (answer,) = _answers(screen.panes["base"])
        assert answer.finished and "tok/s" in str(answer.query_one(".answer-figures").render())


def test_snapshot_no_runs_80x24(snap_compare, tiny_model):
    async def settle(pilot):
        await pilot.press("4")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await asyncio.sleep(0.1)

    assert snap_compare(TunedeckApp(model=str(tiny_model)), terminal_size=(80, 24), run_before=settle)


async def test_a_run_picked_in_runs_replaces_the_one_already_open_in_chat(tiny_trained):
    from tui.widgets.runs_table import RunsTable

    older = make_run(tiny_trained)
    latest = make_run(tiny_trained)
    app = TunedeckApp()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open_chat(pilot)
        await _until(pilot, lambda: screen.loaded is not None, what="the latest run to load")
        assert screen.loaded["run"] == latest.id

        await app.switch_mode("runs")  # (the prompt has the focus: 5 would be typed into it)
        await pilot.pause()
        table = app.screen.query_one(RunsTable)
        await _until(pilot, lambda: older.id in table.order, 20, "the runs table")
        table.move_cursor(row=table.order.index(older.id), animate=False)
        await pilot.pause()
        await pilot.press("c")
        assert app.screen is screen
        await _until(pilot, lambda: screen.loaded is not None and screen.loaded["run"] == older.id, 60,
                     "the picked run to load")
        assert str(screen.query_one("#chat-run").value) == older.id
