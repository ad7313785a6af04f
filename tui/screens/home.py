"""Home: what you are working on, and the path a first fine-tune follows."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from engine import demo, models
from engine.errors import TunedeckError

from .base import AreaScreen

STEPS = [
    ("data", "1", "Look at the data", "format, bad rows, what each example trains, token lengths"),
    ("method", "2", "Choose a method", "prompting, RAG, LoRA, QLoRA or full, and the memory each needs"),
    ("train", "3", "Train", "a run that keeps going when you close the terminal; live loss and GPU"),
    ("chat", "4", "Chat with the result", "the fine-tuned model beside the base model"),
    ("runs", "5", "Runs", "history, re-attach, resume, export"),
]


class StepCard(Horizontal):
    DEFAULT_CSS = """
    StepCard { height: 3; border: round $primary-muted; padding: 0 1; margin: 0 0 0 0; }
    StepCard:hover { border: round $accent; background: $boost; }
    StepCard .step-key { width: 4; color: $accent; text-style: bold; }
    StepCard .step-title { width: 24; text-style: bold; }
    StepCard .step-what { width: 1fr; color: $text-muted; }
    """

    class Chosen(Message):
        def __init__(self, area: str) -> None:
            super().__init__()
            self.area = area

    def __init__(self, area: str, key: str, title: str, what: str) -> None:
        super().__init__(id=f"step-{area}")
        self.area, self.key, self.title, self.what = area, key, title, what

    def compose(self) -> ComposeResult:
        yield Static(f" {self.key}", classes="step-key")
        yield Static(self.title, classes="step-title")
        yield Static(self.what, classes="step-what")

    def on_click(self) -> None:
        self.post_message(self.Chosen(self.area))


class HomeScreen(AreaScreen):
    AREA = "home"
    DEFAULT_CSS = """
    HomeScreen #home { padding: 0 2; }
    HomeScreen #tagline { color: $text-muted; margin: 1 0; }
    HomeScreen #project { border: round $secondary; padding: 0 1; height: auto; margin-bottom: 1; }
    HomeScreen #project-title { color: $secondary; text-style: bold; }
    HomeScreen #steps-title { text-style: bold; margin-bottom: 0; }
    """

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
            yield Static("Your first fine-tune, step by step (press the number or click):", id="steps-title")
            for step in STEPS:
                yield StepCard(*step)

    def on_mount(self) -> None:
        self.refresh_project()

    def on_screen_resume(self) -> None:
        self.refresh_project()

    def on_step_card_chosen(self, message: StepCard.Chosen) -> None:
        self.app.switch_mode(message.area)

    def refresh_project(self) -> None:
        self.query_one("#project-model", Static).update(self._model_line())
        self.query_one("#project-data", Static).update(f"[b]Data [/b]  {self.project.data}")
        self.describe_data()

    def _model_line(self) -> str:
        ref = self.project.model
        try:
            src = models.resolve(ref)
        except TunedeckError as exc:
            return f"[b]Model[/b]  {ref}  [$error]{exc}[/]"
        where = {"demo": "built-in demo", "folder": src.location, "gguf": src.location, "hub": "Hugging Face Hub"}
        ready = "" if models.is_materialized(src) else "  [dim](converted to a fast cache on first use, ~15 s)[/]"
        return f"[b]Model[/b]  {src.display}  [dim]{where[src.kind]}[/]{ready}"

    @work(thread=True, exclusive=True, group="home-data")
    def describe_data(self) -> None:
        ref = self.project.data
        if ref == demo.DEMO:
            train, val = demo.count_lines(demo.train_file()), demo.count_lines(demo.validation_file())
            text = f"[b]Data [/b]  built-in demo: {demo.DATA_DESCRIPTION}  [dim]{train} train / {val} validation[/]"
        else:
            text = f"[b]Data [/b]  {ref}"
        self.app.call_from_thread(self.query_one("#project-data", Static).update, text)
