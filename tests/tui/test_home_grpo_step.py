"""Home's GRPO step (issue 19): "Teach with a checker" sets the project to the demo's ticket prompts
(demo-prompts: prompts only, each after one worked example) with the settings of the demo's GRPO config
(json_valid + json_keys), and opens the Data screen on its Rewards tab, the prompts read as GRPO's data;
the Train form then holds a GRPO run that validates. At 80x24; nothing faked."""

from __future__ import annotations

from textual.widgets import Input

from engine import demo
from engine.config import RunConfig
from tui.app import TunedeckApp
from tui.widgets.config_form import ConfigForm
from tui.widgets.rewards_view import RewardsView
from waiting import until


async def test_home_starts_grpo_on_the_demo_prompts_from_the_rewards_tab():
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        steps = app.screen.query_one("#steps")
        assert steps.option_count == 6  # no SFT run: the five steps and GRPO, not DPO
        option = steps.get_option("grpo")
        assert "Teach with a checker" in str(option.prompt) and "GRPO on ticket prompts" in str(option.prompt)
        assert steps.region.bottom <= 23  # the whole list fits above the footer at 80x24

        assert app.focused is steps  # the list has the keys from the start: no Tab or click first
        await pilot.press("end", "enter")
        await pilot.pause()
        project = app.project
        assert project.data == demo.DEMO_PROMPTS and project.model == "demo" and project.method == "lora"
        settings = project.settings
        assert settings["objective"] == "grpo" and [r["name"] for r in settings["rewards"]] == ["json_valid", "json_keys"]
        screen = app.screen
        assert app.current_mode == "data"
        await until(pilot, lambda: screen.source is not None and screen.report is not None, 60, "the prompts read")
        assert screen.refusal is None and screen.objective == "grpo"
        assert screen.report["valid_rows"] == demo.count_lines(demo.data_file(demo.DEMO_PROMPTS))
        assert "for GRPO" in str(screen.query_one("#data-summary").render())
        assert screen.query_one("#data-tabs").active == "rewards"
        box = screen.query_one(RewardsView).query_one("#rewards-input", Input)
        assert box.value.startswith("json_valid, json_keys:category|priority|product")

        await pilot.press("3")  # Train: the demo's GRPO run, ready to start
        await pilot.pause()
        cfg = RunConfig.from_dict(app.screen.query_one(ConfigForm).values())
        assert cfg.is_grpo and cfg.data == demo.DEMO_PROMPTS and cfg.keep == "last"
        assert (cfg.num_generations, cfg.batch_size, cfg.max_completion_length, cfg.temperature) == (4, 8, 64, 0.7)
