"""Generation settings for the Chat screen: system prompt, max new tokens, temperature, top-p."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

LIMITS = {"max_new_tokens": (1, 32768), "temperature": (0.0, 5.0), "top_p": (0.01, 1.0)}


class ChatSettingsScreen(ModalScreen[dict | None]):
    CSS_PATH = "../modals.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="chat-settings-cancel")]

    def __init__(self, settings: dict) -> None:
        super().__init__()
        self.settings = dict(settings)

    def compose(self) -> ComposeResult:
        s = self.settings
        with Vertical():
            yield Static("Generation settings", id="settings-title")
            with Horizontal(classes="settings-row"):
                yield Label("System prompt")
                yield Input(s.get("system") or "", id="set-system", compact=True,
                            placeholder="(none: the model's default)")
            yield Static("Defaults to the system prompt of the run's training data.", classes="settings-hint")
            with Horizontal(classes="settings-row"):
                yield Label("Max new tokens")
                yield Input(str(s.get("max_new_tokens", 256)), id="set-max_new_tokens", type="integer", compact=True)
            with Horizontal(classes="settings-row"):
                yield Label("Temperature")
                yield Input(str(s.get("temperature", 0.0)), id="set-temperature", type="number", compact=True)
            with Horizontal(classes="settings-row"):
                yield Label("Top-p")
                yield Input(str(s.get("top_p", 1.0)), id="set-top_p", type="number", compact=True)
            yield Static("Temperature 0 is greedy: the same answer every time.", classes="settings-hint")
            yield Static("", id="settings-error")
            with Horizontal(id="settings-buttons"):
                yield Button("Cancel (Esc)", id="settings-cancel", compact=True)
                yield Button("Apply (Enter)", id="settings-apply", variant="primary", compact=True)

    def _read(self) -> dict | None:
        out = {"system": self.query_one("#set-system", Input).value.strip() or None}
        for key, (low, high) in LIMITS.items():
            raw = self.query_one(f"#set-{key}", Input).value.strip()
            kind = int if key == "max_new_tokens" else float
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or not low <= value <= high:
                self.query_one("#settings-error", Static).update(
                    f"{key.replace('_', ' ')} must be a number from {low} to {high}, got {raw!r}.")
                return None
            out[key] = value
        return out

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "settings-apply":
            self._apply()
        else:
            self.dismiss(None)

    def _apply(self) -> None:
        values = self._read()
        if values is not None:
            self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)
