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


async def test_number_keys_and_clicks_move_between_areas():
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.current_mode == "home"
        await pilot.press("1")
        assert app.current_mode == "data"
        await pilot.press("0")
        assert app.current_mode == "home"
        await pilot.click("#nav-runs")
        assert app.current_mode == "runs"
        await pilot.press("0")
        await pilot.click("#step-method")
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
