"""Train: set up a run (settings carried from Data and Method, checked as you type, with the memory
estimate beside them), start it detached, and watch it — or any past run — live.

This screen holds the two panes (train_setup.SetupPane, train_monitor.MonitorPane), their keys, and
which run the monitor follows: the project's run, else a live one, else the latest. It follows the
project (``project_changed``): new settings from Method or Data go into the form, a run picked on
another screen is followed. ``ShowPane`` (``app.open_area("train", pane=...)``) shows a pane on
request; a run found afterwards does not take the screen to the monitor then.
"""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import ContentSwitcher
from textual.worker import Worker, WorkerState

from engine.runs import ALIVE, get_run, list_runs

from ..project import Project
from ..widgets.pane_tabs import PaneTabs
from .base import AreaScreen, ShowPane
from .train_monitor import RESUMABLE, MonitorPane
from .train_setup import SetupPane, setup_of

WIDE = (120, 36)  # from this size on, the GPU panel and the log sit side by side
PANES = [("setup", "n", "Set up a run"), ("monitor", "m", "Monitor")]
MONITOR_ONLY = ("smooth", "stop", "resume", "folder", "panel", "other_run")


class TrainScreen(AreaScreen):
    AREA = "train"
    CSS_PATH = "../train.tcss"
    BINDINGS = [
        Binding("n", "pane('setup')", "Setup", id="train-setup"),
        Binding("m", "pane('monitor')", "Monitor", id="train-monitor"),
        Binding("ctrl+s", "start", "Start", id="train-start"),
        Binding("s", "smooth", "Smooth", id="train-smooth"),
        Binding("x", "stop", "Stop", id="train-stop"),
        Binding("r", "resume", "Resume", id="train-resume"),
        Binding("o", "folder", "Folder", id="train-folder"),
        Binding("g", "panel", "GPU/log", id="train-panel"),
        Binding("left_square_bracket", "other_run(1)", "Older", key_display="[", id="train-older"),
        Binding("right_square_bracket", "other_run(-1)", "Newer", key_display="]", id="train-newer"),
    ]
    class RunChosen(Message, bubble=False):
        """The run to follow, found off the UI thread; ``show``: go to the monitor, unless a pane was
        asked for since the search began (``asked``)."""

        def __init__(self, run, show: bool, asked: int) -> None:
            super().__init__()
            self.run, self.show, self.asked = run, show, asked

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pane = "setup"
        self._asked = 0  # how many times a pane was asked for (keys, clicks, ShowPane)
        self._choosing: str | None = None  # a run being looked up to follow (off the UI thread)

    @property
    def setup(self) -> SetupPane:
        return self.query_one(SetupPane)

    @property
    def monitor(self) -> MonitorPane:
        return self.query_one(MonitorPane)

    @property
    def view(self):
        """What the monitor shows of its run (None before the first read)."""
        return self.monitor.view

    @property
    def watching(self) -> str | None:
        return self.monitor.watching

    # --- layout --------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        yield PaneTabs(PANES)
        with ContentSwitcher(initial="setup", id="train-switcher"):
            yield SetupPane(self.project, id="setup")
            yield MonitorPane(id="monitor")

    def on_mount(self) -> None:
        self.add_class("-show-gpu")
        self._show("setup")
        self._layout_for(self.size.width, self.size.height)
        self._choose_run(self.project.run_id, initial=True)

    def on_resize(self, event) -> None:
        self._layout_for(event.size.width, event.size.height)

    def _layout_for(self, width: int, height: int) -> None:
        self.set_class(width < WIDE[0] or height < WIDE[1], "-compact")

    def on_screen_resume(self) -> None:
        self.monitor.start_sampler()

    def on_screen_suspend(self) -> None:
        self.monitor.stop_sampler()  # no sampling while another area is shown; following stays cheap

    # --- panes ---------------------------------------------------------------------------------
    def show_pane(self, pane: str) -> None:
        """Show ``pane`` because it was asked for (a key, a click, another screen)."""
        self._asked += 1
        self._show(pane)

    def _show(self, pane: str) -> None:
        self.pane = pane
        self.query_one(ContentSwitcher).current = pane
        self.query_one(PaneTabs).current = pane
        self.refresh_bindings()

    def on_show_pane(self, message: ShowPane) -> None:
        self.show_pane(message.pane)

    def on_pane_tabs_chosen(self, message: PaneTabs.Chosen) -> None:
        self.show_pane(message.pane)

    # --- the project ---------------------------------------------------------------------------
    def project_changed(self, old: Project, new: Project) -> None:
        self.setup.show_project(new)
        if new.run_id and new.run_id not in (self.watching, self._choosing):
            self._choose_run(new.run_id, initial=False)  # picked on another screen: follow it

    # --- which run the monitor follows -----------------------------------------------------------
    def _choose_run(self, ref: str | None, initial: bool) -> None:
        self._choosing = ref
        self._find_run(ref, initial, self._asked)

    @work(thread=True, exclusive=True, group="train-choose", exit_on_error=False)
    def _find_run(self, ref: str | None, initial: bool, asked: int) -> None:
        """The project's run, else a live one, else the latest (off the UI thread). The monitor is
        shown for the project's run, a live one, or a run picked later; not for an old run found on
        the way in."""
        show = bool(ref) or not initial
        if ref:
            run = get_run(ref)  # a TunedeckError (no such run) is notified
        else:
            runs = list_runs()
            alive = [r for r in runs if r.state in ALIVE]
            pick = (alive or runs or [None])[0]
            run = get_run(str(pick.dir)) if pick is not None else None
            show = show or bool(alive)
        if run is not None:
            self.post_message(self.RunChosen(run, show, asked))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "train-choose" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self._choosing = None  # a run found is followed (RunChosen came first); none or an error: done

    @work(thread=True, exclusive=True, group="train-choose", exit_on_error=False)
    def _step_run(self, direction: int, current: str | None, asked: int) -> None:
        runs = list_runs()  # newest first
        ids = [r.id for r in runs]
        if not ids:
            return
        index = ids.index(current) if current in ids else 0
        index = max(0, min(len(ids) - 1, index + direction))
        if ids[index] != current:
            self.post_message(self.RunChosen(get_run(str(runs[index].dir)), True, asked))

    def on_train_screen_run_chosen(self, message: RunChosen) -> None:
        self._follow(message.run)
        if message.show and message.asked == self._asked:
            self._show("monitor")

    def _follow(self, run) -> None:
        self.monitor.follow(run)
        self.query_one(PaneTabs).note(Text(run.id, style="dim"))
        if self.project.run_id != run.id:
            self.set_project(run_id=run.id)

    # --- starting a run ------------------------------------------------------------------------
    def on_setup_pane_start_requested(self, message: SetupPane.StartRequested) -> None:
        config = message.config
        settings = config.to_dict()
        for key in ("model", "data", "method"):
            settings.pop(key, None)
        project = replace(self.project, model=config.model, data=config.data, method=config.method,
                          settings=settings)
        self.setup.showing = setup_of(project)  # the form shows these already: no reload
        self.app.project = project
        self.setup.launch(config)

    def on_setup_pane_launched(self, message: SetupPane.Launched) -> None:
        run = message.run
        self.notify(f"Training started: {run.id}. It keeps going if you close the terminal.", timeout=6)
        self._follow(run)
        self.show_pane("monitor")

    # --- bindings ------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in MONITOR_ONLY and self.pane != "monitor":
            return False
        if action == "start" and self.pane != "setup":
            return False
        if action == "panel" and not self.has_class("-compact"):
            return False
        view = self.view if self.is_mounted else None
        if self.pane == "monitor" and action in ("stop", "resume", "folder") and view is None:
            return None
        if action == "stop" and view is not None and not view.alive:
            return None
        if action == "resume" and view is not None and view.state not in RESUMABLE:
            return None
        return True

    def action_pane(self, pane: str) -> None:
        self.show_pane(pane)

    def action_start(self) -> None:
        self.setup.start()

    def action_smooth(self) -> None:
        self.monitor.toggle_smoothing()

    def action_panel(self) -> None:
        gpu_shown = self.has_class("-show-gpu")
        self.set_class(not gpu_shown, "-show-gpu")
        self.set_class(gpu_shown, "-show-log")

    def action_folder(self) -> None:
        self.monitor.copy_folder()

    def action_stop(self) -> None:
        self.monitor.ask_stop()

    def action_resume(self) -> None:
        self.monitor.resume()

    def action_other_run(self, direction: int) -> None:
        self._step_run(direction, self.watching, self._asked)
