"""Chat: talk to a run's fine-tuned model, beside its base model, tokens streaming.

The model lives in a chat process (engine/chat.py) started on demand; this screen only talks to it
through engine.chat_client from thread workers, which post each event back here as a message.
Nothing here imports torch.

    run ▾  checkpoint ▾  mode ▾          which run, which checkpoint; fine-tuned | compare | base
    ┌ fine-tuned ───────┐┌ base ───────┐   one pane per side; compare shows both, same prompt
    status line                          what is loaded, template, tokens/s
    › prompt                             Enter sends; Esc stops an answer
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Select, Static

from engine.chat_client import ChatClient
from engine.chat_targets import ChatTarget, chat_targets, default_target, training_system_prompt
from engine.model_refs import resolve
from engine.errors import TunedeckError

from ..widgets.chat_pane import ChatPane
from ..project import Project
from .base import AreaScreen
from .chat_settings import ChatSettingsScreen

BASE_ONLY = "__base__"
FINAL = "final"
MODES = [("fine-tuned", "tuned"), ("compare", "compare"), ("base", "base")]
TITLES = {"tuned": "fine-tuned", "base": "base"}


class ChatEvent(Message):
    """One event from the chat process, for request ``purpose`` ("load" or "generate")."""

    def __init__(self, purpose: str, event: dict) -> None:
        super().__init__()
        self.purpose = purpose
        self.event = event


class ChatScreen(AreaScreen):
    AREA = "chat"
    CSS_PATH = "../chat.tcss"
    BINDINGS = [
        Binding("ctrl+t", "cycle_mode", "Mode", id="chat-cycle-mode"),
        Binding("escape", "stop", "Stop", id="chat-stop"),
        Binding("ctrl+l", "clear", "Clear", id="chat-clear"),
        Binding("ctrl+y", "copy_last", "Copy", id="chat-copy"),
        Binding("ctrl+s", "settings", "Settings", id="chat-settings"),
        Binding("ctrl+r", "restart", "Restart", id="chat-restart"),
    ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.client = ChatClient()
        self.targets: list[ChatTarget] = []
        self.loaded: dict | None = None
        self.loading = False
        self.generating = False
        self.mode = "tuned"
        self.selected: tuple[str | None, int | None] | None = None  # what was last asked to load
        self.settings: dict = {"max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0, "system": None}
        self._system_from_run: str | None = None
        self._gen_sides: list[str] = []
        self._forced_base = False
        self._picked_elsewhere: str | None = None  # a run chosen on another screen since (Runs: c, Train)
        self._last_figures = ""

    # --- layout --------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        with Horizontal(id="chat-bar"):
            yield Select([], id="chat-run", prompt="run", compact=True)
            yield Select([], id="chat-checkpoint", prompt="checkpoint", compact=True)
            yield Select(MODES, id="chat-mode", value="tuned", allow_blank=False, compact=True)
        with Vertical(id="chat-empty", classes="-hidden"):
            yield Static(id="chat-empty-text")
            yield Button("Chat with the base model", id="chat-base-button", variant="primary", compact=True)
        with Horizontal(id="chat-panes"):
            yield ChatPane("tuned", "fine-tuned", id="pane-tuned")
            yield ChatPane("base", "base", id="pane-base")
        yield Static("Looking for runs…", id="chat-status")
        with Horizontal(id="chat-prompt-row"):
            yield Static("›", id="chat-prompt-mark")
            yield Input(placeholder="Loading…", id="chat-input", compact=True)

    @property
    def panes(self) -> dict[str, ChatPane]:
        return {"tuned": self.query_one("#pane-tuned", ChatPane), "base": self.query_one("#pane-base", ChatPane)}

    def on_mount(self) -> None:
        self.client.on_exit = lambda message: self.post_message(
            ChatEvent("process", {"type": "error", "message": message, "crashed": True}))
        self._show_panes()
        self.find_runs(first=True)

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.find_runs(first=False)

    def on_unmount(self) -> None:
        self.client.close(timeout=2)

    # --- runs ----------------------------------------------------------------------------------
    def project_changed(self, old: Project, new: Project) -> None:
        if new.run_id != old.run_id and new.run_id != (self.selected[0] if self.selected else None):
            self._picked_elsewhere = new.run_id  # followed when the runs are next listed

    class RunsFound(Message, bubble=False):
        def __init__(self, targets: list[ChatTarget], first: bool) -> None:
            super().__init__()
            self.targets, self.first = targets, first

    @work(thread=True, exclusive=True, group="chat-runs", exit_on_error=False)
    def find_runs(self, first: bool) -> None:
        self.post_message(self.RunsFound(chat_targets(), first))

    def on_chat_screen_runs_found(self, message: RunsFound) -> None:
        targets, first = message.targets, message.first
        self.targets = targets
        if not first and targets and self.selected is None and not self.loading:
            first = True  # a run appeared since the screen said there was none
        picked, self._picked_elsewhere = self._picked_elsewhere, None
        if (not first and picked is not None and self.selected is not None and picked != self.selected[0]
                and any(t.run_id == picked for t in targets)):
            first = True  # a run was picked elsewhere since (Runs: c, or the Train monitor): chat with it
        run_select = self.query_one("#chat-run", Select)
        base_label = f"base model only ({self._base_display()})"
        options = [(t.label, t.run_id) for t in targets] + [(base_label, BASE_ONLY)]
        current = run_select.value if not first else None
        if first or current in (Select.BLANK, None):
            wanted = next((t for t in targets if t.run_id == self.project.run_id), None) or default_target(targets)
            current = wanted.run_id if wanted else BASE_ONLY
        with self.prevent(Select.Changed):
            run_select.set_options(options)
            if current is not None and any(v == current for _, v in options):
                run_select.value = current
        if not targets:
            self._offer_base_only()
            return
        self.query_one("#chat-empty").add_class("-hidden")
        if first and current != BASE_ONLY:
            self._fill_checkpoints(current)
            self._load_selection()
        elif current != BASE_ONLY:
            self._fill_checkpoints(current, keep=True)  # new checkpoints since, same choice

    def _base_display(self) -> str:
        try:
            return resolve(self.project.model).display
        except TunedeckError:
            return self.project.model

    def _offer_base_only(self) -> None:
        if self.loaded is not None or self.loading:
            return
        self.query_one("#chat-empty-text", Static).update(
            "There is no fine-tuned run yet: train one in [b]3 Train[/b] to chat with it here. "
            f"Meanwhile you can chat with the base model ({self._base_display()}) alone."
        )
        self.query_one("#chat-empty").remove_class("-hidden")
        self.query_one("#chat-checkpoint", Select).disabled = True
        mode_select = self.query_one("#chat-mode", Select)
        with self.prevent(Select.Changed):
            mode_select.value = "base"
            mode_select.disabled = True
        self._forced_base = True
        self._set_mode("base")
        self._status("No fine-tuned run yet.")
        self.query_one("#chat-input", Input).placeholder = "Chat with the base model first (button above)"

    def _target(self, run_id) -> ChatTarget | None:
        return next((t for t in self.targets if t.run_id == run_id), None)

    def _fill_checkpoints(self, run_id, *, keep: bool = False) -> None:
        select = self.query_one("#chat-checkpoint", Select)
        before = select.value
        target = self._target(run_id)
        with self.prevent(Select.Changed):
            if target is None:
                select.set_options([("—", FINAL)])
                select.value = FINAL
                select.disabled = True
                return
            options = []
            if target.final:
                options.append(("final " + ("adapter" if target.final == "adapter" else "model"), FINAL))
            options += [(f"checkpoint-{n}", str(n)) for n in reversed(target.checkpoints)]
            select.set_options(options)
            values = [v for _, v in options]
            select.value = before if keep and before in values else values[0]
            select.disabled = False

    @on(Select.Changed, "#chat-run")
    def _run_changed(self, event: Select.Changed) -> None:
        if event.value is Select.BLANK:
            return
        self._fill_checkpoints(event.value)
        self._load_selection()

    @on(Select.Changed, "#chat-checkpoint")
    def _checkpoint_changed(self, event: Select.Changed) -> None:
        if event.value is not Select.BLANK:
            self._load_selection()

    @on(Select.Changed, "#chat-mode")
    def _mode_changed(self, event: Select.Changed) -> None:
        self._set_mode(str(event.value))

    @on(Button.Pressed, "#chat-base-button")
    def _base_pressed(self) -> None:
        self.query_one("#chat-empty").add_class("-hidden")
        with self.prevent(Select.Changed):
            self.query_one("#chat-run", Select).value = BASE_ONLY
        self._fill_checkpoints(BASE_ONLY)
        self._load_selection()

    def _selection(self) -> tuple[str | None, int | None]:
        run = self.query_one("#chat-run", Select).value
        if run in (Select.BLANK, BASE_ONLY, None):
            return None, None
        cp = self.query_one("#chat-checkpoint", Select).value
        return str(run), (None if cp in (Select.BLANK, FINAL, None) else int(cp))

    def _load_selection(self) -> None:
        selection = self._selection()
        if selection == self.selected and (self.loaded is not None or self.loading):
            return
        if self.generating:
            self.client.cancel()
        run, checkpoint = selection
        new_run = self.selected is None or self.selected[0] != run
        self.selected = selection
        self._picked_elsewhere = None  # this choice is the newer one
        self.set_project(run_id=run or self.project.run_id)
        if new_run:
            self._system_from_run = training_system_prompt(run)
            self.settings["system"] = self._system_from_run
        self.loading = True
        self.loaded = None
        what = f"run {run}" + (f" checkpoint-{checkpoint}" if checkpoint is not None else "") if run else \
            f"the base model {self._base_display()}"
        self._status(f"Loading {what}…")
        self._update_input()
        self.load_model(run, checkpoint, None if run else self.project.model)

    # --- the chat process ----------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="chat-load", exit_on_error=False)
    def load_model(self, run: str | None, checkpoint: int | None, model: str | None) -> None:
        for event in self.client.load(run=run, checkpoint=checkpoint, model=model):
            self.post_message(ChatEvent("load", event))

    @work(thread=True, group="chat-generate", exit_on_error=False)
    def generate(self, messages: dict, mode: str, settings: dict) -> None:
        for event in self.client.generate(messages, mode=mode, **settings):
            self.post_message(ChatEvent("generate", event))

    @work(thread=True, exclusive=True, group="chat-load", exit_on_error=False)
    def restart_process(self) -> None:
        self.client.restart()
        run, checkpoint = self.selected or (None, None)
        for event in self.client.load(run=run, checkpoint=checkpoint, model=None if run else self.project.model):
            self.post_message(ChatEvent("load", event))

    async def on_chat_event(self, message: ChatEvent) -> None:
        event = message.event
        kind = event.get("type")
        if message.purpose == "process":  # the process died between requests
            if self.generating or self.loading:
                return  # the pending request reports it
            self.loaded = None
            self._status(event["message"], error=True)
            self.notify(event["message"] + " Press Ctrl+R to restart it.", title="Chat", severity="error", timeout=10)
            self._update_input()
            return
        if message.purpose == "load":
            if kind == "status":
                self._status(event.get("message", ""))
            elif kind == "loaded":
                await self._loaded(event)
            elif kind == "error":
                self.loading = False
                self._status(event["message"], error=True)
                self.notify(event["message"], title="Chat", severity="error", timeout=10)
                self._update_input()
            return
        if not self.generating:
            return  # the end of an answer already given up (e.g. after a restart)
        if kind == "token":
            await self.panes[event["side"]].append(event["text"])
        elif kind == "end":
            await self.panes[event["side"]].finish(event)
        elif kind == "done":
            for side in self._gen_sides:
                if self.panes[side].busy:
                    await self.panes[side].finish(event["sides"].get(side, {}))
            self.generating = False
            self._last_figures = self._figures(event)
            self._status_loaded()
            self._update_input()
        elif kind == "error":
            for side in self._gen_sides:
                await self.panes[side].finish(None, error=event["message"])
            self.generating = False
            hint = "; press Ctrl+R to restart it" if event.get("crashed") else ""
            self._status(event["message"], error=True)
            self.notify(event["message"] + hint, title="Chat", severity="error", timeout=10)
            if event.get("crashed"):
                self.loaded = None
            self._update_input()

    async def _loaded(self, info: dict) -> None:
        self.loading = False
        self.loaded = info
        has_tuned = "tuned" in info.get("sides", [])
        mode_select = self.query_one("#chat-mode", Select)
        with self.prevent(Select.Changed):
            mode_select.disabled = not has_tuned
            if not has_tuned:
                mode_select.value = "base"
                self._forced_base = True
            elif self._forced_base:  # base only was loaded before; now there is an adapter
                mode_select.value = "tuned"
                self._forced_base = False
        self._set_mode(str(mode_select.value))
        what = f"{info['run']} · {info['checkpoint']}" if info.get("run") else f"{info['model']}, base model only"
        for pane in self.panes.values():
            if pane.log.children:
                await pane.add_note(f"— now: {what} —")
        self._status_loaded()
        self._update_input()
        self.query_one("#chat-input", Input).focus()

    @staticmethod
    def _loaded_label(info: dict) -> str:
        if not info.get("run"):
            return f"{info['model']} (base model only)"
        return f"{info['model']} + {info['checkpoint']}"

    def _figures(self, done: dict) -> str:
        sides = done.get("sides", {})
        if len(sides) > 1:
            return " · ".join(f"{TITLES[s]} {r['tokens_per_second']:.1f} tok/s" for s, r in sides.items())
        (side, r), = sides.items()
        return f"{r['tokens']} tok · {r['tokens_per_second']:.1f} tok/s"

    # --- mode and panes ------------------------------------------------------------------------
    def _set_mode(self, mode: str) -> None:
        if mode not in ("tuned", "compare", "base"):
            return
        self.mode = mode
        self._show_panes()
        self._update_input()

    def _show_panes(self) -> None:
        panes = self.panes
        panes["tuned"].set_class(self.mode == "base", "-hidden")
        panes["base"].set_class(self.mode == "tuned", "-hidden")
        tuned_title = "fine-tuned"
        if self.loaded and self.loaded.get("run"):
            tuned_title = f"fine-tuned · {self.loaded['checkpoint']}"
        panes["tuned"].border_title = tuned_title
        panes["base"].border_title = f"base · {self.loaded['model']}" if self.loaded else "base"

    def action_cycle_mode(self) -> None:
        select = self.query_one("#chat-mode", Select)
        if select.disabled:
            self.notify("Only the base model is loaded; pick a run to compare.", title="Chat")
            return
        order = [m for _, m in MODES]
        select.value = order[(order.index(self.mode) + 1) % len(order)]

    # --- asking --------------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    async def _submitted(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt:
            return
        if self.generating:
            self.notify("Wait for the answer, or press Esc to stop it.", title="Chat")
            return
        if self.loaded is None:
            self.notify("The model is not loaded yet." if self.loading else
                        "No model is loaded; pick a run or the base model above (Ctrl+R restarts).", title="Chat")
            return
        event.input.value = ""
        await self.ask(prompt)

    async def ask(self, prompt: str) -> None:
        sides = ["base", "tuned"] if self.mode == "compare" else [self.mode]
        messages = {}
        for side in sides:
            pane = self.panes[side]
            messages[side] = pane.messages_for(prompt)
            await pane.ask(prompt, self._who(side))
        self._gen_sides = sides
        self.generating = True
        self._status_loaded(extra="answering… (Esc stops)")
        self._update_input()
        self.generate(messages, self.mode, dict(self.settings))

    def _who(self, side: str) -> str:
        return TITLES[side]

    def action_stop(self) -> None:
        if self.generating:
            self.client.cancel()
            self._status_loaded(extra="stopping…")
        else:
            self.set_focus(None)  # leave the prompt so number keys move between areas

    async def action_clear(self) -> None:
        if self.generating:
            self.client.cancel()
        for pane in self.panes.values():
            await pane.clear()
        self._status_loaded(extra="conversation cleared")

    def action_copy_last(self) -> None:
        side = "base" if self.mode == "base" else "tuned"
        self._copy(self.panes[side].last_answer(), side)

    @on(ChatPane.CopyRequested)
    def _copy_requested(self, message: ChatPane.CopyRequested) -> None:
        self._copy(message.text, message.side)

    def _copy(self, text: str | None, side: str) -> None:
        if not text:
            self.notify("No answer to copy yet.", title="Chat")
            return
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied the {TITLES[side]} answer ({len(text)} characters).", title="Chat")

    def action_settings(self) -> None:
        def apply(values: dict | None) -> None:
            if values:
                self.settings.update(values)
                self._status_loaded(extra="settings applied")

        self.app.push_screen(ChatSettingsScreen(self.settings), apply)

    async def action_restart(self) -> None:
        if self.selected is None:
            self.notify("Nothing to restart: choose a run or the base model first.", title="Chat")
            return
        for pane in self.panes.values():
            if pane.busy:
                await pane.finish(None, error="the chat process was restarted")
        self.generating = False
        self.loading = True
        self.loaded = None
        self._status("Restarting the chat process…")
        self._update_input()
        self.restart_process()

    # --- status --------------------------------------------------------------------------------
    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#chat-status", Static)
        status.update(text)
        status.set_class(error, "-error")

    def _status_loaded(self, extra: str | None = None) -> None:
        info = self.loaded
        if info is None:
            if extra:
                self._status(extra)
            return
        template = {"run": "run's template", "model": "model's template", "fallback": "ChatML template"}
        parts = [self._loaded_label(info), template.get(info.get("template"), ""), info.get("device", "")]
        if self.settings.get("system"):
            parts.append("training system prompt" if self.settings["system"] == self._system_from_run
                         else "own system prompt")
        if extra:
            parts.append(extra)
        elif self._last_figures:
            parts.append(self._last_figures)
        self._status(" · ".join(p for p in parts if p))

    def _update_input(self) -> None:
        box = self.query_one("#chat-input", Input)
        if self.loading:
            box.placeholder = "Loading the model…"
        elif self.generating:
            box.placeholder = "Answering… Esc stops"
        elif self.loaded is None:
            box.placeholder = "No model loaded: pick a run above, or Ctrl+R to restart"
        elif self.mode == "compare":
            box.placeholder = "Ask both models; Enter sends"
        else:
            box.placeholder = "Ask something; Enter sends · Ctrl+T compare · Ctrl+S settings"
