"""Where to export a run, and how: the adapter alone, merged weights, a GGUF file with an Ollama
Modelfile, and/or a `trl sft` config.

A folder export is handed back to the Runs screen (it runs ``tunedeck export --json`` in a child
process). A GGUF export runs here, in a child process too (``tunedeck export --gguf --json
--progress``): the dialog stays open with a progress bar for the merge, the conversion and the check,
then shows what the engine proved (prompted as trained, answers like the merged model) and the
``ollama create`` command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, ProgressBar, Select, Static

QUANT_CHOICES = [("f16 (exact, 2 bytes/weight)", "f16"), ("q8_0 (about half the size)", "q8_0"),
                 ("bf16", "bf16"), ("f32", "f32")]


@dataclass
class ExportRequest:
    run_id: str
    to: str
    merged: bool
    trl_config: str | None
    gguf: str | None = None
    quant: str = "f16"

    def args(self) -> list[str]:
        if self.gguf:
            return ["export", self.run_id, "--gguf", self.gguf, "--quant", self.quant, "--json", "--progress"]
        args = ["export", self.run_id, "--to", self.to, "--json"]
        if self.merged:
            args.append("--merged")
        if self.trl_config:
            args += ["--trl-config", self.trl_config]
        return args


def default_folder(run_id: str) -> str:
    return str(Path.cwd() / f"{run_id}-export")


def gguf_lines(g: dict) -> list[str]:
    """What a GGUF export wrote and proved (the CLI prints the same lines)."""
    from engine.export_summary import gguf_summary

    return gguf_summary(g)


class ExportRunScreen(ModalScreen[ExportRequest | None]):
    CSS_PATH = "../modals.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export-cancel-key")]

    class Progress(Message):
        def __init__(self, fraction: float | None, text: str | None) -> None:
            super().__init__()
            self.fraction, self.text = fraction, text

    class Done(Message):
        def __init__(self, result: dict | None, error: str | None) -> None:
            super().__init__()
            self.result, self.error = result, error

    def __init__(self, run_id: str, *, full: bool = False) -> None:
        super().__init__()
        self.run_id, self.full = run_id, full
        self.exporting = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Export {self.run_id}", id="export-title", markup=False)
            yield Static("Folder (new or empty):", classes="export-note")
            yield Input(default_folder(self.run_id), id="export-to")
            if not self.full:
                yield Checkbox("Merge the adapter into the base weights (a plain model folder)", id="export-merged",
                               compact=True)
            yield Checkbox("GGUF for llama.cpp / Ollama, with a Modelfile (merged, then checked)", id="export-gguf",
                           compact=True)
            yield Select(QUANT_CHOICES, value="f16", allow_blank=False, id="export-quant", compact=True)
            yield Checkbox("Also write a `trl sft` config (NAME-sft.yaml beside the folder)", id="export-trl",
                           compact=True)
            yield ProgressBar(total=100, show_eta=False, id="export-progress")
            yield Static("", id="export-error", markup=False)
            with Horizontal():
                yield Button("Cancel", id="export-cancel", compact=True)
                yield Button("Export", id="export-ok", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#export-progress").display = False
        self.query_one("#export-quant").display = False
        self.query_one("#export-to", Input).focus()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "export-gguf":
            self.query_one("#export-quant").display = event.value

    def action_cancel(self) -> None:
        if not self.exporting:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-ok":
            self._submit()
        elif not self.exporting:
            self.dismiss(None)

    def _submit(self) -> None:
        if self.exporting:
            return
        if str(self.query_one("#export-ok", Button).label) == "Close":
            self.dismiss(None)
            return
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
        if not self.query_one("#export-gguf", Checkbox).value:
            self.dismiss(ExportRequest(self.run_id, str(path), merged, trl))
            return
        quant = str(self.query_one("#export-quant", Select).value)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            error.update(f"Cannot create {path} ({exc.strerror}); choose another folder.")
            return
        request = ExportRequest(self.run_id, str(path), True, None, gguf=str(path / f"{self.run_id}-{quant}.gguf"),
                                quant=quant)
        self.exporting = True
        self.query_one("#export-ok", Button).disabled = True
        self.query_one("#export-cancel", Button).disabled = True
        self.query_one("#export-progress").display = True
        error.update(f"Exporting to {request.gguf}…")
        self.run_gguf(request)

    @work(thread=True, exclusive=True, group="export-gguf", exit_on_error=False)
    def run_gguf(self, request: ExportRequest) -> None:
        from engine.ipc import EngineProcessError, stream_json

        post = self.post_message
        try:
            for event in stream_json(request.args()):
                kind = event.get("type")
                if kind == "status":
                    post(self.Progress(None, event.get("message")))
                elif kind == "progress":
                    post(self.Progress(event.get("fraction"), None))
                elif kind == "result":
                    post(self.Done(event.get("gguf"), None))
                    return
            post(self.Done(None, "The export ended without a result."))
        except EngineProcessError as exc:
            post(self.Done(None, str(exc)))
        except Exception as exc:  # the helper could not even start
            post(self.Done(None, f"Could not run the export: {exc}"))

    def on_export_run_screen_progress(self, message: Progress) -> None:
        if message.fraction is not None:
            self.query_one("#export-progress", ProgressBar).update(progress=round(message.fraction * 100, 1))
        if message.text:
            self.query_one("#export-error", Static).update(message.text)

    def on_export_run_screen_done(self, message: Done) -> None:
        self.exporting = False
        self.query_one("#export-progress").display = False
        ok = self.query_one("#export-ok", Button)
        ok.label, ok.disabled = "Close", False
        self.query_one("#export-cancel", Button).display = False
        text = self.query_one("#export-error", Static)
        if message.error:
            text.update(f"Export failed: {message.error}")
            self.notify(message.error, title="Export failed", severity="error")
            return
        lines = gguf_lines(message.result)
        text.update("\n".join(lines))
        self.notify(lines[0], title="Exported", timeout=10)
        ok.focus()
