"""Help: every key of the screen you came from and of the app, and a glossary in plain words."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from engine.glossary import GLOSSARY


def _keys_table(title: str, bindings) -> Table:
    # min_width: a title wider than the keys and their words would wrap ("On this / screen / (Method)")
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0),
                  min_width=len(title))
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("does")
    seen = set()
    for binding in bindings:
        if not isinstance(binding, Binding) or binding.key in seen or not binding.description:
            continue
        seen.add(binding.key)
        table.add_row(binding.key_display or binding.key, binding.description)
    return table


class HelpScreen(ModalScreen):
    CSS_PATH = "../modals.tcss"
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close help", id="close-help")]

    def __init__(self, under: Screen | None = None) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static("Keys", classes="help-title")
            if self.under is not None:
                screen_bindings = [
                    b for cls in type(self.under).__mro__ if cls.__module__.startswith("tui.")
                    for b in cls.__dict__.get("BINDINGS", []) if isinstance(b, Binding)
                ]
                if screen_bindings:
                    yield Static(_keys_table(f"On this screen ({self.under.__class__.__name__.removesuffix('Screen')})", screen_bindings))
            yield Static(_keys_table("Everywhere", self.app.BINDINGS))
            yield Static(
                "Ctrl+P opens the command palette: every action, and the themes. Mouse: click the "
                "areas at the top, rows, buttons. Tab moves between fields.",
            )
            yield Static("Glossary", classes="help-title")
            glossary = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
            glossary.add_column("term", style="bold", no_wrap=True)
            glossary.add_column("meaning")
            for term, meaning in GLOSSARY.items():
                glossary.add_row(term, meaning)
            yield Static(glossary)

    def action_dismiss(self) -> None:
        self.dismiss()
