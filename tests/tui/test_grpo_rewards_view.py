"""GRPO on the Data screen (issue 19): a file of prompts without answers is GRPO's data (recognised for a
GRPO project, refused for SFT with a sentence that names GRPO), and the Rewards tab tries the rewards
for real — the tiny model samples answers to a few prompts through the Data screen's warm helper
(`tunedeck data serve`'s try_rewards) and the view shows each prompt with its scored answers and the
verdict: rewards that give every answer the same score are said to teach nothing; a bad reward ends
in one sentence. At 80x24."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import Input

from tui.app import TunedeckApp
from tui.project import Project
from tui.widgets.rewards_view import GENERATIONS, PROMPTS, RewardsView
from waiting import until

WORDS = ["apple", "river", "cloud", "stone", "green", "seven"]


def _prompts(folder: Path) -> Path:
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Repeat: {w}", "answer": f"{w} {w} {w}"}) + "\n" for w in WORDS))
    return path


def _app(data: Path, model, objective: str, **settings) -> TunedeckApp:
    app = TunedeckApp(data=str(data), model=str(model))
    app.set_reactive(TunedeckApp.project, Project(model=str(model), data=str(data),
                                                  settings={"objective": objective, **settings}))
    return app


async def _open(pilot):
    app = pilot.app
    await pilot.press("1")
    await until(pilot, lambda: app.current_mode == "data" and app.screen.source is not None, 30, "the file to open")
    return app.screen


async def test_prompts_only_data_is_grpos_and_the_rewards_are_tried_on_the_models_answers(tiny_model, tmp_path):
    data = _prompts(tmp_path)
    # short answers (8 tokens): sampling stays quick on a loaded CPU
    app = _app(data, tiny_model, "grpo", rewards=[{"name": "json_valid", "weight": 1.0}], max_completion_length=8)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot)
        assert screen.refusal is None
        await until(pilot, lambda: "for GRPO" in str(screen.query_one("#data-summary").render()), 30, "the summary")
        view = screen.query_one(RewardsView)
        box = view.query_one("#rewards-input", Input)
        assert box.value == "json_valid"  # the project's rewards, in the form's string form

        # a random tiny model never writes a JSON object: every answer scores 0, and the view says so
        await pilot.press("r")
        assert screen.query_one("#data-tabs").active == "rewards"
        assert view.busy and "Sampling 4 answers to each of 4 prompts" in str(view.query_one("#rewards-status").render())
        await until(pilot, lambda: not view.busy, 120, "the sampled answers")
        assert view.error is None, view.error
        result = view.result
        assert [len(row["samples"]) for row in result["rows"]] == [GENERATIONS] * PROMPTS
        status = str(view.query_one("#rewards-status").render())
        assert status.startswith("✗ ") and result["verdict"] in status and "learn nothing" in status
        shown = view.query_one("#rewards-result").render().plain
        assert "▸ Repeat: apple" in shown and "reference: apple apple apple" in shown
        assert shown.count("      0 (0) ") == GENERATIONS * PROMPTS  # each answer: its total, then its score
        assert "every answer to this prompt scores the same" in shown

        # rewards that tell the answers apart: partial credit by length (0 up to 20 characters, -1 from 40)
        box.value = "json_valid, length_penalty:20"
        box.focus()
        await pilot.press("enter")
        await until(pilot, lambda: not view.busy and view.result is not result, 120, "the second try")
        result = view.result
        assert result["rewards"] == ["json_valid", "length_penalty"] and result["summary"]["spread"] > 0
        assert str(view.query_one("#rewards-status").render()).startswith("✔ The rewards separate the sampled answers")

        # a reward that does not exist: one sentence, in the view
        box.value = "json_valid, no_such_reward"
        await pilot.press("enter")
        await until(pilot, lambda: not view.busy and view.error is not None, 60, "the error")
        status = str(view.query_one("#rewards-status").render())
        assert status.startswith("✗ ") and "no_such_reward" in status and "Traceback" not in status
        assert status.count(". ") <= 1


async def test_prompts_only_data_is_refused_for_sft_with_a_sentence_that_names_grpo(tiny_model, tmp_path):
    app = _app(_prompts(tmp_path), tiny_model, "sft")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot)
        await until(pilot, lambda: screen.refusal is not None, 30, "the refusal")
        assert screen.refusal[0] == "prompt_only" and "GRPO" in screen.refusal[1]
