import subprocess
import sys

from tui.app import TunedeckApp

HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes")


def test_tui_imports_no_ml_library():
    code = (
        "import sys, tui.app, engine.cli; "
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_start_up_imports_only_the_home_screen():
    """The first frame needs Home alone; the other areas' screens (and their widgets) are imported when
    first shown: importing them all took about a third of the start-up time."""
    code = (
        "import sys, tui.app, engine.cli; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('tui.screens.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert set(out.stdout.split()) <= {"tui.screens.base", "tui.screens.help"}


async def test_number_keys_and_clicks_move_between_areas():
    app = TunedeckApp()
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.current_mode == "home"
        await pilot.press("1")
        assert app.current_mode == "data"
        await pilot.press("0")
        assert app.current_mode == "home"
        await pilot.click("#nav-runs")
        assert app.current_mode == "runs"
        await pilot.press("0")
        await pilot.click("#steps", offset=(10, 2))
        assert app.current_mode == "method"


async def test_home_shows_the_demo_project():
    app = TunedeckApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = str(app.screen.query_one("#project-data").render())
        assert "340 train / 60 validation" in text
        assert "SmolLM2-135M-Instruct" in str(app.screen.query_one("#project-model").render())


async def test_theme_choice_is_remembered():
    app = TunedeckApp()
    async with app.run_test() as pilot:
        app.theme = "tunedeck-light"
        await pilot.pause()
    again = TunedeckApp()
    async with again.run_test():
        assert again.theme == "tunedeck-light"


async def test_help_lists_keys_and_glossary():
    app = TunedeckApp()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("question_mark")
        from tui.screens.help import HelpScreen

        assert isinstance(app.screen, HelpScreen)
        svg = app.export_screenshot()
        assert "adapter" in svg and "Quit" in svg and "Glossary" in svg
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_a_project_whose_data_is_a_mix_opens_every_area(tmp_path):
    from dataclasses import replace

    from engine import demo

    mix = [{"path": str(demo.train_file()), "weight": 3}, {"path": str(demo.validation_file()), "weight": 1}]
    app = TunedeckApp()
    async with app.run_test(size=(120, 40)) as pilot:
        app.project = replace(app.project, data=mix)
        for key in ("0", "2", "3", "0"):  # Home, Method, Train: each shows the mix, none crashes
            await pilot.press(key)
            await pilot.pause(0.3)
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = str(app.screen.query_one("#project-data").render())
        assert "demo-train.jsonl + " in text and "demo-validation.jsonl" in text
        assert app.project.data == mix  # the mix stays a mix
