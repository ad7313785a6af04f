"""Home: what you are working on, and the path a first fine-tune follows.

Beside the five steps, GRPO on the demo (``GRPO_STEP``, always offered): the project set to the demo's
ticket prompts (``demo-prompts``: prompts only, no answers) with the settings of the demo's GRPO config
(the json_valid and json_keys rewards), then the Data screen on its Rewards tab, where the base model's
sampled answers are scored before any training; Train starts it from there.

Once an SFT run on the demo has finished, the path offers an optional second step: DPO on the demo's
preference pairs, starting from that run (``init_from``) — it sets the project to it and opens the
Train setup.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from engine import demo
from engine.config import OBJECTIVE_NAMES
from engine import model_refs as models
from engine.errors import TunedeckError
from engine.runs import data_label

from ..project import Project
from ..widgets.run_header import theme_colour
from .base import AreaScreen

STEPS = [
    ("data", "1", "Look at the data", "formats, bad rows, trained tokens, lengths"),
    ("method", "2", "Choose a method", "prompting, RAG, LoRA, QLoRA or full"),
    ("train", "3", "Train", "survives closing the terminal; live loss"),
    ("chat", "4", "Chat with the result", "fine-tuned beside the base model"),
    ("runs", "5", "Runs", "history, re-attach, evaluate, export"),
]
GRPO_STEP = ("grpo", "+", "Teach with a checker", "GRPO on ticket prompts, rewards for valid JSON")
PREFERENCE_STEP = ("preference", "+", "Teach it preferences", "DPO on the demo pairs, from your SFT run")


def _step(area: str, key: str, title: str, what: str) -> Option:
    return Option(Text.assemble((key, "bold"), "  ", (f"{title:<21}", "bold"), (what, "dim")), id=area)


def _line(label: str, value: str, *rest) -> Text:
    return Text.assemble((f"{label:<7}", "bold"), value, *rest)


class HomeScreen(AreaScreen):
    AREA = "home"
    CSS_PATH = "../home.tcss"
    AUTO_FOCUS = "#steps"  # ↑↓ Enter work at once (Textual's default would focus the scrolling container)

    class DataDescribed(Message, bubble=False):
        """The data line, described off the UI thread (the demo's rows are counted)."""

        def __init__(self, text: Text) -> None:
            super().__init__()
            self.text = text

    class PreferenceStepFound(Message, bubble=False):
        """A finished SFT run on the demo to start DPO from (``run_id`` None: none yet), and the settings."""

        def __init__(self, run_id: str | None, model: str, settings: dict | None) -> None:
            super().__init__()
            self.run_id, self.model, self.settings = run_id, model, settings

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.preference_step: HomeScreen.PreferenceStepFound | None = None  # offered while not None

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="home"):
            yield Static(
                "Fine-tune a language model from your terminal: look at the data, pick a method, "
                "train in the background, watch it live, then chat with the result.",
                id="tagline",
            )
            with Vertical(id="project"):
                yield Static("Project", id="project-title")
                yield Static(id="project-model")
                yield Static(id="project-data")
            yield Static("Your first fine-tune, step by step (press the number, or choose with ↑↓ Enter or the mouse):", id="steps-title")
            yield OptionList(*(_step(*step) for step in (*STEPS, GRPO_STEP)), id="steps")

    def on_mount(self) -> None:
        self.refresh_project()

    def on_screen_resume(self) -> None:
        self.refresh_project()  # the model may have been converted to its cache since

    def project_changed(self, old: Project, new: Project) -> None:
        if (old.model, old.data) != (new.model, new.data):
            self.refresh_project()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == PREFERENCE_STEP[0]:
            self.start_preference_step()
        elif event.option.id == GRPO_STEP[0]:
            self.start_grpo_step()
        else:
            self.app.switch_mode(event.option.id)

    def refresh_project(self) -> None:
        self.query_one("#project-model", Static).update(self._model_line())
        self.query_one("#project-data", Static).update(_line("Data", data_label(self.project.data) or ""))
        self.describe_data()
        self.find_preference_step()

    # --- the optional second step: DPO after SFT on the demo -------------------------------------
    @work(thread=True, exclusive=True, group="home-preference", exit_on_error=False)
    def find_preference_step(self) -> None:
        from engine import gpu, init_from

        run_id = init_from.sft_run_for(demo.DEMO, prefer=self.project.run_id, data=demo.DEMO)
        settings = None
        if run_id is not None:
            pairs = demo.count_lines(demo.data_file(demo.DEMO_PREFERENCE))
            settings = init_from.preference_settings(run_id, examples=pairs, gpu=bool(gpu.list_gpus()))
        self.post_message(self.PreferenceStepFound(run_id, demo.DEMO, settings))

    def on_home_screen_preference_step_found(self, message: PreferenceStepFound) -> None:
        steps = self.query_one("#steps", OptionList)
        offered = self.preference_step is not None
        self.preference_step = message if message.run_id else None
        if message.run_id and not offered:
            steps.add_option(_step(*PREFERENCE_STEP))
        elif not message.run_id and offered:
            steps.remove_option(PREFERENCE_STEP[0])

    def start_preference_step(self) -> None:
        """DPO on the demo pairs from the SFT run: the project set to it, then the Train setup to check and start."""
        step = self.preference_step
        if step is None or step.settings is None:
            return
        settings = dict(step.settings)
        method = settings.pop("method")
        self.set_project(model=step.model, data=demo.DEMO_PREFERENCE, method=method, settings=settings)
        name = OBJECTIVE_NAMES[settings["objective"]]
        self.notify(f"{name} on the demo preference pairs, starting from your SFT run {step.run_id}: check the "
                    "settings, then Start training.", timeout=6)
        self.app.open_area("train", pane="setup")

    # --- GRPO on the demo's prompts ----------------------------------------------------------------
    def start_grpo_step(self) -> None:
        """GRPO on the demo's ticket prompts with the demo config's rewards: the project set to it, then the
        Data screen's Rewards tab (try them on the base model's answers), from where Train starts it."""
        try:
            settings = demo.grpo_settings()
        except (TunedeckError, OSError) as exc:
            self.report_error(str(exc), "GRPO demo")
            return
        method = settings.pop("method", "lora")
        self.set_project(model=demo.DEMO, data=demo.DEMO_PROMPTS, method=method, settings=settings)
        self.notify("GRPO on the demo's ticket prompts, rewarded for valid JSON with the six keys: press r to score "
                    "the base model's sampled answers with them, then Train (3) to start.", timeout=8)
        self.app.switch_mode("data")
        self.app.screen.call_after_refresh(self.app.screen.action_tab, "rewards")

    def _model_line(self) -> str:
        ref = self.project.model
        try:
            src = models.resolve(ref)
        except TunedeckError as exc:
            return _line("Model", ref, (str(exc), theme_colour(self.app, "error")))
        where = {"demo": "built-in demo", "folder": src.location, "gguf": src.location, "hub": "Hugging Face Hub"}
        ready = "" if models.is_materialized(src) else " (converted to a fast cache on first use, ~15 s)"
        return _line("Model", src.display, (f"  {where[src.kind]}{ready}", "dim"))

    @work(thread=True, exclusive=True, group="home-data", exit_on_error=False)
    def describe_data(self) -> None:
        ref = self.project.data
        if ref in demo.DEMOS:
            train, val = (demo.count_lines(demo.data_file(ref, split)) for split in ("train", "validation"))
            text = _line("Data", demo.DESCRIPTIONS[ref], (f"  {train} train / {val} validation", "dim"))
        else:
            text = _line("Data", data_label(ref) or "")  # a file, or the sources of a mix
        self.post_message(self.DataDescribed(text))

    def on_home_screen_data_described(self, message: DataDescribed) -> None:
        self.query_one("#project-data", Static).update(message.text)
