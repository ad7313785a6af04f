"""Ask before doing something that cannot be undone (delete a run) or that ends one (stop a run);
y / n (or Esc) answer. ``tone`` colours it: "error" (red, destructive) or "warning"."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    CSS_PATH = "../modals.tcss"
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm-yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm-no"),
    ]

    def __init__(self, title: str, body: str, *, yes: str = "Delete", no: str = "Keep", tone: str = "error") -> None:
        super().__init__(classes=f"-{tone}")
        self.title_text, self.body, self.yes, self.no, self.tone = title, body, yes, no, tone

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, id="confirm-title", markup=False)
            yield Static(self.body, id="confirm-body", markup=False)
            with Horizontal():
                yield Button(f"{self.no} (n)", id="confirm-cancel", compact=True)
                yield Button(f"{self.yes} (y)", id="confirm-ok", variant=self.tone, compact=True)

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-ok")
