"""The Data screen, driven like a user would: real files, real child processes."""

import json
from pathlib import Path

import pytest

from tui.app import TunedeckApp
from tui.widgets.conversation_view import ConversationView
from tui.widgets.length_histogram import LengthHistogram
from tui.widgets.row_table import RowTable
from tui.widgets.token_view import TokenView
from waiting import until as wait_for

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def text_of(widget) -> str:
    return str(widget.render())


async def open_data_screen(pilot, app):
    await pilot.press("1")
    await wait_for(pilot, lambda: app.current_mode == "data" and app.screen.source is not None, what="the file to open")
    return app.screen


async def test_opens_the_demo_with_format_counts_and_rows(tiny_model):
    app = TunedeckApp(model=str(tiny_model))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_data_screen(pilot, app)
        table = screen.query_one(RowTable)
        await wait_for(pilot, lambda: table.row(0) is not None, what="first rows")
        assert table.row(0).ok and table.row(0).text.startswith("Hi, I'd like a refund for the Juniper Yoga Mat")
        await wait_for(pilot, lambda: screen.report is not None, what="the row check")
        summary = text_of(screen.query_one("#data-summary"))
        assert "messages" in summary and "340 rows" in summary and "no bad rows" in summary
        assert table.row_count == 340
        await wait_for(pilot, lambda: screen.stats is not None, what="token statistics")
        assert screen.stats["examples"] == 340
        assert sum(screen.query_one(LengthHistogram).counts) == 340


async def test_bad_rows_are_listed_and_selecting_one_jumps_to_it(tiny_model):
    app = TunedeckApp(data=str(FIX / "bad_rows.jsonl"), model=str(tiny_model))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_data_screen(pilot, app)
        await wait_for(pilot, lambda: screen.report is not None, what="the row check")
        assert screen.report["bad_rows"] == 11
        assert "Problems (11)" in str(screen.query_one("#data-tabs").get_tab("problems").label)
        await pilot.press("p")
        problems = screen.query_one("#data-problems")
        problems.focus()
        # the 9th problem is line 10, the alpaca row (row 9: the blank line 7 is not a row)
        for _ in range(8):
            await pilot.press("down")
        await pilot.press("enter")
        table = screen.query_one(RowTable)
        await wait_for(pilot, lambda: table.cursor == 8, what="the jump")
        assert table.has_focus
        await pilot.press("c")
        view = screen.query_one(ConversationView)
        await wait_for(pilot, lambda: "line 10" in text_of(view), what="the row's conversation view")
        assert "is alpaca but the file is messages" in text_of(view)
        # n goes to the next bad row: line 11
        await pilot.press("n")
        assert table.cursor == 9
        await wait_for(pilot, lambda: table.row(9) is not None, what="row 10")
        assert not table.row(9).ok and "match no format" in table.row(9).text


async def test_tokens_tab_shows_the_training_mask(tiny_model):
    from engine import models
    from engine.data import load_examples
    from engine.data.encode import encode

    app = TunedeckApp(data=str(FIX / "messages.jsonl"), model=str(tiny_model))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_data_screen(pilot, app)
        table = screen.query_one(RowTable)
        await wait_for(pilot, lambda: table.row(2) is not None, what="rows")
        table.focus()
        await pilot.press("down", "down", "t")
        view = screen.query_one(TokenView)
        await wait_for(pilot, lambda: view.rendered is not None and view.rendered.get("length") and table.cursor == 2
                       and "C3003" in view.rendered["text"], what="the token render")
        tok = models.load_tokenizer(str(tiny_model))
        expected = encode(tok, load_examples(str(FIX / "messages.jsonl"))[2], 1024, with_pieces=True)
        assert view.rendered["trained"] == expected.trained and view.rendered["tokens"] == expected.pieces
        # a shorter max length cuts the example, and the view says so
        screen.query_one("#data-max-length").focus()
        await pilot.press("home", "ctrl+k", *"20", "enter")
        await wait_for(pilot, lambda: view.rendered is not None and view.rendered["max_length"] == 20, what="re-render")
        assert view.rendered["truncated"] and len(view.rendered["tokens"]) == 20
        assert "cut at max length 20" in text_of(view)
        assert app.project.settings["max_length"] == 20


async def test_typing_a_path_opens_it_and_a_bad_path_says_why(tiny_model, tmp_path):
    app = TunedeckApp(model=str(tiny_model))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_data_screen(pilot, app)
        await pilot.press("f")
        await pilot.press("home", "ctrl+k", *str(FIX / "alp"))
        path_input = screen.query_one("#data-path")
        await wait_for(pilot, lambda: path_input._suggestion == str(FIX / "alpaca.csv"), what="completion")
        await pilot.press("right", "enter")
        await wait_for(pilot, lambda: screen.report is not None and screen.ref == str(FIX / "alpaca.csv"), what="alpaca.csv")
        assert screen.report["format"] == "alpaca" and app.project.data == str(FIX / "alpaca.csv")
        await pilot.press("f", "home", "ctrl+k", *str(FIX / "binary.jsonl"), "enter")
        await wait_for(pilot, lambda: "not a text file" in text_of(screen.query_one("#data-summary")), what="the error")
        assert app.project.data == str(FIX / "alpaca.csv")  # a file that cannot be opened is not taken


async def test_a_big_file_scrolls_without_loading_every_row(tiny_model, tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for i in range(200_000):
            f.write(json.dumps({"text": f"example number {i}"}) + "\n")
    app = TunedeckApp(data=str(path), model=str(tiny_model))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_data_screen(pilot, app)
        table = screen.query_one(RowTable)
        await wait_for(pilot, lambda: table.row(0) is not None, what="first rows")
        await wait_for(pilot, lambda: table.row_count == 200_000, timeout=60, what="the index")
        table.focus()
        await pilot.press("end")
        await wait_for(pilot, lambda: table.row(199_999) is not None, what="the last row")
        assert table.row(199_999).where == 200_000 and table.row(199_999).text == "example number 199999"
        assert len(table._rows) < 1000  # only rows near the viewports were read
        await pilot.press("home", "pagedown")
        assert table.cursor > 0


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_snapshot_of_the_demo(snap_compare, demo_model_dir, size):
    async def settle(pilot):
        await pilot.press("1")
        screen = pilot.app.screen
        await wait_for(pilot, lambda: getattr(screen, "stats", None) is not None and screen.report is not None
                       and screen.query_one(TokenView).rendered is not None, timeout=120, what="the demo screen")
        await pilot.press("l")
        await pilot.pause(0.3)

    assert snap_compare(TunedeckApp(), terminal_size=size, run_before=settle)


def test_histogram_rebins_to_its_width_and_places_the_cut():
    hist = LengthHistogram()
    hist.set_data({"edges": [0, 100, 200, 300, 400], "counts": [1, 2, 3, 4]}, 200)
    assert hist.columns(2) == [3, 7]  # merged
    assert hist.columns(8) == [1, 1, 2, 2, 3, 3, 4, 4]  # spread
    assert hist.cut_column(8) == 4 and hist.cut_column(40) == 20


def test_a_new_job_under_the_same_key_stops_the_old_one(tmp_path):
    from engine.ipc import ChildJobs

    path = tmp_path / "long.jsonl"
    with open(path, "w") as f:
        for i in range(300_000):
            f.write(json.dumps({"text": f"row {i}"}) + "\n")
    jobs = ChildJobs()
    first = jobs.stream("inspect", ["data", "inspect", str(path), "--progress"])
    assert next(first)["event"] == "progress"  # running
    second = list(jobs.stream("inspect", ["data", "inspect", str(FIX / "text.jsonl"), "--progress"]))
    assert second[-1]["event"] == "report" and second[-1]["rows"] == 3
    assert [e for e in first if e.get("event") == "report"] == []  # stopped, no error, no report
