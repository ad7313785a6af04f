"""The Data screen on preference data (a DPO or KTO project): both sides of a pair in the Tokens tab,
the prompt/chosen/rejected token lengths in the statistics, and the good/bad balance of KTO labels."""

from pathlib import Path

from tui.app import TunedeckApp
from tui.project import Project
from tui.widgets.token_view import TokenView
from tui.widgets.row_table import RowTable
from waiting import until as wait_for

FIX = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "data"


def text_of(widget) -> str:
    return str(widget.render())


def app_for(data: Path, model, objective: str, **settings) -> TunedeckApp:
    app = TunedeckApp(data=str(data), model=str(model))
    app.set_reactive(TunedeckApp.project, Project(model=str(model), data=str(data),
                                                  settings={"objective": objective, **settings}))
    return app


async def open_data_screen(pilot, app):
    await pilot.press("1")
    await wait_for(pilot, lambda: app.current_mode == "data" and app.screen.source is not None, what="the file to open")
    return app.screen


async def test_a_pair_shows_chosen_and_rejected_tokens_and_their_lengths(tiny_model):
    app = app_for(FIX / "preference.jsonl", tiny_model, "dpo", max_prompt_length=10)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_data_screen(pilot, app)
        assert screen.objective == "dpo" and screen.refusal is None
        table = screen.query_one(RowTable)
        await wait_for(pilot, lambda: table.row(0) is not None, what="rows")
        assert table.row(0).ok
        await pilot.press("t")
        view = screen.query_one(TokenView)
        await wait_for(pilot, lambda: view.rendered is not None and view.rendered.get("kind") == "pair",
                       what="the pair's render")
        shown = text_of(view)
        assert "CHOSEN" in shown and "REJECTED" in shown and shown.index("CHOSEN") < shown.index("REJECTED")
        chosen, rejected = view.rendered["chosen"], view.rendered["rejected"]
        assert "Friday" in "".join(chosen["tokens"]) and "Dunno" in "".join(rejected["tokens"])
        assert any(chosen["trained"]) and not all(chosen["trained"])  # the answer trained, the prompt not
        # the prompt is longer than max_prompt_length 10: it keeps its last tokens, and the view says so
        assert chosen["truncated"] and "✂ cut" in shown
        await wait_for(pilot, lambda: screen.stats is not None, what="token statistics")
        pref = screen.stats["preference"]
        assert pref["pairs"] == 2 and pref["max_prompt_length"] == 10
        stats = text_of(screen.query_one("#data-stats-text"))
        assert "2 pairs" in stats
        for part in ("prompt", "chosen", "rejected"):
            P = pref[part]
            assert f"{part} tokens:" in stats and f"max {P['max']}" in stats
        assert "max_prompt_length 10" in stats and "prompts are longer than max_prompt_length 10" in stats
        assert "2 pairs" in text_of(screen.query_one("#data-summary"))


async def test_kto_labels_show_their_balance(tiny_model):
    app = app_for(FIX / "kto.jsonl", tiny_model, "kto")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_data_screen(pilot, app)
        assert screen.refusal is None
        await pilot.press("t")
        view = screen.query_one(TokenView)
        await wait_for(pilot, lambda: view.rendered is not None and view.rendered.get("kind") == "labelled",
                       what="the labelled answer's render")
        assert "ANSWER · labelled good" in text_of(view)
        await wait_for(pilot, lambda: screen.stats is not None, what="token statistics")
        assert screen.stats["preference"]["labelled"] == {"good": 1, "bad": 1}
        stats = text_of(screen.query_one("#data-stats-text"))
        assert "1 good" in stats and "1 bad" in stats and "50% good" in stats
        assert "prompt tokens:" in stats and "answer tokens:" in stats
        assert "1 good / 1 bad" in text_of(screen.query_one("#data-summary"))
