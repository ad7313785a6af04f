"""GRPO in the app's steps (issue 19): the advisor recommends GRPO when answers can be checked but ideal
answers are scarce (and explains GRPO beside SFT, DPO and KTO); the Method wizard asks that question
and hands GRPO with the demo's rewards to Train; the Train form shows GRPO's settings only for GRPO and
a GRPO value never leaks into DPO. The only fake is NVML (no GPU here)."""

from __future__ import annotations

import pytest

from engine import advisor as A
from engine import gpu
from engine.config import RunConfig
from tui.app import TunedeckApp
from tui.screens.method import MethodScreen
from tui.screens.train import TrainScreen
from tui.widgets.config_form import ConfigForm
from waiting import until


@pytest.fixture
def no_gpu(monkeypatch):
    import pynvml

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 0)
    gpu.reset()
    yield
    gpu.reset()


def text(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


def test_the_advisor_recommends_grpo_when_answers_can_be_checked_but_ideal_answers_are_scarce():
    base = dict(problem="format", examples=20, data_format="messages", data_name="tickets.jsonl")
    rec = A.recommend(A.Answers(**base, checkable="yes", rewards=[{"name": "json_valid", "weight": 1.0}]))
    assert rec.method == "lora" and rec.objective == "grpo" and rec.headline.endswith("(GRPO)")
    assert any("a program can check an answer" in r and "needs prompts, not ideal answers" in r for r in rec.reasons)
    assert any("try the rewards" in w for w in rec.warnings) and not any("replay" in w for w in rec.warnings)
    assert [w.split()[0] for w in rec.objectives] == ["SFT", "DPO", "KTO", "GRPO"]
    cfg = RunConfig.from_dict({"method": rec.method, **rec.settings})  # what Train validates
    assert cfg.objective == "grpo" and cfg.batch_size % cfg.num_generations == 0 and cfg.keep == "last"
    assert cfg.rewards[0]["name"] == "json_valid"
    # no checker: too few examples to fine-tune, as before; enough ideal answers: SFT, and no question
    assert A.recommend(A.Answers(**base, checkable="no")).method == "prompting"
    assert not A.asks_checkable("format", 300) and not A.asks_checkable("style", 20)
    assert A.asks_checkable("task", 0) and not A.asks_checkable("knowledge", 0)
    # a file of prompts only: GRPO is what it trains, and the wizard asks what the examples are
    assert A.objective_for_data("prompt_only") == "grpo" and A.asks_feedback("format", "prompt_only")
    rec = A.recommend(A.Answers(problem="task", examples=300, feedback="grpo", data_format="prompt_only",
                                data_name="p.jsonl"))
    assert rec.objective == "grpo" and any("p.jsonl holds prompts without answers" in r for r in rec.reasons)
    assert any("Name the reward functions on Train" in w for w in rec.warnings)


async def test_the_wizard_asks_for_a_checker_and_hands_grpo_with_the_demos_rewards_to_train(no_gpu):
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, MethodScreen)
        await until(pilot, lambda: screen.example_count is not None, 60, "the demo's rows counted")
        await pilot.press("down", "enter")  # wrong format
        assert screen.question.key == "examples"
        await pilot.press("up", "enter")  # fewer than 50 ideal answers
        assert screen.question.key == "checkable"
        assert text(screen, "#q-title") == "Can a program check whether an answer is right?"
        assert "GRPO" in text(screen, "#q-terms")
        await pilot.press("enter")  # yes: a program can check it
        assert screen.answers["checkable"] == "yes" and screen.question.key == "knowledge_changes"
        for _ in range(4):
            await pilot.press("enter")
        await until(pilot, lambda: screen.recommendation is not None, 30, "the advice")
        rec = screen.recommendation
        assert rec.objective == "grpo" and "(GRPO)" in text(screen, "#rec-headline")
        assert screen.query_one("#rec-objectives").display and "GRPO learns from a checker" in " ".join(rec.objectives)
        assert "GRPO · 4 answers a prompt of up to 64 tokens" in text(screen, "#rec-settings")

        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, TrainScreen), 10, "Train")
        settings = app.project.settings
        assert settings["objective"] == "grpo" and settings["rewards"][0]["name"] == "json_valid"
        assert settings["rewards"][1]["keys"][:2] == ["category", "priority"]  # the demo's own keys
        train = app.screen
        await pilot.pause()
        assert train.query_one("#field-objective").value == "grpo"
        assert train.query_one("#field-rewards").value.startswith("json_valid, json_keys:category|priority|")
        await until(pilot, lambda: text(train, "#config-error").startswith("✔ Ready: GRPO with lora on demo"), 10,
                    "the check")
        assert "sampled answers (2 prompts x 4) per update" in text(train, "#config-error")


async def test_the_train_form_shows_grpos_settings_only_for_grpo():
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        screen = app.screen
        form = screen.query_one(ConfigForm)
        objective = screen.query_one("#field-objective")
        rows = ("#row-field-rewards", "#row-field-num-generations")
        assert not any(screen.query_one(r).display for r in rows) and not screen.query_one("#row-field-beta").display

        objective.value = "grpo"
        await pilot.pause()
        assert all(screen.query_one(r).display for r in rows) and screen.query_one("#row-field-beta").display
        assert screen.query_one("#field-beta").value == "0" and screen.query_one("#field-num-generations").value == "4"
        # no rewards yet: the engine's sentence, on the field
        await until(pilot, lambda: "rewards is empty" in text(screen, "#config-error"), 10, "the check")
        screen.query_one("#field-rewards").value = "json_valid, regex:^\\{@2"
        await until(pilot, lambda: text(screen, "#config-error").startswith("✔ Ready: GRPO with lora"), 10, "ready")
        cfg = RunConfig.from_dict(form.values())
        assert [(r["name"], r["weight"]) for r in cfg.rewards] == [("json_valid", 1.0), ("regex", 2.0)]
        assert cfg.max_completion_length == 64 and cfg.keep == "last"

        objective.value = "dpo"  # GRPO's beta 0 and its rewards stay behind
        await pilot.pause()
        assert not any(screen.query_one(r).display for r in rows) and screen.query_one("#field-beta").value == "0.1"
        cfg = RunConfig.from_dict(form.values())
        assert cfg.objective == "dpo" and cfg.beta == 0.1 and cfg.rewards is None and cfg.max_completion_length is None
        objective.value = "grpo"  # and come back as typed
        await pilot.pause()
        assert screen.query_one("#field-rewards").value == "json_valid, regex:^\\{@2"


async def test_keep_best_turns_last_when_the_objective_becomes_grpo(no_gpu):
    """The wizard's advice for thin data sets keep: best (SFT's default); GRPO refuses it (its loss is no
    score), so switching the objective to GRPO in the form makes it last, and back to SFT best again."""
    from tui.project import Project

    app = TunedeckApp()
    app.set_reactive(TunedeckApp.project, Project(settings={"keep": "best", "eval_steps": 20,
                                                             "rewards": [{"name": "json_valid", "weight": 1.0}]}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        screen = app.screen
        form = screen.query_one(ConfigForm)
        assert form.values()["keep"] == "best"
        screen.query_one("#field-objective").value = "grpo"
        await pilot.pause()
        cfg = RunConfig.from_dict(form.values())  # raises if keep: best reached GRPO
        assert cfg.is_grpo and cfg.keep == "last" and cfg.eval_steps == 20
        await until(pilot, lambda: text(screen, "#config-error").startswith("✔ Ready: GRPO with lora"), 10, "ready")
        screen.query_one("#field-objective").value = "sft"
        await pilot.pause()
        assert form.values()["keep"] == "best"
