"""The Data screen, driven like a user would: real files, real child processes."""

import json
from pathlib import Path

import pytest

import tui.app
from tui.app import TunedeckApp
from tui.widgets.conversation_view import ConversationView
from tui.widgets.length_histogram import LengthHistogram
from tui.widgets.mix_bar import MixBar
from tui.widgets.row_table import RowTable
from tui.widgets.token_view import TokenView
from waiting import until as wait_for

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "data"
REL = FIX.relative_to(ROOT)  # snapshots show paths: relative ones, the same on every machine


@pytest.fixture(scope="module")
def tool_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with a chat template that renders tools the way Qwen2.5's does."""
    from tiny_model import build_tool_model

    return build_tool_model(tiny_model, tmp_path_factory.mktemp("models") / "tiny-tool")


class DataFirst(TunedeckApp):
    """The app opened on the Data area (a run config's data, a list of sources, shown there)."""

    DEFAULT_MODE = "data"
    CSS_PATH = str(Path(tui.app.__file__).parent / "app.tcss")


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


# --- data as people bring it (issue 14) ------------------------------------------------------------


def trained_at(rendered: dict, needle: str, after: str = "") -> list[int]:
    """The mask of the characters of ``needle`` (its first occurrence after ``after``) in the render."""
    text = rendered["text"]
    assert "".join(rendered["tokens"]) == text
    start = text.index(needle, text.index(after) if after else 0)
    mask, at = [], 0
    for piece, trained in zip(rendered["tokens"], rendered["trained"]):
        mask += [trained] * len(piece)
        at += len(piece)
    return mask[start:start + len(needle)]


async def test_a_tool_calling_file_shows_its_tools_calls_results_and_mask(tool_model):
    app = TunedeckApp(data=str(FIX / "tools_openai.jsonl"), model=str(tool_model))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_data_screen(pilot, app)
        await wait_for(pilot, lambda: screen.report is not None, what="the row check")
        summary = text_of(screen.query_one("#data-summary"))
        assert "OpenAI messages with tools" in summary and "3 with tools" in summary and "no bad rows" in summary
        view = screen.query_one(ConversationView)
        await wait_for(pilot, lambda: "row 1" in text_of(view), what="the first row")
        shown = text_of(view)
        assert "TOOLS  2 declared" in shown
        assert "get_order_status(order_id)  The shipping status of an order." in shown
        assert "refund_order(order_id, reason?)  Refund an order in full." in shown
        assert '→ get_order_status(order_id="A1001")' in shown
        assert 'TOOL RESULT  of get_order_status  not trained\n{"status": "shipped", "eta": "Friday"}' in shown
        assert shown.count("ASSISTANT  trained") == 2

        # the second row: two calls, two results, each result under the call it answers
        table = screen.query_one(RowTable)
        table.focus()
        await pilot.press("down")
        await wait_for(pilot, lambda: "row 2" in text_of(view), what="the second row")
        shown = text_of(view)
        assert '→ refund_order(order_id="B2002")\n→ get_order_status(order_id="C3003")' in shown
        assert shown.index("of refund_order") < shown.index("of get_order_status  not trained")

        # Tokens: the engine's mask, the calls trained and the results not
        await pilot.press("up", "t")
        tokens = screen.query_one(TokenView)
        await wait_for(pilot, lambda: tokens.rendered is not None and "A1001" in tokens.rendered["text"]
                       and table.cursor == 0, what="the token render")
        rendered = tokens.rendered
        assert set(trained_at(rendered, '"name": "get_order_status", "arguments": {"order_id": "A1001"}',
                              after="<|im_start|>assistant")) == {1}
        assert set(trained_at(rendered, '{"status": "shipped", "eta": "Friday"}', after="<tool_response>")) == {0}
        assert set(trained_at(rendered, "Order A1001 has shipped and arrives Friday.")) == {1}
        assert set(trained_at(rendered, "Where is order A1001?")) == {0}
        legend = text_of(tokens)
        assert "prompt, tool results and template not trained" in legend and "2 tools declared · 1 call (trained)" in legend

        # the ShareGPT layout of the same thing (function_call / observation turns, a tools column)
        await pilot.press("f", "home", "ctrl+k", *str(FIX / "tools_sharegpt.json"), "enter")
        await wait_for(pilot, lambda: screen.report is not None and screen.ref.endswith("tools_sharegpt.json"),
                       what="the ShareGPT file")
        assert "ShareGPT with function calls" in text_of(screen.query_one("#data-summary"))
        await pilot.press("c")
        await wait_for(pilot, lambda: "record 1" in text_of(view), what="its first record")
        assert '→ get_order_status(order_id="D4004")' in text_of(view)
        assert "TOOL RESULT  of get_order_status  not trained" in text_of(view)


@pytest.mark.parametrize("name, says", [
    ("preference_messages.jsonl", "is preference data (a prompt with a chosen and a rejected answer): it is for "
                                  "preference tuning such as DPO"),
    ("kto.jsonl", "is labelled data (answers marked good or bad in a 'label' column, the KTO layout)"),
    ("multimodal_images.jsonl", "is multimodal data (an 'images' column)"),
])
async def test_a_refused_file_says_what_it_is_and_lists_its_rows(tiny_model, name, says):
    from engine.data.formats import DESCRIPTIONS, detect

    app = TunedeckApp(data=str(FIX / name), model=str(tiny_model))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_data_screen(pilot, app)
        await wait_for(pilot, lambda: screen.report is not None, what="the file's kind")
        kind = detect(json.loads((FIX / name).read_text().splitlines()[0]))
        assert screen.refusal[0] == kind
        banner = screen.query_one("#data-refusal")
        assert banner.display
        assert says in text_of(banner) and f"Not supervised fine-tuning data: {DESCRIPTIONS[kind]}" in text_of(banner)
        assert "not for fine-tuning" in text_of(screen.query_one("#data-summary"))
        table = screen.query_one(RowTable)
        await wait_for(pilot, lambda: table.row(0) is not None, what="the rows")
        assert table.row(0).text.startswith("{") and not table.row(0).ok  # the row as it is, not the sentence again
        view = screen.query_one(ConversationView)
        await wait_for(pilot, lambda: "row 1" in text_of(view), what="the row")
        assert "not trained" in text_of(view) and "Traceback" not in text_of(view)
        await pilot.press("t")
        assert "Nothing in this file is trained" in text_of(screen.query_one(TokenView))
        assert screen.stats is None and not screen._jobs._children  # nothing counted for a file not trained


async def test_special_token_text_is_a_warning_on_its_row_and_in_problems(tiny_model):
    app = TunedeckApp(data=str(FIX / "special_tokens.jsonl"), model=str(tiny_model))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_data_screen(pilot, app)
        await wait_for(pilot, lambda: screen.stats is not None and screen.report is not None, what="token statistics")
        table = screen.query_one(RowTable)
        assert set(table.warnings) == {1, 3} and "<|endoftext|> in message 2 (assistant)" in table.warnings[1]
        assert "2 with special-token text" in text_of(screen.query_one("#data-summary"))
        assert "Problems (2 warned)" in str(screen.query_one("#data-tabs").get_tab("problems").label)
        view = screen.query_one(ConversationView)
        await wait_for(pilot, lambda: "! message 2 (assistant) contains <|endoftext|>" in text_of(view),
                       what="the warning on the row shown")
        assert "it stays literal text" in text_of(view)
        await pilot.press("p")
        problems = screen.query_one("#data-problems")
        problems.focus()
        await pilot.press("down", "down", "enter")  # the second warning: line 3
        await wait_for(pilot, lambda: table.cursor == 2, what="the jump to line 3")
        await pilot.press("c")
        await wait_for(pilot, lambda: "contains <|im_end|>" in text_of(view), what="line 3's warning")


async def test_a_mix_of_sources_shows_each_source_and_its_share(tool_model):
    data = [{"path": str(FIX / "tools_openai.jsonl"), "weight": 3}, {"path": str(FIX / "messages.jsonl"), "weight": 1}]
    app = DataFirst(data=data, model=str(tool_model))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: getattr(screen, "mix", None) is not None and screen.report is not None,
                       what="the mix")
        assert [(m["taken"], m["examples"], m["share"]) for m in screen.mix] == [(3, 3, 0.75), (1, 5, 0.25)]
        bar = screen.query_one(MixBar)
        assert bar.display
        shown = text_of(bar)
        assert "tools_openai.jsonl 75% (3 of 3, weight 3)" in shown and "messages.jsonl 25% (1 of 5, weight 1)" in shown
        assert screen.ref == str(FIX / "tools_openai.jsonl") and screen.report["tool_rows"] == 3
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: screen.ref == str(FIX / "messages.jsonl") and screen.report is not None
                       and screen.query_one(RowTable).row(0) is not None, what="the second source")
        assert screen.report["rows"] == 5 and screen.current == 1
        assert app.project.data == data  # the mix stays the project's data
        await pilot.press("left_square_bracket")
        await wait_for(pilot, lambda: screen.current == 0 and screen.report is not None, what="back to the first")


def _settled(what):
    async def settle(pilot):
        await pilot.press("1")
        screen = pilot.app.screen
        await wait_for(pilot, lambda: what(screen), timeout=120, what="the data screen")
        await pilot.pause(0.3)

    return settle


def test_snapshot_of_a_tool_calling_file(snap_compare, tool_model, monkeypatch):
    monkeypatch.chdir(ROOT)
    app = TunedeckApp(data=str(REL / "tools_openai.jsonl"), model=str(tool_model))
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settled(
        lambda s: getattr(s, "stats", None) is not None and s.report is not None
        and s.query_one(TokenView).rendered is not None and not s._progress))


def test_snapshot_of_a_refused_file(snap_compare, monkeypatch):
    monkeypatch.chdir(ROOT)
    app = TunedeckApp(data=str(REL / "multimodal_images.jsonl"))  # its sentence is not objective-dependent
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settled(
        lambda s: getattr(s, "refusal", None) is not None and s.query_one(RowTable).row(0) is not None
        and not s._progress))
