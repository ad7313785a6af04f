"""Train: set up a run (settings carried from Data and Method, checked as you type, with the memory
estimate beside them), start it detached, and watch it — or any past run — live.

Everything shown about a run is read from its folder (engine.follow on a thread), and GPU/CPU
samples come from engine.gpu.Sampler on another thread; the UI thread only draws. The run keeps
going when this screen, the app or the terminal goes away.
"""

from __future__ import annotations

import threading
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Button, ContentSwitcher, Static

from engine import gpu
from engine.errors import TunedeckError
from engine.follow import RunFollower, RunView
from engine.runs import ALIVE, get_run, list_runs

from ..widgets.config_form import ConfigForm, field_named
from ..widgets.gpu_panel import GpuPanel, gib
from ..widgets.log_tail import LogTail
from ..widgets.loss_chart import LossChart
from ..widgets.run_header import RunHeader, RunMetrics
from .base import AreaScreen
from .stop_run import StopRunScreen

STOP_GRACE = 60.0  # seconds the worker gets to save a checkpoint before it is killed
WIDE = (120, 36)  # from this size on, the GPU panel and the log sit side by side


GLOSSARY_FOR = {
    "learning_rate": "learning rate", "epochs": "epoch", "max_steps": "step", "batch_size": "batch size",
    "gradient_accumulation_steps": "gradient accumulation", "max_length": "max length", "lora.r": "rank",
    "lora.alpha": "alpha",
}
METHOD_TERM = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tuning"}


def explain(spec, method: str) -> str:
    """The long explanation of a field, from the glossary when it has one."""
    from engine.glossary import GLOSSARY

    term = METHOD_TERM.get(method) if spec.key == "method" else GLOSSARY_FOR.get(spec.key)
    text = GLOSSARY.get(term or "", spec.help)
    return f"{spec.label}: {text}"


class PaneTabs(Horizontal):
    """One line: which pane is shown, and the keys to switch."""

    DEFAULT_CSS = """
    PaneTabs { height: 1; background: $surface; }
    PaneTabs > Static { width: auto; padding: 0 1; color: $text-muted; }
    PaneTabs > Static.-current { color: $text; background: $primary-muted; text-style: bold; }
    PaneTabs > #tab-run { width: 1fr; text-align: right; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def compose(self) -> ComposeResult:
        yield Static("[b]n[/b] Set up a run", id="tab-setup")
        yield Static("[b]m[/b] Monitor", id="tab-monitor")
        yield Static(id="tab-run")

    def on_click(self, event) -> None:
        widget = event.widget
        if widget is not None and widget.id in ("tab-setup", "tab-monitor"):
            self.screen.show_pane(widget.id.removeprefix("tab-"))


class EstimatePanel(Static):
    DEFAULT_CSS = """
    EstimatePanel { height: auto; border: round $primary-muted; border-title-color: $text-muted; padding: 0 1; }
    EstimatePanel.-warn { border: round $warning; }
    """

    def on_mount(self) -> None:
        self.border_title = "Memory estimate"


class TrainScreen(AreaScreen):
    AREA = "train"
    DEFAULT_CSS = """
    TrainScreen #train-switcher { height: 1fr; }
    TrainScreen #setup { height: 1fr; layout: horizontal; }
    TrainScreen #setup-main { width: 1fr; height: auto; }
    TrainScreen #setup-side { width: 44; height: auto; padding: 0 1 0 0; }
    TrainScreen.-compact #setup { layout: vertical; }
    TrainScreen.-compact #setup-side { width: 1fr; padding: 0 1; }
    TrainScreen #field-detail { height: auto; padding: 0 1; color: $text-muted; margin-top: 1; }
    TrainScreen #config-error { height: auto; padding: 0 1; color: $success; }
    TrainScreen #config-error.-bad { color: $error; text-style: bold; }
    TrainScreen #setup-actions { height: 1; padding: 0 1; }
    TrainScreen #setup-actions > Static { width: 1fr; color: $text-muted; padding-left: 2; }
    TrainScreen #monitor { height: 1fr; }
    TrainScreen #monitor-bottom { height: 12; }
    TrainScreen #monitor-bottom > GpuPanel { width: 1fr; height: 1fr; }
    TrainScreen #monitor-bottom > LogTail { width: 1fr; }
    TrainScreen.-compact #monitor-bottom { height: auto; max-height: 8; }
    TrainScreen.-compact #monitor-bottom > LogTail { height: 6; }
    TrainScreen.-compact.-show-gpu #monitor-bottom > LogTail { display: none; }
    TrainScreen.-compact.-show-log #monitor-bottom > GpuPanel { display: none; }
    TrainScreen.-compact #monitor-bottom > GpuPanel { height: auto; max-height: 8; }
    TrainScreen.-compact #run-reason { max-height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """
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

    sample_interval: float = 1.0  # seconds between GPU/CPU samples
    follow_interval: float = 0.5  # seconds between reads of the run folder while it is alive

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.view: RunView | None = None
        self.follower: RunFollower | None = None
        self.sampler: gpu.Sampler | None = None
        self.watching: str | None = None  # run id (or folder) the monitor follows
        self._choosing: str | None = None  # a run being looked up to follow (off the UI thread)
        self._settings_seen: tuple | None = None
        self._estimate_timer: Timer | None = None
        self._estimate_key: tuple | None = None
        self._valid = False
        self._launching = False
        self.pane = "setup"

    # --- layout --------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        yield PaneTabs()
        with ContentSwitcher(initial="setup", id="train-switcher"):
            with VerticalScroll(id="setup"):
                with Vertical(id="setup-main"):
                    yield ConfigForm(self._initial_settings(), id="config-form")
                    yield Static(id="field-detail")
                    yield Static(id="config-error")
                    with Horizontal(id="setup-actions"):
                        yield Button("Start training", id="start", variant="primary", compact=True)
                        yield Static("ctrl+s · keeps running when you close the terminal")
                with Vertical(id="setup-side"):
                    yield EstimatePanel("", id="estimate")
            with Vertical(id="monitor"):
                yield RunHeader(id="run-header")
                yield RunMetrics(id="run-metrics")
                yield LossChart(id="loss-chart")
                with Horizontal(id="monitor-bottom"):
                    yield GpuPanel(id="gpu-panel")
                    yield LogTail(id="log-tail")

    def on_mount(self) -> None:
        self.add_class("-show-gpu")
        self.show_pane("setup")
        self._layout_for(self.size.width, self.size.height)
        self._settings_seen = self._project_key()
        self.validate_form()
        self.set_interval(1.0, self._tick)
        self._start_sampler()
        self._choosing = self.project.run_id  # resume (which follows mount) must not choose it again
        self._choose_run(self.project.run_id, initial=True, stay=self.project.take_train_pane() == "setup")

    def on_resize(self, event) -> None:
        self._layout_for(event.size.width, event.size.height)

    def _layout_for(self, width: int, height: int) -> None:
        self.set_class(width < WIDE[0] or height < WIDE[1], "-compact")

    def on_screen_resume(self) -> None:
        if self.sampler is None:
            self._start_sampler()
        key = self._project_key()
        if key != self._settings_seen:  # the Method or Data screen changed the project
            self._settings_seen = key
            self.query_one(ConfigForm).load(self._initial_settings())
            self.validate_form()
        stay = self.project.take_train_pane() == "setup"
        if stay:
            self.show_pane("setup")
        if self.project.run_id and self.project.run_id not in (self.watching, self._choosing):
            self._choosing = self.project.run_id
            self._choose_run(self.project.run_id, initial=False, stay=stay)

    def on_screen_suspend(self) -> None:
        self._stop_sampler()  # no sampling while another area is shown; following stays cheap

    def on_unmount(self) -> None:
        self._stop_sampler()
        if self.follower is not None:
            self.follower.stop()
            self.follower = None

    def show_pane(self, pane: str) -> None:
        self.pane = pane
        self.query_one(ContentSwitcher).current = pane
        for name in ("setup", "monitor"):
            self.query_one(f"#tab-{name}").set_class(name == pane, "-current")
        self.refresh_bindings()

    # --- bindings --------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        monitor_only = ("smooth", "stop", "resume", "folder", "panel", "other_run")
        if action in monitor_only and self.pane != "monitor":
            return False
        if action == "start" and self.pane != "setup":
            return False
        if action == "panel" and not self.has_class("-compact"):
            return False
        if self.pane == "monitor" and action in ("stop", "resume", "folder") and self.view is None:
            return None
        if action == "stop" and self.view is not None and not self.view.alive:
            return None
        if action == "resume" and self.view is not None and self.view.state not in ("stopped", "failed", "crashed"):
            return None
        return True

    def action_pane(self, pane: str) -> None:
        self.show_pane(pane)

    def action_smooth(self) -> None:
        chart = self.query_one(LossChart)
        chart.smoothing = not chart.smoothing

    def action_panel(self) -> None:
        gpu_shown = self.has_class("-show-gpu")
        self.set_class(not gpu_shown, "-show-gpu")
        self.set_class(gpu_shown, "-show-log")

    def action_folder(self) -> None:
        if self.view is None:
            return
        path = str(self.view.run_dir)
        self.app.copy_to_clipboard(path)
        self.notify(path, title="Run folder (copied to the clipboard)", timeout=10)

    def action_stop(self) -> None:
        view = self.view
        if view is None or not view.alive:
            return

        def answer(stop: bool | None) -> None:
            if stop:
                self.query_one(RunHeader).stop_deadline = time.time() + STOP_GRACE
                self.query_one(RunHeader).tick()
                self._stop_run(view.run_id)

        self.app.push_screen(StopRunScreen(view.run_id, STOP_GRACE), answer)

    def action_resume(self) -> None:
        if self.view is not None and self.view.state in ("stopped", "failed", "crashed"):
            self._resume_run(str(self.view.run_dir))

    def action_other_run(self, direction: int) -> None:
        self._step_run(direction)

    def action_start(self) -> None:
        self.start_training()

    # --- setup -----------------------------------------------------------------------------------
    def _project_key(self) -> tuple:
        p = self.project
        return (p.model, p.data, p.method, repr(sorted(p.settings.items())) if p.settings else "")

    def _initial_settings(self) -> dict:
        """RunConfig defaults for the method, then what Method carried, then model and data."""
        from engine.config import RunConfig

        method = self.project.method or self.project.settings.get("method") or "lora"
        try:
            settings = RunConfig.defaults_for(method).to_dict()
        except TunedeckError:
            settings = RunConfig().to_dict()
        for key, value in self.project.settings.items():
            if key == "lora" and isinstance(value, dict):
                settings["lora"] = {**settings["lora"], **value}
            else:
                settings[key] = value
        if self.project.settings.get("max_steps") is not None and "epochs" not in self.project.settings:
            settings["epochs"] = None
        settings.update(model=self.project.model, data=self.project.data)
        return settings

    def on_config_form_changed(self, message: ConfigForm.Changed) -> None:
        self.validate_form()

    def on_config_form_focused(self, message: ConfigForm.Focused) -> None:
        self.query_one("#field-detail", Static).update(Text(explain(message.spec, self.query_one(ConfigForm).method)))

    def validate_form(self):
        """Check the form with the engine's own validation; show its sentence inline. -> RunConfig|None"""
        from engine.config import RunConfig
        from engine.errors import ConfigError

        form = self.query_one(ConfigForm)
        line = self.query_one("#config-error", Static)
        try:
            config = RunConfig.from_dict(form.values(), source="settings")
        except ConfigError as exc:
            self._valid = False
            form.flag(field_named(str(exc)))
            line.update(Text(str(exc)))
            line.add_class("-bad")
            self.query_one("#start", Button).disabled = True
            return None
        self._valid = True
        form.flag(None)
        length = f"{config.max_steps} steps" if config.max_steps else f"{config.epochs:g} epoch(s)"
        effective = config.batch_size * config.gradient_accumulation_steps
        line.update(Text(f"✔ Ready: {config.method} on {config.model}, {length}, "
                         f"{effective} examples per update."))
        line.remove_class("-bad")
        self.query_one("#start", Button).disabled = False
        self._schedule_estimate(config)
        return config

    @on(Button.Pressed, "#start")
    def start_training(self) -> None:
        if self._launching:
            return  # one start at a time (ctrl+s pressed twice)
        config = self.validate_form()
        if config is None:
            self.notify(str(self.query_one("#config-error", Static).render()), severity="error")
            return
        self.project.model, self.project.data, self.project.method = config.model, config.data, config.method
        settings = config.to_dict()
        for key in ("model", "data", "method"):
            settings.pop(key, None)
        self.project.settings = settings
        self._settings_seen = self._project_key()
        self.query_one("#start", Button).disabled = True
        self._launching = True
        self._launch(config)

    @work(thread=True, exclusive=True, group="train-launch")
    def _launch(self, config) -> None:
        from engine import launch

        try:
            run = launch.start_run(config)
        except TunedeckError as exc:
            self.app.call_from_thread(self._launch_failed, str(exc))
            return
        except OSError as exc:  # e.g. the run store is not writable
            self.app.call_from_thread(self._launch_failed, f"Could not start the worker: {exc}.")
            return
        self.app.call_from_thread(self._launched, run)

    def _launch_failed(self, message: str) -> None:
        self._launching = False
        self.query_one("#start", Button).disabled = not self._valid
        self.notify(message, title="Could not start the run", severity="error", timeout=10)

    def _launched(self, run) -> None:
        self._launching = False
        self.query_one("#start", Button).disabled = not self._valid
        self.notify(f"Training started: {run.id}. It keeps going if you close the terminal.", timeout=6)
        self.project.run_id = run.id
        self._follow(run)
        self.show_pane("monitor")

    # --- the estimate --------------------------------------------------------------------------------
    def _schedule_estimate(self, config) -> None:
        key = (config.model, config.method, config.batch_size, config.max_length, config.lora.r,
               str(config.lora.targets), config.gradient_checkpointing)
        if key == self._estimate_key:
            return
        self._estimate_key = key
        if self._estimate_timer is not None:
            self._estimate_timer.stop()
        self._estimate_timer = self.set_timer(0.6, lambda: self._estimate(config, key))

    def _estimate(self, config, key: tuple) -> None:
        """`tunedeck estimate … --json` in a helper process (it needs transformers for the model config),
        from a daemon thread: quitting the app never waits for it."""
        import importlib.util

        panel = self.query_one(EstimatePanel)
        if importlib.util.find_spec("engine.commands.estimate") is None:
            # HOOK: the Method engineer's `tunedeck estimate` is not there yet; say so plainly.
            panel.update(Text("Estimate not available yet (no `tunedeck estimate`).", style="dim"))
            return
        panel.update(Text("estimating…", style="dim"))
        lora = config.lora
        args = ["estimate", "--model", config.model, "--method", config.method,
                "--batch-size", str(config.batch_size), "--max-length", str(config.max_length),
                "--gradient-accumulation-steps", str(config.gradient_accumulation_steps),
                "--lora-r", str(lora.r), "--lora-dropout", str(lora.dropout),
                "--lora-targets", lora.targets if isinstance(lora.targets, str) else ",".join(lora.targets),
                "--gradient-checkpointing" if config.gradient_checkpointing else "--no-gradient-checkpointing",
                "--json"]

        def work() -> None:
            from ..engine_process import EngineProcessError, run_json

            # No NVIDIA GPU: the worker trains on the CPU, so judge the memory against this machine's RAM.
            device = ["--device", "cpu"] if gpu.no_gpu_reason() else []
            try:
                result, error = run_json(args[:-1] + device + ["--json"], timeout=180), None
            except EngineProcessError as exc:
                result, error = None, str(exc)
            except Exception as exc:  # timeout, the helper could not start
                result, error = None, f"the estimate failed ({exc})"
            try:
                self.app.call_from_thread(self._show_estimate, key, result, error)
            except RuntimeError:
                pass  # the app has gone

        threading.Thread(target=work, daemon=True, name="tunedeck-estimate").start()

    def _show_estimate(self, key: tuple, result: dict | None, error: str | None) -> None:
        if key != self._estimate_key:
            return  # the settings changed since; a newer estimate is on its way
        panel = self.query_one(EstimatePanel)
        panel.remove_class("-warn")
        if result is None:
            panel.update(Text(f"No estimate: {error}", style="dim"))
            return
        text = Text()
        total, trainable = result.get("total_params"), result.get("trainable_params")
        if total:
            text.append(f"{total / 1e6:,.1f} M parameters")
            if trainable is not None:
                text.append(f", {trainable / 1e6:,.2f} M trained ({100 * trainable / total:.2f}%)")
            text.append("\n")
        memory = result.get("memory_bytes") or {}
        for key, value in memory.items():
            if key != "total" and isinstance(value, (int, float)):
                text.append(f"  {key.replace('_', ' '):<14} {gib(value):>7} GiB\n", style="dim")
        if "total" in memory:
            text.append(f"  {'total':<14} {gib(memory['total']):>7} GiB\n", style="bold")
        fit = result.get("fit") or {}
        verdict, reason = fit.get("verdict"), fit.get("message") or fit.get("reason") or ""
        if verdict == "no":
            panel.add_class("-warn")
            text.append(f"⚠ Will not fit: {reason}\n", style="bold")
            for suggestion in (result.get("suggestions") or [])[:3]:
                text.append(f"  to fit: {suggestion.get('change')} → {gib(suggestion.get('total'))} GiB\n")
        elif verdict == "tight":
            panel.add_class("-warn")
            text.append(f"⚠ {reason}\n")
        elif reason:
            text.append(f"{'✔ ' if verdict == 'fits' else ''}{reason}\n", style="" if verdict == "fits" else "dim")
        text.rstrip()
        panel.update(text)

    # --- the monitor ---------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="train-choose")
    def _choose_run(self, ref: str | None, initial: bool, stay: bool = False) -> None:
        """Find the run to watch off the UI thread: the project's, else a live one, else the latest.
        ``stay``: follow it but keep the setup pane (settings were just carried here)."""
        run = None
        try:
            if ref:
                run = get_run(ref)
            else:
                runs = list_runs()
                alive = [r for r in runs if r.state in ALIVE]
                pick = (alive or runs or [None])[0]
                run = get_run(str(pick.dir)) if pick is not None else None
                if initial and alive:
                    ref = run.id
        except TunedeckError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
        if run is None:
            return
        pane = "monitor" if (ref or not initial) and not stay else None
        self.app.call_from_thread(self._follow, run, pane)

    @work(thread=True, exclusive=True, group="train-choose")
    def _step_run(self, direction: int) -> None:
        runs = list_runs()  # newest first
        ids = [r.id for r in runs]
        if not ids:
            return
        current = self.watching
        index = ids.index(current) if current in ids else 0
        index = max(0, min(len(ids) - 1, index + direction))
        if ids[index] != current:
            self.app.call_from_thread(self._follow, get_run(str(runs[index].dir)), "monitor")

    def _follow(self, run, pane: str | None = None) -> None:
        """Watch ``run``: replay its history, then follow it (one follower at a time)."""
        if self.follower is not None:
            self.follower.stop()
        self.watching, self._choosing = run.id, None
        self.project.run_id = run.id
        self.view = None
        self.query_one(LossChart).set_data((), (), None)
        self.query_one("#tab-run", Static).update(Text(run.id, style="dim"))
        follower = RunFollower(run)
        self.follower = follower

        def deliver(view: RunView) -> None:
            if self.follower is follower:
                self.app.call_from_thread(self._show_view, follower, view)

        follower.start(deliver, interval=self.follow_interval)
        if pane:
            self.show_pane(pane)

    def _show_view(self, follower: RunFollower, view: RunView) -> None:
        if follower is not self.follower:
            return  # a late view of a run we no longer watch
        previous = self.view
        self.view = view
        self.query_one(RunHeader).show(view)
        self.query_one(RunMetrics).show(view)
        self.query_one(LossChart).set_data(view.losses, view.eval_losses, view.max_steps, waiting=view.alive)
        self.query_one(LogTail).show(view.log_lines)
        if self.sampler is not None:
            self.sampler.pid = view.pid
        if previous is None or previous.state != view.state:
            self.refresh_bindings()
            if previous is not None and not view.alive and previous.alive:
                severity = "information" if view.state in ("completed", "stopped") else "error"
                self.notify(f"{view.run_id}: {view.state}. {view.message or ''}".strip(), severity=severity,
                            timeout=8)

    def _tick(self) -> None:
        if self.view is not None and self.view.alive:
            self.query_one(RunHeader).tick()

    def _stop_run(self, run_id: str) -> None:
        """SIGTERM, then wait out the grace period (SIGKILL after it) on a daemon thread, so quitting
        the app never waits; if the app goes first, the worker still checkpoints and exits on its own."""
        header = self.query_one(RunHeader)

        def left(seconds: float) -> None:
            header.stop_deadline = time.time() + seconds

        def work() -> None:
            from engine import launch

            try:
                outcome, severity = launch.stop_run(run_id, grace=STOP_GRACE, on_wait=left), "information"
            except TunedeckError as exc:
                outcome, severity = str(exc), "error"
            try:
                self.app.call_from_thread(self.notify, outcome, severity=severity, timeout=8)
            except RuntimeError:
                pass

        threading.Thread(target=work, daemon=True, name=f"tunedeck-stop-{run_id}").start()

    @work(thread=True, group="train-control")
    def _resume_run(self, ref: str) -> None:
        from engine import launch

        try:
            run = launch.resume_run(ref)
        except TunedeckError as exc:
            self.app.call_from_thread(self.notify, str(exc), title="Could not resume", severity="error")
            return
        self.app.call_from_thread(self.notify, f"Resuming {run.id}.", timeout=5)

    # --- GPU / CPU sampling --------------------------------------------------------------------------
    def _start_sampler(self) -> None:
        panel = self.query_one(GpuPanel)

        def on_sample(gpus, host) -> None:
            reason = None if gpus else gpu.no_gpu_reason()
            self.app.call_from_thread(self._show_sample, gpus, host, reason)

        pid = self.view.pid if self.view is not None else None
        self.sampler = gpu.Sampler(on_sample, pid=pid, interval=self.sample_interval)
        self.sampler.start()
        panel.loading = False

    def _stop_sampler(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None

    def _show_sample(self, gpus, host, reason) -> None:
        watching = self.view is not None and self.view.pid is not None
        self.query_one(GpuPanel).show(gpus, host, reason, watching)
