"""A screen for one area of the app: nav bar on top, footer with bindings below.

What every area screen shares:
  - the project: ``self.project`` reads the app's (immutable) Project, ``set_project(**changes)``
    replaces it, and ``project_changed(old, new)`` is called on every screen when it changes;
  - one error path: a thread worker that raises, or a job in ``in_thread`` that raises, ends in one
    notification with the error's sentence (``on_worker_state_changed`` / ``JobFailed``), never a
    traceback over the screen.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState

from engine.errors import TunedeckError

from engine.ipc import EngineProcessError
from ..project import Project
from ..widgets.nav_bar import NavBar


class ShowPane(Message):
    """Show one pane of an area (Train: "setup" or "monitor"), asked for by the user or another screen."""

    def __init__(self, pane: str) -> None:
        super().__init__()
        self.pane = pane


class JobFailed(Message):
    """A background job (not a worker) failed; ``text`` is one sentence for the user."""

    def __init__(self, text: str, title: str | None = None) -> None:
        super().__init__()
        self.text, self.title = text, title


def error_sentence(error: BaseException | None) -> str:
    """The sentence to show for an error: ours carry one; anything else is named plainly."""
    if isinstance(error, (TunedeckError, EngineProcessError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def in_thread(node, target, *args, title: str | None = None, name: str | None = None) -> threading.Thread:
    """Run ``target(*args)`` in its own daemon thread, for jobs that wait on a helper process or a
    grace period: quitting the app never waits for them, and they do not hold the shared worker pool.
    Results come back as messages the job posts; an exception becomes a ``JobFailed`` on ``node``."""

    def run() -> None:
        try:
            target(*args)
        except Exception as exc:  # noqa: BLE001 - the last line of defence for a background job
            node.post_message(JobFailed(error_sentence(exc), title))

    thread = threading.Thread(target=run, daemon=True, name=name)
    thread.start()
    return thread


class AreaScreen(Screen):
    AREA = "home"
    WORKER_ERROR_TITLES: dict[str, str] = {}  # worker group -> the title of its error notification

    def compose(self) -> ComposeResult:
        yield NavBar(self.AREA)
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    # --- the project -------------------------------------------------------------------------------
    @property
    def project(self) -> Project:
        return self.app.project

    def set_project(self, **changes) -> None:
        """Replace the app's project with these fields changed (UI thread only)."""
        self.app.project = replace(self.app.project, **changes)

    def on_mount(self) -> None:
        self.watch(self.app, "project", self._project_changed, init=False)

    def _project_changed(self, old: Project, new: Project) -> None:
        if self.is_mounted:
            self.project_changed(old, new)

    def project_changed(self, old: Project, new: Project) -> None:
        """The project changed (on this screen or another); follow it here."""

    # --- errors from background work -----------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.report_error(error_sentence(event.worker.error), self.WORKER_ERROR_TITLES.get(event.worker.group))

    def on_job_failed(self, message: JobFailed) -> None:
        self.report_error(message.text, message.title)

    def report_error(self, text: str, title: str | None = None) -> None:
        self.notify(text, title=title or "", severity="error", timeout=10, markup=False)
