"""`tunedeck delete`: only a finished run's own folder goes; live runs, foreign folders and runs
whose data lives inside them are refused with one sentence."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.runs import delete_run
from engine.errors import TunedeckError
from run_folders import T0, make_run


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "engine", "delete", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


def test_cli_delete_needs_yes_without_a_terminal_and_then_deletes(tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text("{}\n")
    run = make_run("20260101-090000-x-lora", "completed", step=1, max_steps=1, created=T0, data=str(data))
    refused = _cli(run.id)
    assert refused.returncode != 0 and "add --yes" in refused.stderr and "Traceback" not in refused.stderr
    assert run.dir.exists()
    done = _cli(run.id, "--yes")
    assert done.returncode == 0 and "Deleted run" in done.stdout
    assert not run.dir.exists() and data.read_text() == "{}\n"


def test_delete_refuses_live_runs_and_foreign_folders(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = make_run("20260101-100000-x-lora", "running", step=1, max_steps=9, created=T0, pid=sleeper.pid)
        with pytest.raises(TunedeckError, match="still running"):
            delete_run(live.id)
        assert live.dir.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    outside = tmp_path / "elsewhere" / "a-run"
    outside.mkdir(parents=True)
    (outside / "status.json").write_text('{"state": "completed"}')
    with pytest.raises(TunedeckError, match="not a folder inside the run store"):
        delete_run(str(outside))
    assert outside.exists()
    inside = make_run("20260101-110000-x-lora", "completed", step=1, max_steps=1, created=T0)
    (inside.dir / "data.jsonl").write_text("{}\n")
    inside.config_path.write_text(f"model: demo\ndata: {inside.dir / 'data.jsonl'}\n")
    with pytest.raises(TunedeckError, match="inside its own folder"):
        delete_run(inside.id)
    assert (inside.dir / "data.jsonl").exists()
