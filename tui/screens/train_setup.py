"""The Train screen's setup pane: the run settings (carried from Data and Method, checked by the
engine's own validation as you type), the memory estimate beside them, and Start.

The estimate needs the model's shapes, fetched once per model (the app's Architectures: a helper
process, since counting parameters needs transformers); the memory of the settings, the fit and the
ways to fit are then plain arithmetic in this process (engine.estimate), on every change.

Messages up: ``StartRequested(config)`` when Start is pressed on valid settings (the screen makes
them the project's and calls ``launch``), ``Launched(run)`` when the worker has started, and
``JobFailed`` (one sentence, notified by the screen) when it could not.
"""

from __future__ import annotations

import threading

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, Static
from textual.worker import Worker, WorkerState

from engine import estimate as E
from engine import gpu
from engine.errors import TunedeckError

from ..project import ArchitectureLoaded, LengthsLoaded, Project
from ..widgets.config_form import ConfigForm, field_named
from .base import JobFailed, error_sentence

ESTIMATE_DELAY = 0.6  # seconds of quiet typing before the estimate is recomputed
CHECK_DELAY = 1.5  # seconds of quiet before the full pre-flight check runs for the settings shown


class Preflight:
    """The full pre-flight check (``tunedeck train CONFIG --check --json``: settings, tokenizer, every
    data row, the tokens left to train, memory) for each settings the form shows, once, in a helper
    process. Start waits for the result of its settings and starts only when it passed."""

    timeout = 600.0

    def __init__(self) -> None:
        self._reports: dict[str, dict] = {}
        self._running: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def known(self, key: str) -> dict | None:
        return self._reports.get(key)

    def run(self, key: str) -> dict:
        """The report for these settings (``key``: the config's YAML); blocks: call it from a thread."""
        with self._lock:
            if key in self._reports:
                return self._reports[key]
            done = self._running.get(key)
            mine = done is None
            if mine:
                done = self._running[key] = threading.Event()
        if not mine:
            done.wait(self.timeout)
            return self._reports.get(key) or {"ok": False, "problem": "The pre-flight check did not finish."}
        try:
            report = _check(key, self.timeout)
        finally:
            with self._lock:
                self._running.pop(key, None)
        self._reports[key] = report
        done.set()
        return report


def _check(config_yaml: str, timeout: float) -> dict:
    import tempfile

    from engine.ipc import EngineProcessError, run_json

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="tunedeck-check-") as f:
        f.write(config_yaml)
        f.flush()
        try:
            return run_json(["train", f.name, "--check", "--json"], timeout=timeout, ok_codes=(0, 2))
        except EngineProcessError as exc:
            return {"ok": False, "problem": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a timeout, no helper: said, not raised
            return {"ok": False, "problem": f"The pre-flight check failed ({exc})."}


def explain(spec, method: str, objective: str = "sft") -> str:
    """The long explanation of a field: its glossary term (the method's own for the method field, DPO's
    or KTO's for the objective when chosen)."""
    from engine.config import METHOD_NAMES, OBJECTIVE_NAMES
    from engine.glossary import GLOSSARY

    term = spec.glossary
    if spec.key == "method":
        term = METHOD_NAMES.get(method)
    elif spec.key == "objective":  # SFT: its one line names all three; DPO, KTO: their own term
        term = OBJECTIVE_NAMES.get(objective) if objective != "sft" else None
    return f"{spec.label}: {GLOSSARY.get(term or '', spec.help)}"


def setup_of(project: Project) -> tuple:
    """What of the project the settings form shows."""
    return project.model, project.data, project.method, project.settings


def initial_settings(project: Project) -> dict:
    """RunConfig defaults for the method and objective, then what Method (or Home) carried, then model
    and data."""
    from engine.config import RunConfig

    carried = project.settings
    method = project.method or carried.get("method") or "lora"
    try:
        settings = RunConfig.defaults_for(method, str(carried.get("objective") or "sft")).to_dict()
    except TunedeckError:
        settings = RunConfig().to_dict()
    for key, value in carried.items():
        if key == "lora" and isinstance(value, dict):
            settings["lora"] = {**settings["lora"], **value}
        else:
            settings[key] = value
    if carried.get("max_steps") is not None and "epochs" not in carried:
        settings["epochs"] = None
    settings.update(model=project.model, data=project.data)
    return settings


# --- the estimate ------------------------------------------------------------------------------------
def estimate_text(est: E.Estimate, fit: E.Fit, suggestions: list[dict], sized: str, expected: int,
                  calibration: str) -> Text:
    text = Text()
    total, trainable = est.total_params, est.trainable_params
    if total:
        text.append(f"{total / 1e6:,.1f} M parameters")
        text.append(f", {trainable / 1e6:,.2f} M trained ({100 * trainable / total:.2f}%)")
        text.append("\n")
    memory = est.memory.to_dict()
    for key, value in memory.items():
        if key != "total":
            text.append(f"  {key.replace('_', ' '):<14} {E.gib(value):>11}\n", style="dim")
    text.append(f"  {'total':<14} {E.gib(memory['total']):>11}\n", style="bold")
    text.append(f"  {sized}\n", style="dim")
    if calibration:
        text.append(f"  expected {E.gib(expected)}: {calibration}\n", style="dim")
    verdict, reason = fit.verdict, fit.reason
    if verdict == "no":
        text.append(f"⚠ Will not fit: {reason}\n", style="bold")
        for suggestion in suggestions[:3]:
            text.append(f"  to fit: {suggestion['change']} → {E.gib(suggestion['total'])}\n")
    elif verdict == "tight":
        text.append(f"⚠ {reason}\n")
    elif reason:
        text.append(f"{'✔ ' if verdict == 'fits' else ''}{reason}\n", style="" if verdict == "fits" else "dim")
    text.rstrip()
    return text


def estimate_for(arch: E.Architecture, config, lengths: list[int] | None) -> tuple[Text, bool]:
    """The panel's text for these settings, sized from the data's longest rows when they are known,
    and whether to warn (will not fit, or only just)."""
    from engine import calibration

    device = "cpu" if gpu.no_gpu_reason() else "cuda"
    plan = E.plan_for(config, device=device, lengths=lengths, arch=arch)
    est = E.estimate(arch, plan)
    total, calibrated = calibration.calibrated(est.memory.total, device, arch.model_type,
                                               E.calibration_method(config.method, config.objective))
    gpus, reason = gpu.memory_targets(device=device)
    fit = E.judge_fit(total, gpus, reason)
    suggestions = E.ways_to_fit(arch, plan, fit.gpu["memory_free"]) if fit.verdict in ("no", "tight") and fit.gpu else []
    shape = f"{plan.seq_len} tokens" + (f" x {plan.batch_size}" if plan.batch_size > 1 else "")
    sized = (f"sized from your data: its largest batch is {shape}" if lengths
             else f"sized for rows of max length ({shape}); measuring your data…")
    return estimate_text(est, fit, suggestions, sized, total, calibrated), fit.verdict in ("no", "tight")


class EstimatePanel(Static):
    DEFAULT_CSS = """
    EstimatePanel { height: auto; border: round $primary-muted; border-title-color: $text-muted; padding: 0 1; }
    EstimatePanel.-warn { border: round $warning; }
    """

    def on_mount(self) -> None:
        self.border_title = "Memory estimate"

    def show(self, text: Text, warn: bool = False) -> None:
        self.set_class(warn, "-warn")
        self.update(text)

    def note(self, text: str) -> None:
        self.show(Text(text, style="dim"))


# --- the pane ------------------------------------------------------------------------------------------
class SetupPane(VerticalScroll):
    class StartRequested(Message):
        """Start was pressed and the settings are valid: make them the project's, then ``launch``."""

        def __init__(self, config) -> None:
            super().__init__()
            self.config = config

    class Checked(Message, bubble=False):
        """The pre-flight check of the settings ``key`` is done."""

        def __init__(self, key: str, report: dict) -> None:
            super().__init__()
            self.key, self.report = key, report

    class Launched(Message):
        """The worker of a new run has started."""

        def __init__(self, run) -> None:
            super().__init__()
            self.run = run


    def __init__(self, project: Project, **kwargs) -> None:
        super().__init__(**kwargs)
        self.showing = setup_of(project)  # the project's settings the form was last loaded from
        self._settings = initial_settings(project)
        self.valid = False
        self.launching = False
        self._estimate_timer: Timer | None = None
        self._estimate_key: tuple | None = None
        self._estimate_config = None  # the settings the newest estimate is for
        self._arch_failed: tuple[str, str] | None = None  # (model, why): not asked again for that model
        self._check_key: str | None = None  # the settings the newest pre-flight check is for
        self._check_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="setup-main"):
            yield ConfigForm(self._settings, id="config-form")
            yield Static(id="field-detail")
            yield Static(id="config-error")
            yield Static(id="preflight")
            with Horizontal(id="setup-actions"):
                yield Button("Start training", id="start", variant="primary", compact=True)
                yield Static("ctrl+s · keeps running when you close the terminal")
        with Vertical(id="setup-side"):
            yield EstimatePanel("", id="estimate")

    def on_mount(self) -> None:
        self.validate()

    # --- following the project ---------------------------------------------------------------------
    def show_project(self, project: Project) -> None:
        """Load the project's settings into the form, unless it already shows them."""
        if setup_of(project) == self.showing:
            return
        self.showing = setup_of(project)
        self.query_one(ConfigForm).load(initial_settings(project))
        self.validate()

    # --- checking ------------------------------------------------------------------------------------
    def on_config_form_changed(self, message: ConfigForm.Changed) -> None:
        self.validate()

    def on_config_form_focused(self, message: ConfigForm.Focused) -> None:
        form = self.query_one(ConfigForm)
        self.query_one("#field-detail", Static).update(Text(explain(message.spec, form.method, form.objective)))

    def validate(self):
        """Check the form with the engine's own validation; show its sentence inline. -> RunConfig|None"""
        from engine.config import RunConfig
        from engine.errors import ConfigError

        form = self.query_one(ConfigForm)
        line = self.query_one("#config-error", Static)
        try:
            config = RunConfig.from_dict(form.values(), source="settings")
        except ConfigError as exc:
            self.valid = False
            form.flag(field_named(str(exc)))
            line.update(Text(str(exc)))
            line.add_class("-bad")
            self.query_one("#start", Button).disabled = True
            return None
        self.valid = True
        form.flag(None)
        length = f"{config.max_steps} steps" if config.max_steps else f"{config.epochs:g} epoch(s)"
        effective = config.batch_size * config.gradient_accumulation_steps
        what = config.method
        if config.objective != "sft":  # "DPO with lora, from run X"
            what = f"{config.objective.upper()} with {config.method}" + (
                f" from run {config.init_from}" if config.init_from else "")
        unit = {"dpo": "pairs", "grpo": "sampled answers"}.get(config.objective, "examples")
        if config.objective == "grpo":  # batch_size counts answers: num_generations to each prompt
            unit += f" ({effective // max(1, config.num_generations)} prompts x {config.num_generations})"
        line.update(Text(f"✔ Ready: {what} on {config.model}, {length}, {effective} {unit} per update."))
        line.remove_class("-bad")
        self.query_one("#start", Button).disabled = self.launching
        self._schedule_estimate(config)
        self._schedule_check(config)
        return config

    # --- the pre-flight check --------------------------------------------------------------------
    @property
    def preflight(self) -> Preflight:
        app = self.app
        if not hasattr(app, "preflight"):
            app.preflight = Preflight()
        return app.preflight

    def _schedule_check(self, config) -> None:
        key = config.to_yaml()
        if key == self._check_key:
            return
        self._check_key = key
        report = self.preflight.known(key)
        if report is not None:
            self._show_check(report)
            return
        self.query_one("#preflight", Static).update(Text("pre-flight: waiting for the settings to settle…", style="dim"))
        if self._check_timer is not None:
            self._check_timer.stop()
        self._check_timer = self.set_timer(CHECK_DELAY, lambda: self._start_check(key))

    def _start_check(self, key: str) -> None:
        if key != self._check_key:
            return
        self.query_one("#preflight", Static).update(
            Text("pre-flight: checking the tokenizer, every row and the memory…", style="dim"))

        def work() -> None:
            self.post_message(self.Checked(key, self.preflight.run(key)))

        threading.Thread(target=work, daemon=True, name="tunedeck-preflight").start()

    def on_setup_pane_checked(self, message: Checked) -> None:
        if message.key == self._check_key:
            self._show_check(message.report)

    def _show_check(self, report: dict) -> None:
        line = self.query_one("#preflight", Static)
        if report.get("ok"):
            warnings = report.get("warnings") or []
            line.update(Text("pre-flight ✔ " + (warnings[0] if warnings else "the run can start"),
                             style="dim" if not warnings else ""))
            line.remove_class("-bad")
        else:
            line.update(Text(f"pre-flight ✘ {report.get('problem')}"))
            line.add_class("-bad")

    # --- starting ------------------------------------------------------------------------------------
    @on(Button.Pressed, "#start")
    def start(self) -> None:
        if self.launching:
            return  # one start at a time (ctrl+s pressed twice)
        config = self.validate()
        if config is None:
            self.notify(str(self.query_one("#config-error", Static).render()), severity="error")
            return
        self.launching = True
        self.query_one("#start", Button).disabled = True
        self.post_message(self.StartRequested(config))

    def launch(self, config) -> None:
        """Start the worker (after ``StartRequested``)."""
        self._launch(config)

    @work(thread=True, exclusive=True, group="train-launch", exit_on_error=False)
    def _launch(self, config) -> None:
        from engine import launch

        key = config.to_yaml()
        report = self.preflight.run(key)  # the full check first (at once when it already ran)
        self.post_message(self.Checked(key, report))
        if not report.get("ok"):
            raise TunedeckError(report.get("problem") or "The pre-flight check failed.")
        try:
            run = launch.start_run(config)
        except OSError as exc:  # e.g. the run store is not writable
            raise TunedeckError(f"Could not start the worker: {exc}.") from None
        self.post_message(self.Launched(run))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "train-launch" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self.launching = False
            self.query_one("#start", Button).disabled = not self.valid
            if event.state == WorkerState.ERROR:
                self.post_message(JobFailed(error_sentence(event.worker.error), "Could not start the run"))

    # --- the estimate ------------------------------------------------------------------------------
    def _schedule_estimate(self, config) -> None:
        lora = config.lora
        key = (config.model, config.method, config.batch_size, config.max_length, config.gradient_accumulation_steps,
               lora.r, lora.dropout, str(lora.targets), config.gradient_checkpointing, config.data,
               config.padding_free, config.objective, config.init_from)
        if key == self._estimate_key:
            return
        self._estimate_key = key
        self._estimate_config = config
        if self._estimate_timer is not None:
            self._estimate_timer.stop()
        self._estimate_timer = self.set_timer(ESTIMATE_DELAY, self._estimate)

    def _lengths(self, config) -> list[int] | None:
        """The data's longest rows if measured; else start measuring them (the panel updates then)."""
        lengths = self.app.data_lengths
        if not isinstance(config.data, str):  # a mix of sources: sized for rows of max length
            return None
        known = lengths.known(config.model, config.data, config.max_length)
        if known is None and lengths.failed(config.model, config.data, config.max_length) is None:
            lengths.fetch_for(self, config.model, config.data, config.max_length)
        return known

    def on_lengths_loaded(self, message: LengthsLoaded) -> None:
        config = self._estimate_config
        if config is not None and (config.model, config.data, config.max_length) == (
                message.model, message.data, message.max_length):
            self._estimate()

    def _estimate(self) -> None:
        config = self._estimate_config
        panel = self.query_one(EstimatePanel)
        arch = self.app.architectures.known(config.model)
        if arch is not None:
            self._show_estimate(arch, config)
        elif self._arch_failed is not None and self._arch_failed[0] == config.model:
            panel.note(f"No estimate: {self._arch_failed[1]}")
        else:
            panel.note("estimating…")
            self.app.architectures.fetch_for(self, config.model)


    def on_architecture_loaded(self, message: ArchitectureLoaded) -> None:
        config = self._estimate_config
        if config is None or config.model != message.model:
            return  # the model changed since; its own estimate is on its way
        if message.arch is None:
            self._arch_failed = (message.model, message.error or "")
            self.query_one(EstimatePanel).note(f"No estimate: {message.error}")
            return
        self._show_estimate(message.arch, config)

    def _show_estimate(self, arch: E.Architecture, config) -> None:
        panel = self.query_one(EstimatePanel)
        try:
            text, warn = estimate_for(arch, config, self._lengths(config))
        except TunedeckError as exc:
            panel.note(f"No estimate: {exc}")
            return
        panel.show(text, warn)
