"""Home: what you are working on, and the path a first fine-tune follows."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from engine import demo
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


def _line(label: str, value: str, *rest) -> Text:
    return Text.assemble((f"{label:<7}", "bold"), value, *rest)


class HomeScreen(AreaScreen):
    AREA = "home"
    CSS_PATH = "../home.tcss"

    class DataDescribed(Message, bubble=False):
        """The data line, described off the UI thread (the demo's rows are counted)."""

        def __init__(self, text: Text) -> None:
            super().__init__()
            self.text = text

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
            yield OptionList(
                *(Option(Text.assemble((key, "bold"), "  ", (f"{title:<21}", "bold"), (what, "dim")), id=area)
                  for area, key, title, what in STEPS),
                id="steps",
            )

    def on_mount(self) -> None:
        self.refresh_project()

    def on_screen_resume(self) -> None:
        self.refresh_project()  # the model may have been converted to its cache since

    def project_changed(self, old: Project, new: Project) -> None:
        if (old.model, old.data) != (new.model, new.data):
            self.refresh_project()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.app.switch_mode(event.option.id)

    def refresh_project(self) -> None:
        self.query_one("#project-model", Static).update(self._model_line())
        self.query_one("#project-data", Static).update(_line("Data", data_label(self.project.data) or ""))
        self.describe_data()

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
        if ref == demo.DEMO:
            train, val = demo.count_lines(demo.train_file()), demo.count_lines(demo.validation_file())
            text = _line("Data", f"built-in demo: {demo.DATA_DESCRIPTION}", (f"  {train} train / {val} validation", "dim"))
        else:
            text = _line("Data", data_label(ref) or "")  # a file, or the sources of a mix
        self.post_message(self.DataDescribed(text))

    def on_home_screen_data_described(self, message: DataDescribed) -> None:
        self.query_one("#project-data", Static).update(message.text)
