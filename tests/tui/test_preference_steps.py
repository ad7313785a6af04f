"""Preference tuning in the app: the objective in the Train form (its defaults follow it), and Home's
optional second step after an SFT run on the demo — DPO on the demo pairs, starting from that run.

Run folders are written as the engine writes them (tests/run_folders.py); nothing is faked.
"""

from __future__ import annotations

from engine import demo
from engine.config import RunConfig
from run_folders import T0, finished_sft_run
from tui.app import TunedeckApp
from tui.screens.train import TrainScreen
from tui.widgets.config_form import ConfigForm
from waiting import until


def text(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def test_the_objective_is_chosen_in_the_form_and_the_defaults_follow_it():
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TrainScreen) and screen.pane == "setup"
        form = screen.query_one(ConfigForm)
        objective, method = screen.query_one("#field-objective"), screen.query_one("#field-method")
        rate = screen.query_one("#field-learning-rate")
        assert objective.value == "sft" and rate.value == "0.0002"
        assert not screen.query_one("#row-field-beta").display  # beta is for DPO/KTO only

        objective.value = "dpo"
        await pilot.pause()
        assert rate.value == "5e-05"  # the DPO default for LoRA (Field.default_for)
        assert screen.query_one("#row-field-beta").display and screen.query_one("#field-beta").value == "0.1"
        assert text(screen, "#config-error").startswith("✔ Ready: DPO with lora on demo")
        cfg = RunConfig.from_dict(form.values())
        assert cfg.objective == "dpo" and cfg.learning_rate == 5e-5 and cfg.beta == 0.1

        method.value = "full"
        await pilot.pause()
        assert rate.value == "5e-07" and form.values()["save_steps"] == 100  # full's defaults, shown or not
        rate.value = "1e-06"  # typed: it stays whatever the objective
        objective.value = "kto"
        await pilot.pause()
        assert rate.value == "1e-06"
        assert RunConfig.from_dict(form.values()).objective == "kto"
        objective.value = "sft"
        method.value = "lora"
        await pilot.pause()
        assert rate.value == "1e-06" and not screen.query_one("#row-field-beta").display
        assert text(screen, "#config-error").startswith("✔ Ready: lora on demo")

        # 80x24: the form scrolls, and the field in focus is brought into view
        pane = screen.setup
        assert pane.virtual_size.height > pane.size.height
        for selector in ("#field-lora-targets", "#field-objective", "#start"):
            screen.query_one(selector).focus()
            await pilot.pause()
            widget = screen.query_one(selector)
            assert pane.region.contains_region(widget.region), selector


async def test_home_offers_dpo_on_the_demo_pairs_after_an_sft_run_on_the_demo():
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen.query_one("#steps").option_count == 6  # the five steps and GRPO; no SFT run yet: no DPO

    sft = finished_sft_run("20260101-090000-demo-lora")
    finished_sft_run("20260101-100000-demo-lora", objective="dpo", created=T0 + 3600)  # not SFT
    finished_sft_run("20260101-110000-demo-lora", data="other.jsonl", created=T0 + 7200)  # not the demo's data
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        home = app.screen
        await until(pilot, lambda: home.query_one("#steps").option_count == 7, 20, "the second step offered")
        option = home.query_one("#steps").get_option("preference")
        assert "Teach it preferences" in str(option.prompt) and "DPO on the demo pairs" in str(option.prompt)
        assert home.preference_step.run_id == sft.id

        home.query_one("#steps").focus()
        await pilot.press("end", "enter")
        await pilot.pause()
        project = app.project
        assert project.data == demo.DEMO_PREFERENCE and project.model == "demo" and project.method == "lora"
        assert project.settings["objective"] == "dpo" and project.settings["init_from"] == sft.id
        screen = app.screen
        assert isinstance(screen, TrainScreen) and screen.pane == "setup"
        assert screen.query_one("#field-objective").value == "dpo"
        assert screen.query_one("#field-data").value == demo.DEMO_PREFERENCE
        assert screen.query_one("#field-learning-rate").value == "5e-05"
        assert text(screen, "#config-error").startswith(f"✔ Ready: DPO with lora from run {sft.id} on demo")
        cfg = RunConfig.from_dict(screen.query_one(ConfigForm).values())
        assert cfg.init_from == sft.id and cfg.data == demo.DEMO_PREFERENCE and cfg.is_preference
        # full fine-tuning cannot start from an adapter: the run is put aside meanwhile, not an error
        screen.query_one("#field-method").value = "full"
        await pilot.pause()
        assert text(screen, "#config-error").startswith("✔ Ready: DPO with full on demo")
        screen.query_one("#field-method").value = "lora"
        await pilot.pause()
        assert text(screen, "#config-error").startswith(f"✔ Ready: DPO with lora from run {sft.id}")
