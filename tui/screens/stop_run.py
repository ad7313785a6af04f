"""Ask before stopping a run: what happens (checkpoint, then exit; killed after the grace period)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class StopRunScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    StopRunScreen { align: center middle; }
    StopRunScreen > Vertical {
        width: 64; max-width: 100%; height: auto; border: round $warning; background: $surface; padding: 0 1;
    }
    StopRunScreen #stop-title { text-style: bold; color: $warning; }
    StopRunScreen #stop-what { margin: 1 0; color: $text; }
    StopRunScreen Horizontal { height: auto; align-horizontal: right; }
    StopRunScreen Button { margin-left: 1; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Stop the run", id="stop-yes"),
        Binding("n,escape", "answer(False)", "Keep training", id="stop-no"),
    ]

    def __init__(self, run_id: str, grace: float) -> None:
        super().__init__()
        self.run_id, self.grace = run_id, grace

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Stop {self.run_id}?", id="stop-title")
            yield Static(
                "The worker finishes the current step, saves a checkpoint and exits. If it has not "
                f"exited after {self.grace:.0f} s it is killed (the last checkpoint is kept). "
                "Press r later to resume from the checkpoint.",
                id="stop-what",
            )
            with Horizontal():
                yield Button("Keep training (n)", id="stop-cancel", compact=True)
                yield Button("Stop (y)", id="stop-confirm", variant="warning", compact=True)

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "stop-confirm")
