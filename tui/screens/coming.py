"""An area that is not built yet says so plainly, with what it will do and what works today."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from .base import AreaScreen


class ComingScreen(AreaScreen):
    DEFAULT_CSS = """
    ComingScreen .coming { padding: 1 2; }
    ComingScreen .coming-title { text-style: bold; color: $accent; }
    """
    TITLE_TEXT = ""
    PLAN = ""
    TODAY = ""

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(classes="coming"):
            yield Static(self.TITLE_TEXT, classes="coming-title")
            yield Static("\nNot built yet. This area will:\n" + self.PLAN)
            if self.TODAY:
                yield Static("\nWhat works today:\n" + self.TODAY)
