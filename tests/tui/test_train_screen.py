"""The Train screen: the settings form, the GPU panel (NVML faked at the pynvml boundary, the CPU
fallback real), and the monitor on real tiny training runs — started from the screen, re-attached
after the end, stopped and resumed with its keys, and outliving a TUI killed by SIGHUP. Snapshots of
the monitor use a run folder written with fixed events so they are stable."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine import launch
from engine.config import RunConfig
from engine.follow import follow
from engine.paths import runs_dir
from engine.runs import Run
from fake_nvml import GIB, FakeGpu, FakeNVML, NVMLError_DriverNotLoaded, install
from tui.app import TunedeckApp
from tui.screens.confirm import ConfirmScreen as StopRunScreen
from tui.screens.train import TrainScreen
from tui.screens.train_monitor import MonitorPane
from tui.widgets.config_form import ConfigForm, FieldRow
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.loss_chart import LossChart, LossPlot
from tui.widgets.run_header import RunHeader
from waiting import until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(400)


def tiny_settings(**extra) -> dict:
    d = {"max_steps": 4, "epochs": None, "batch_size": 2, "max_length": 128, "save_steps": 2, "eval_steps": 2,
         "logging_steps": 1}
    d.update(extra)
    return d


def start_tiny(tiny_model, **extra):
    d = {"model": str(tiny_model), **tiny_settings(**extra)}
    return launch.start_run(RunConfig.from_dict(d))


def text(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


def panel_text(screen) -> str:
    panel = screen.query_one(GpuPanel)
    parts = [str(panel.border_title)]
    for static in panel.query("Static"):
        if static.display:
            parts.append(str(static.render()))
    return "\n".join(parts)


async def open_train(pilot):
    await pilot.press("3")
    await pilot.pause()
    assert isinstance(pilot.app.screen, TrainScreen)
    return pilot.app.screen


# --- the GPU panel ---------------------------------------------------------------------------------

async def test_gpu_panel_shows_each_gpu_from_nvml(monkeypatch):
    install(monkeypatch, FakeNVML(gpus=[FakeGpu(), FakeGpu(name="NVIDIA A10", total=24 * GIB, used=23 * GIB,
                                                             utilization=None, power_mw=60_000, limit_mw=150_000)]))
    app = TunedeckApp()
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_train(pilot)
        await pilot.press("m")
        await until(pilot, lambda: len(screen.query_one(GpuPanel).samples) == 2, 20, "two GPU samples")
        await pilot.pause()
        shown = panel_text(screen)
        assert "GPUs (2)" in shown
        assert "0 NVIDIA H100 80GB HBM3" in shown and "util 87%" in shown and "61°C" in shown
        assert "312/700 W" in shown and "20.0/80.0 GiB" in shown
        assert "1 NVIDIA A10" in shown and "23.0/24.0 GiB" in shown and "60/150 W" in shown
        assert "no NVIDIA" not in shown.lower()
        assert not screen.query_one("#gpu-reason").display


async def test_without_the_nvml_library_one_line_says_so_and_cpu_ram_are_shown(monkeypatch):
    install(monkeypatch, None)
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_train(pilot)
        await pilot.press("m")
        await until(pilot, lambda: screen.query_one(GpuPanel).host is not None, 20, "a host sample")
        await pilot.pause()
        assert text(screen, "#gpu-reason") == "NVML library not installed (pip install nvidia-ml-py)."
        shown = panel_text(screen)
        assert "CPU / RAM (no GPU)" in shown
        assert "machine CPU" in shown and "machine RAM" in shown  # no run is alive: the machine's figures


async def test_driver_not_loaded_is_said_in_one_line(monkeypatch):
    install(monkeypatch, FakeNVML(gpus=[FakeGpu()], init_error=NVMLError_DriverNotLoaded))
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_train(pilot)
        await pilot.press("m")
        await until(pilot, lambda: screen.query_one(GpuPanel).host is not None, 20, "a host sample")
        await pilot.pause()
        assert text(screen, "#gpu-reason") == "No NVIDIA GPU usable: the NVIDIA driver is not loaded."


# --- the settings form -------------------------------------------------------------------------------

async def test_settings_carried_from_method_are_checked_by_the_engine_as_you_type(tiny_model):
    app = TunedeckApp(model=str(tiny_model))
    app.project = replace(app.project, method="lora",
                          settings={"learning_rate": 1e-4, "max_steps": 50, "lora": {"r": 8, "alpha": 16}})
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_train(pilot)
        form = screen.query_one(ConfigForm)
        assert screen.query_one("#field-learning-rate").value == "0.0001"
        assert screen.query_one("#field-max-steps").value == "50"
        assert screen.query_one("#field-epochs").value == ""
        assert screen.query_one("#field-lora-r").value == "8"
        assert text(screen, "#config-error").startswith("✔ Ready: lora on")

        batch = screen.query_one("#field-batch-size")
        batch.focus()
        batch.value = "x"
        await pilot.pause()
        assert text(screen, "#config-error") == "settings: batch_size must be a positive integer, got 'x'."
        assert screen.query_one("#row-field-batch-size", FieldRow).has_class("-invalid")
        assert screen.query_one("#start").disabled
        assert "Batch size:" in text(screen, "#field-detail")  # the focused field explained at length

        batch.value = "4"
        epochs = screen.query_one("#field-epochs")
        epochs.value = "2"
        await pilot.pause()
        assert "give either max_steps or epochs" in text(screen, "#config-error")
        assert screen.query_one("#row-field-max-steps", FieldRow).has_class("-invalid")
        epochs.value = ""
        await pilot.pause()
        assert not screen.query_one("#start").disabled
        assert not any(row.has_class("-invalid") for row in form.query(FieldRow))

        assert screen.query_one("#row-field-lora-r").display
        screen.query_one("#field-method").value = "full"
        await pilot.pause()
        assert form.has_class("-full") and not screen.query_one("#row-field-lora-r").display
        assert "lora" not in form.values() and form.values()["method"] == "full"


async def test_start_runs_the_full_preflight_check_and_refuses_what_would_fail(tiny_model, tmp_path):
    long = tmp_path / "long.jsonl"  # every prompt longer than max_length: nothing would be left to train
    long.write_text(json.dumps({"messages": [{"role": "user", "content": "word " * 200},
                                             {"role": "assistant", "content": "ok"}]}) + "\n")
    app = TunedeckApp(model=str(tiny_model), data=str(long))
    app.project = replace(app.project, settings={**tiny_settings(), "max_length": 16})
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_train(pilot)
        assert text(screen, "#config-error").startswith("✔ Ready")  # the settings themselves are valid
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "pre-flight ✘" in text(screen, "#preflight"), 120, "the pre-flight check")
        assert "keeps a token to train" in text(screen, "#preflight")
        await pilot.pause(0.5)
        assert screen.pane == "setup" and not any(runs_dir().iterdir())  # nothing started


# --- the monitor on real runs --------------------------------------------------------------------------

async def test_start_from_the_screen_and_watch_the_run_reach_its_final_step(tiny_model):
    app = TunedeckApp(model=str(tiny_model))
    app.project = replace(app.project, settings=tiny_settings())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_train(pilot)
        assert screen.pane == "setup"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: screen.pane == "monitor" and screen.view is not None, 120, "the monitor")  # Start waits for the pre-flight check
        run_id = app.project.run_id
        assert run_id and (runs_dir() / run_id / "events.jsonl").parent.is_dir()
        states = set()

        def done():
            if screen.view is not None:
                states.add(screen.view.state)
            return screen.view is not None and screen.view.state == "completed"

        await until(pilot, done, 240, "the run to complete")
        await pilot.pause(0.3)
        assert states & {"starting", "running"}  # watched live, not only after the fact
        assert "step 4/4" in text(screen, "#run-facts") and "100%" in text(screen, "#run-facts")
        assert text(screen, "#run-title").startswith("✔ completed")
        plot = screen.query_one(LossPlot)
        assert [s for s, _ in plot.losses] == [1, 2, 3, 4]
        assert [s for s, _ in plot.eval_losses] == [2, 4]
        assert "loss " in text(screen, "#run-metrics") and "tok/s" in text(screen, "#run-metrics")
        assert screen.query_one("#log-tail").lines  # worker.log lines are shown
        # the worker, not the TUI, owns the run: it is in its own session
        assert Run(runs_dir() / run_id).read_status()["state"] == "completed"


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory):
    """A real tiny run, trained to the end once for the re-attach tests (in its own run store)."""
    home = tmp_path_factory.mktemp("finished-home")
    old = os.environ.get("TUNEDECK_HOME")
    os.environ["TUNEDECK_HOME"] = str(home)
    try:
        run = start_tiny(tiny_model, max_steps=6, eval_steps=3, save_steps=3)
        last = list(follow(run, interval=0.2))[-1]
    finally:
        if old is None:
            os.environ.pop("TUNEDECK_HOME", None)
        else:
            os.environ["TUNEDECK_HOME"] = old
    assert last.state == "completed", run.log_tail(20)
    return run


async def test_reattach_to_a_finished_run_shows_the_full_curve(finished_run, monkeypatch):
    monkeypatch.setenv("TUNEDECK_HOME", str(finished_run.dir.parent.parent))
    logged = [e["step"] for e in finished_run.events() if e["type"] == "log"]
    app = TunedeckApp(attach_run=finished_run.id)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, TrainScreen) and app.screen.view is not None, 20,
                    "the monitor")
        screen = app.screen
        assert screen.pane == "monitor"
        plot = screen.query_one(LossPlot)
        await until(pilot, lambda: len(plot.losses) == len(logged), 10, "the whole history")
        assert [s for s, _ in plot.losses] == logged == [1, 2, 3, 4, 5, 6]
        assert text(screen, "#run-title").startswith("✔ completed")
        assert "step 6/6" in text(screen, "#run-facts")

        caption = lambda: text(screen, "#loss-caption")  # noqa: E731
        assert "smoothing on" in caption()
        await pilot.press("s")
        assert "smoothing off" in caption() and not plot.smoothing
        await pilot.press("o")
        assert app.clipboard == str(finished_run.dir)

        # the stop key is off for a finished run; resume is refused with a sentence, not a crash
        assert screen.check_action("stop", ()) is None
        await pilot.press("x")
        assert not isinstance(app.screen, StopRunScreen)


async def test_keys_stop_with_a_checkpoint_and_resume(tiny_model):
    # long enough that a quiet machine (30 tiny steps a second) is still training when x is pressed
    run = start_tiny(tiny_model, max_steps=300, save_steps=1000, eval_steps=0)
    app = TunedeckApp(attach_run=run.id)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, TrainScreen) and app.screen.view is not None, 20,
                    "the monitor")
        screen = app.screen
        await until(pilot, lambda: screen.view.state == "running" and screen.view.step >= 1, 120, "training")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, StopRunScreen), 20, "the stop question")  # a loaded CI
        await pilot.press("y")
        await pilot.pause()
        stopping = []  # for each frame seen while stopping: did it show the forced-stop countdown?

        def stopped():
            if screen.view.state == "stopping":
                stopping.append("forced stop in" in text(screen, "#run-reason"))
            return screen.view.state == "stopped"

        await until(pilot, stopped, 90, "the run to stop")
        assert all(stopping), "a stopping frame without the forced-stop countdown"
        view = screen.view
        assert view.step < 300 and view.checkpoints and view.checkpoints[-1] == view.step
        assert (run.dir / "checkpoints" / f"checkpoint-{view.step}" / "trainer_state.json").is_file()
        assert "Press r to resume" in text(screen, "#run-reason")
        stopped_at = view.step

        await pilot.press("r")
        await until(pilot, lambda: screen.view.attempts == 2, 120, "the resumed attempt")
        await until(pilot, lambda: screen.view.state == "completed", 240, "the resumed run to complete")
        assert screen.view.resumed_from == f"checkpoint-{stopped_at}"
        assert [s for s, _ in screen.query_one(LossPlot).losses] == list(range(1, 301))


def test_the_run_outlives_a_tui_killed_by_sighup(tiny_model, tmp_path):
    """A real `tunedeck attach` in a real terminal (tmux); SIGHUP (the SSH connection drops) kills it,
    and the training run carries on to the end."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is needed to give the TUI a real terminal")
    run = start_tiny(tiny_model, max_steps=300, eval_steps=0, save_steps=1000)
    socket = f"tunedeck-test-{os.getpid()}"
    tmux = ["tmux", "-L", socket]
    command = (f"exec env TUNEDECK_HOME={os.environ['TUNEDECK_HOME']} TUNEDECK_CONFIG={tmp_path / 'cfg'} "
               f"HF_HUB_OFFLINE=1 {sys.executable} -m engine attach {run.id}")
    subprocess.run([*tmux, "new-session", "-d", "-s", "hup", "-x", "100", "-y", "30", "-c", str(ROOT), command],
                   check=True)
    try:
        tui_pid = int(subprocess.run([*tmux, "display", "-p", "-t", "hup", "#{pane_pid}"], capture_output=True,
                                     text=True, check=True).stdout)
        deadline = time.time() + 120
        screen = ""
        while time.time() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "hup"], capture_output=True, text=True).stdout
            if "● running" in screen and "step " in screen:
                break
            time.sleep(0.3)
        assert "● running" in screen, screen
        os.kill(tui_pid, signal.SIGHUP)
        for _ in range(100):
            if not _alive(tui_pid):
                break
            time.sleep(0.1)
        assert not _alive(tui_pid), "the TUI did not exit on SIGHUP"
        worker_pid = run.read_status()["pid"]
        last = list(follow(run.id, interval=0.2))[-1]
        assert last.state == "completed", run.log_tail(20)
        assert (last.step, last.attempts) == (300, 1)  # the same worker ran on to the end, no resume
        assert run.read_status()["pid"] == worker_pid
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def _alive(pid: int) -> bool:
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False


# --- snapshots of the monitor (a run folder with fixed events) ----------------------------------------

SNAP_RUN = "20250301-101500-demo-lora"


def write_fixed_run() -> Run:
    """A finished 120-step run written event by event, as the worker would have, with fixed times."""
    folder = runs_dir() / SNAP_RUN
    folder.mkdir(mode=0o700)
    run = Run(folder)
    run.config_path.write_text("model: demo\ndata: demo\nmethod: lora\nmax_steps: 120\n")
    t0 = 1_740_824_100.0
    run.append_event({"type": "start", "time": t0, "step": 0, "max_steps": 120, "num_examples": 340,
                      "num_eval_examples": 60, "method": "lora", "trainable_params": 4_884_480,
                      "total_params": 139_399_488, "device": "cpu", "resumed_from": None,
                      "message": "Training LoRA on 340 examples, 120 steps, on cpu"})
    for s in range(1, 121):
        loss = 2.5 * math.exp(-s / 40) + 0.4 + 0.08 * math.sin(s * 1.7)
        run.append_event({"type": "log", "time": t0 + 3 * s, "step": s, "loss": round(loss, 4),
                          "learning_rate": 2e-4 * (1 - s / 120), "grad_norm": round(0.5 + 0.2 * math.cos(s), 3),
                          "epoch": round(s / 42.5, 4), "tokens_per_second": 1234.5})
        if s % 25 == 0:
            run.append_event({"type": "eval", "time": t0 + 3 * s + 1, "step": s,
                              "eval_loss": round(2.4 * math.exp(-s / 45) + 0.55, 4)})
            run.append_event({"type": "checkpoint", "time": t0 + 3 * s + 2, "step": s,
                              "path": f"checkpoints/checkpoint-{s}"})
    message = "Completed 120 steps; the adapter is in adapter/."
    run.append_event({"type": "end", "time": t0 + 370, "step": 120, "state": "completed", "message": message})
    run.write_status(state="completed", step=120, max_steps=120, message=message, created=t0 - 20)
    run.log_path.write_text("".join(f"{{'loss': {2.5 * math.exp(-s / 40) + 0.4:.4f}, 'step': {s}}}\n"
                                    for s in range(100, 121)) + f"completed: {message}\n")
    return run


def _snapshot_app(monkeypatch):
    install(monkeypatch, FakeNVML(gpus=[FakeGpu()]))
    monkeypatch.setattr(MonitorPane, "sample_interval", 3600.0)  # one sample: a stable sparkline
    write_fixed_run()
    return TunedeckApp(attach_run=SNAP_RUN)


async def _monitor_ready(pilot):
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, TrainScreen) and app.screen.view is not None
                and app.screen.view.state == "completed" and app.screen.query_one(GpuPanel).samples
                and app.screen.query_one(LossPlot).ready, 20,
                "the monitor to settle")
    await pilot.pause(0.3)


def test_monitor_snapshot_80x24(snap_compare, monkeypatch):
    assert snap_compare(_snapshot_app(monkeypatch), terminal_size=(80, 24), run_before=_monitor_ready)


def test_monitor_snapshot_160x48(snap_compare, monkeypatch):
    assert snap_compare(_snapshot_app(monkeypatch), terminal_size=(160, 48), run_before=_monitor_ready)


def test_attach_to_an_unknown_run_says_so_in_one_sentence():
    out = subprocess.run([sys.executable, "-m", "engine", "attach", "no-such-run"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("tunedeck: No run 'no-such-run' in ")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


async def test_a_method_chosen_opens_train_on_its_settings_not_the_last_runs_monitor(finished_run, monkeypatch):
    from tui.screens.method import MethodScreen

    monkeypatch.setenv("TUNEDECK_HOME", str(finished_run.dir.parent.parent))
    app = TunedeckApp()
    app.project = replace(app.project, run_id=finished_run.id)  # a run watched earlier in this session
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        screen = app.screen
        await until(pilot, lambda: screen.pane == "monitor" and screen.view is not None, 20, "the run's monitor")

        await pilot.press("2")
        method = app.screen
        assert isinstance(method, MethodScreen)
        method.choose("lora")  # what "Use LoRA" does
        await pilot.pause()
        assert app.screen is screen and screen.pane == "setup"
        await pilot.pause(1.0)  # nothing flips it back to the monitor afterwards
        assert screen.pane == "setup" and screen.watching == finished_run.id


async def test_the_monitor_warns_of_overfitting_while_it_happens():
    from run_folders import T0, make_run

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # the run's live worker
    try:
        losses = [(s, 2.0 - 0.02 * s) for s in range(1, 51)]  # training loss falls all along
        evals = [(10, 1.9), (20, 1.7), (30, 1.6), (40, 1.65), (50, 1.72)]  # eval turns up after step 30
        run = make_run("20260101-090000-demo-lora", "running", step=50, max_steps=200, created=T0, started=T0,
                       pid=sleeper.pid, losses=losses, evals=evals)
        app = TunedeckApp(attach_run=run.id)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, TrainScreen) and app.screen.view is not None, 20,
                        "the monitor")
            await until(pilot, lambda: "Overfitting" in text(app.screen, "#run-reason"), 10, "the warning")
            warning = text(app.screen, "#run-reason")
            assert "eval loss has risen at two evaluations in a row" in warning
            assert "keep the best weights (step 30)" in warning and "lower learning rate" in warning
    finally:
        sleeper.kill()
        sleeper.wait()
