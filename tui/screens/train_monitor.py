"""The Train screen's monitor pane: one run, live — header, metrics, the rewards of a preference run
(DPO, KTO) or of a GRPO run (with its latest sampled answers), loss chart, GPU/CPU panel, log.

Everything shown about the run is read from its folder by engine.follow's RunFollower (its own
thread), and GPU/CPU samples come from engine.gpu.Sampler (another thread); both post messages
here, and the UI thread only draws. The run keeps going when this pane, the app or the terminal
goes away. Which run to follow is the screen's choice (``follow``).
"""

from __future__ import annotations

import time

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.worker import Worker, WorkerState

from engine import gpu
from engine.errors import TunedeckError
from engine.follow import RunFollower, RunView

from ..widgets.gpu_panel import GpuPanel
from ..widgets.grpo_panel import GrpoPanel
from ..widgets.log_tail import LogTail
from ..widgets.loss_chart import LossChart
from ..widgets.preference_panel import PreferencePanel
from ..widgets.run_header import RunHeader, RunMetrics
from .base import JobFailed, error_sentence, in_thread
from .confirm import ConfirmScreen

STOP_GRACE = 60.0  # seconds the worker gets to save a checkpoint before it is killed
RESUMABLE = ("stopped", "failed", "crashed")


def stop_question(run_id: str, grace: float) -> ConfirmScreen:
    """Ask before stopping a run: what happens (checkpoint, then exit; killed after the grace period)."""
    return ConfirmScreen(
        f"Stop {run_id}?",
        "The worker finishes the current step, saves a checkpoint and exits. If it has not "
        f"exited after {grace:.0f} s it is killed (the last checkpoint is kept). "
        "Press r later to resume from the checkpoint.",
        yes="Stop", no="Keep training", tone="warning",
    )


class MonitorPane(Vertical):
    sample_interval: float = 1.0  # seconds between GPU/CPU samples
    follow_interval: float = 0.5  # seconds between reads of the run folder while it is alive

    # --- what the threads send back ------------------------------------------------------------------
    class ViewRead(Message, bubble=False):
        def __init__(self, follower: RunFollower, view: RunView) -> None:
            super().__init__()
            self.follower, self.view = follower, view

    class Sampled(Message, bubble=False):
        def __init__(self, gpus: list, host, reason: str | None) -> None:
            super().__init__()
            self.gpus, self.host, self.reason = gpus, host, reason

    class Told(Message, bubble=False):
        """A sentence about the run from a background job (stopped, resuming)."""

        def __init__(self, text: str, severity: str = "information", timeout: float = 8) -> None:
            super().__init__()
            self.text, self.severity, self.timeout = text, severity, timeout

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: RunView | None = None
        self.follower: RunFollower | None = None
        self.sampler: gpu.Sampler | None = None
        self.watching: str | None = None  # the run id the monitor follows

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        yield RunMetrics(id="run-metrics")
        yield PreferencePanel(id="preference-panel")
        yield GrpoPanel(id="grpo-panel")
        yield LossChart(id="loss-chart")
        with Horizontal(id="monitor-bottom"):
            yield GpuPanel(id="gpu-panel")
            yield LogTail(id="log-tail")

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)
        self.start_sampler()

    def on_unmount(self) -> None:
        self.stop_sampler()
        if self.follower is not None:
            self.follower.stop()
            self.follower = None

    # --- following a run -------------------------------------------------------------------------------
    def follow(self, run) -> None:
        """Watch ``run``: replay its history, then follow it (one follower at a time)."""
        if self.follower is not None:
            self.follower.stop()
        self.watching = run.id
        self.view = None
        self.query_one(LossChart).set_data((), (), None)
        self.query_one(PreferencePanel).show(None)
        self.query_one(GrpoPanel).show(None)
        follower = RunFollower(run)
        self.follower = follower

        def deliver(view: RunView) -> None:
            if self.follower is follower:
                self.post_message(self.ViewRead(follower, view))

        follower.start(deliver, interval=self.follow_interval)

    def on_monitor_pane_view_read(self, message: ViewRead) -> None:
        if message.follower is not self.follower:
            return  # a late view of a run we no longer watch
        previous, view = self.view, message.view
        self.view = view
        self.query_one(RunHeader).show(view)
        self.query_one(RunMetrics).show(view)
        self.query_one(PreferencePanel).show(view)
        self.query_one(GrpoPanel).show(view)
        self.query_one(LossChart).set_data(view.losses, view.eval_losses, view.max_steps, waiting=view.alive)
        self.query_one(LogTail).show(view.log_lines)
        if self.sampler is not None:
            self.sampler.pid = view.pid
        if previous is None or previous.state != view.state:
            self.screen.refresh_bindings()
            if previous is not None and not view.alive and previous.alive:
                severity = "information" if view.state in ("completed", "stopped") else "error"
                self.notify(f"{view.run_id}: {view.state}. {view.message or ''}".strip(), severity=severity,
                            timeout=8)

    def _tick(self) -> None:
        if self.view is not None and self.view.alive:
            self.query_one(RunHeader).tick()

    # --- actions -------------------------------------------------------------------------------------
    def toggle_smoothing(self) -> None:
        chart = self.query_one(LossChart)
        chart.smoothing = not chart.smoothing

    def copy_folder(self) -> None:
        if self.view is None:
            return
        path = str(self.view.run_dir)
        self.app.copy_to_clipboard(path)
        self.notify(path, title="Run folder (copied to the clipboard)", timeout=10)

    def ask_stop(self) -> None:
        view = self.view
        if view is None or not view.alive:
            return

        def answer(stop: bool | None) -> None:
            if stop:
                header = self.query_one(RunHeader)
                header.stop_deadline = time.time() + STOP_GRACE
                header.tick()
                self._stop(view.run_id)

        self.app.push_screen(stop_question(view.run_id, STOP_GRACE), answer)

    def _stop(self, run_id: str) -> None:
        """SIGTERM, then wait out the grace period (SIGKILL after it) on a daemon thread, so quitting
        the app never waits; if the app goes first, the worker still checkpoints and exits on its own."""
        header = self.query_one(RunHeader)

        def left(seconds: float) -> None:
            header.stop_deadline = time.time() + seconds

        def stop() -> None:
            from engine import launch

            try:
                told = self.Told(launch.stop_run(run_id, grace=STOP_GRACE, on_wait=left))
            except TunedeckError as exc:
                told = self.Told(str(exc), "error")
            self.post_message(told)

        in_thread(self, stop, name=f"tunedeck-stop-{run_id}")

    def resume(self) -> None:
        if self.view is not None and self.view.state in RESUMABLE:
            self._resume(str(self.view.run_dir))

    @work(thread=True, group="train-control", exit_on_error=False)
    def _resume(self, ref: str) -> None:
        from engine import launch

        run = launch.resume_run(ref)
        self.post_message(self.Told(f"Resuming {run.id}.", timeout=5))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "train-control" and event.state == WorkerState.ERROR:
            self.post_message(JobFailed(error_sentence(event.worker.error), "Could not resume"))

    def on_monitor_pane_told(self, message: Told) -> None:
        self.notify(message.text, severity=message.severity, timeout=message.timeout)

    # --- GPU / CPU sampling ----------------------------------------------------------------------------
    def start_sampler(self) -> None:
        if self.sampler is not None:
            return

        def on_sample(gpus, host) -> None:
            self.post_message(self.Sampled(gpus, host, None if gpus else gpu.no_gpu_reason()))

        pid = self.view.pid if self.view is not None else None
        self.sampler = gpu.Sampler(on_sample, pid=pid, interval=self.sample_interval)
        self.sampler.start()
        self.query_one(GpuPanel).loading = False

    def stop_sampler(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None

    def on_monitor_pane_sampled(self, message: Sampled) -> None:
        watching = self.view is not None and self.view.pid is not None
        self.query_one(GpuPanel).show(message.gpus, message.host, message.reason, watching)
