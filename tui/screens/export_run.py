"""Where to export a run, and how: the adapter alone, merged weights, and/or a `trl sft` config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Static


@dataclass
class ExportRequest:
    run_id: str
    to: str
    merged: bool
    trl_config: str | None

    def args(self) -> list[str]:
        args = ["export", self.run_id, "--to", self.to, "--json"]
        if self.merged:
            args.append("--merged")
        if self.trl_config:
            args += ["--trl-config", self.trl_config]
        return args


def default_folder(run_id: str) -> str:
    return str(Path.cwd() / f"{run_id}-export")


class ExportRunScreen(ModalScreen[ExportRequest | None]):
    CSS_PATH = "../modals.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export-cancel-key")]

    def __init__(self, run_id: str, *, full: bool = False) -> None:
        super().__init__()
        self.run_id, self.full = run_id, full

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Export {self.run_id}", id="export-title", markup=False)
            yield Static("Folder (new or empty):", classes="export-note")
            yield Input(default_folder(self.run_id), id="export-to")
            if not self.full:
                yield Checkbox("Merge the adapter into the base weights (a plain model folder)", id="export-merged",
                               compact=True)
            yield Checkbox("Also write a `trl sft` config (NAME-sft.yaml beside the folder)", id="export-trl",
                           compact=True)
            yield Static("", id="export-error")
            with Horizontal():
                yield Button("Cancel", id="export-cancel", compact=True)
                yield Button("Export", id="export-ok", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#export-to", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-ok":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        to = self.query_one("#export-to", Input).value.strip()
        error = self.query_one("#export-error", Static)
        if not to:
            error.update("Give a folder to export to.")
            return
        path = Path(to).expanduser()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            error.update(f"{path} exists and is not empty; choose a new folder.")
            return
        merged = bool(self.query("#export-merged") and self.query_one("#export-merged", Checkbox).value)
        trl = None
        if self.query_one("#export-trl", Checkbox).value:
            trl = str(path.parent / f"{path.name}-sft.yaml")
            if Path(trl).exists():
                error.update(f"{trl} already exists; choose another folder name.")
                return
        self.dismiss(ExportRequest(self.run_id, str(path), merged, trl))
