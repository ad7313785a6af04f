"""The run store: one folder per run under ``$TUNEDECK_HOME/runs/<run-id>/``.

    config.yaml      the RunConfig the run was started with
    status.json      the current state, replaced atomically (write temp, os.replace)
    events.jsonl     append-only, one JSON object a line, flushed at every log step
    worker.log       the worker's stdout and stderr
    checkpoints/     checkpoint-N/ folders written by the trainer
    adapter/         the final LoRA/QLoRA adapter, or model/ for full fine-tuning

Resumed runs: a ``start`` event carries the step training (re)starts from. When a run is resumed
from checkpoint-N after its events had gone past N (it crashed or was killed between checkpoints),
the steps after N are trained, and logged, again: a viewer drops the earlier points with a step
greater than N when it meets that ``start`` event (``engine.run_state``, the one reducer of events).

Everything a viewer shows is read from here, so the TUI, a second TUI and the CLI agree. A run whose
status says it is alive but whose worker process is gone is reported ``crashed`` with the last
lines of its log. No ML imports here: the TUI uses this module directly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TunedeckError
from .paths import runs_dir

ALIVE = ("starting", "running", "stopping")
FINAL = ("completed", "stopped", "failed", "crashed")


class RunNotFound(TunedeckError):
    pass


class NoWeights(TunedeckError):
    """A run has no trained weights (yet), or not the checkpoint asked for."""


@dataclass(frozen=True)
class Weights:
    """Trained weights of a run: a PEFT adapter or a whole model, in one folder."""

    kind: str  # "adapter" | "full"
    path: Path
    label: str  # "adapter" | "model" | "checkpoint-N"
    step: int | None = None  # the checkpoint's step; None for the final adapter/model

    @property
    def is_adapter(self) -> bool:
        return self.kind == "adapter"


def _weights_in(path: Path, label: str, step: int | None = None) -> Weights | None:
    if (path / "adapter_config.json").is_file():
        return Weights("adapter", path, label, step)
    if (path / "config.json").is_file():
        return Weights("full", path, label, step)
    return None


def _now() -> float:
    return round(time.time(), 3)


def write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def pid_alive(pid: int | None, started: float | None = None) -> bool:
    """True if ``pid`` runs and is not a zombie; ``started`` (its create time) guards against reuse."""
    if not pid:
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 2.0
    except Exception:
        return False


def crash_message(log_lines) -> str:
    """Why a run whose worker vanished is shown crashed: it could not say so itself."""
    last = next((line for line in reversed(list(log_lines)) if line.strip()), "")
    return ("The worker process ended without saying why (killed, or out of memory?)"
            + (f"; last log line: {last}" if last else ""))


def process_start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


@dataclass
class RunInfo:
    """A run as a viewer sees it: status with liveness applied, plus what the config says."""

    id: str
    dir: Path
    state: str
    step: int = 0
    max_steps: int | None = None
    pid: int | None = None
    created: float | None = None
    updated: float | None = None
    model: str | None = None
    data: str | None = None
    method: str | None = None
    message: str | None = None
    best_eval_loss: float | None = None
    log_tail: list[str] = field(default_factory=list)
    last_loss: float | None = None
    tokens_per_second: float | None = None

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("dir", "log_tail")}
        d["run_dir"] = str(self.dir)
        if self.log_tail:
            d["log_tail"] = self.log_tail
        return d


class Run:
    def __init__(self, path: Path) -> None:
        self.dir = Path(path)
        self.id = self.dir.name

    # --- paths -----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def status_path(self) -> Path:
        return self.dir / "status.json"

    @property
    def events_path(self) -> Path:
        return self.dir / "events.jsonl"

    @property
    def log_path(self) -> Path:
        return self.dir / "worker.log"

    @property
    def checkpoints_dir(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.dir / "adapter"

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    # --- status ----------------------------------------------------------------------------
    def read_status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def write_status(self, **fields) -> dict:
        """Merge ``fields`` into status.json atomically. Only one process writes at a time:
        the launcher before the worker starts, the worker while it runs, the launcher after."""
        status = self.read_status()
        status.update(fields)
        status["updated"] = _now()
        write_json_atomic(self.status_path, status)
        return status

    # --- events ----------------------------------------------------------------------------
    def append_event(self, event: dict) -> None:
        event = {"time": _now(), **event}
        line = json.dumps(event, separators=(",", ":"), allow_nan=False, default=str) + "\n"
        with open(self.events_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()

    def read_events(self, offset: int = 0) -> tuple[list[dict], int]:
        """Events from byte ``offset`` on, and the offset to continue from. A partly written last
        line is left for the next call."""
        try:
            with open(self.events_path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            return [], offset
        end = chunk.rfind(b"\n") + 1
        events = []
        for raw in chunk[:end].splitlines():
            if raw.strip():
                try:
                    events.append(json.loads(raw))
                except ValueError:
                    continue
        return events, offset + end

    def events(self) -> list[dict]:
        return self.read_events(0)[0]

    # --- files -----------------------------------------------------------------------------
    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints (the trainer wrote its state last), oldest first."""
        found = []
        if self.checkpoints_dir.is_dir():
            for p in self.checkpoints_dir.iterdir():
                m = re.fullmatch(r"checkpoint-(\d+)", p.name)
                if m and (p / "trainer_state.json").is_file():
                    found.append((int(m.group(1)), p))
        return sorted(found)

    def latest_checkpoint(self) -> Path | None:
        cps = self.checkpoints()
        return cps[-1][1] if cps else None

    # --- weights -------------------------------------------------------------------------------
    def final_weights(self) -> Weights | None:
        """The adapter (or, for full fine-tuning, the model) written when training ended."""
        return _weights_in(self.adapter_dir, "adapter") or _weights_in(self.model_dir, "model")

    def checkpoint_weights(self) -> list[Weights]:
        """Complete checkpoints that hold weights, oldest first."""
        found = (_weights_in(path, f"checkpoint-{n}", n) for n, path in self.checkpoints())
        return [w for w in found if w is not None]

    def weights(self, checkpoint: int | None = None) -> Weights:
        """What Chat, Eval and Export use: checkpoint ``N`` when asked, else the final weights, else
        the newest checkpoint. ``NoWeights`` (one sentence) when there is nothing to load."""
        if checkpoint is not None:
            for w in self.checkpoint_weights():
                if w.step == int(checkpoint):
                    return w
            have = [str(w.step) for w in self.checkpoint_weights()]
            raise NoWeights(
                f"Run {self.id} has no checkpoint-{checkpoint}; "
                + (f"it has checkpoints {', '.join(have)}." if have else "it has no checkpoints yet.")
            )
        found = self.final_weights() or next(reversed(self.checkpoint_weights()), None)
        if found is None:
            raise NoWeights(
                f"Run {self.id} has no trained weights yet: it has no adapter or checkpoint yet "
                f"(state: {self.info(with_log=False).state}, folder {self.dir}); wait for its first "
                "checkpoint or for it to finish, or use the base model alone."
            )
        return found

    def has_weights(self) -> bool:
        return self.final_weights() is not None or bool(self.checkpoint_weights())

    def log_tail(self, lines: int = 20) -> list[str]:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        # Progress bars redraw with \r: keep the last state of each line.
        out = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
        return [line for line in out if line.strip()][-lines:]

    def config(self) -> dict:
        try:
            import yaml

            return yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        except (OSError, ValueError):
            return {}
        except Exception:
            return {}

    # --- the view --------------------------------------------------------------------------
    def info(self, *, with_log: bool = True) -> RunInfo:
        status = self.read_status()
        config = self.config()
        state = status.get("state", "unknown")
        message = status.get("message")
        log = []
        if state in ALIVE and not pid_alive(status.get("pid"), status.get("pid_started")):
            state = "crashed"
            log = self.log_tail(10)
            message = crash_message(log)
        elif state in ("failed", "crashed") and with_log:
            log = self.log_tail(10)
        return RunInfo(
            id=self.id,
            dir=self.dir,
            state=state,
            step=int(status.get("step") or 0),
            max_steps=status.get("max_steps"),
            pid=status.get("pid"),
            created=status.get("created"),
            updated=status.get("updated"),
            model=config.get("model"),
            data=config.get("data"),
            method=config.get("method"),
            message=message,
            best_eval_loss=status.get("best_eval_loss"),
            log_tail=log,
            last_loss=status.get("last_loss"),
            tokens_per_second=status.get("tokens_per_second"),
        )


def _slug(text: str) -> str:
    text = Path(str(text)).name or str(text)
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()[:24] or "run"


def create_run(config_yaml: str, *, model: str = "", method: str = "") -> Run:
    """A new run folder (0700) holding config.yaml and a ``created`` status."""
    base = time.strftime("%Y%m%d-%H%M%S") + f"-{_slug(model)}-{_slug(method)}".rstrip("-")
    root = runs_dir()
    for n in range(1000):
        run_id = base if n == 0 else f"{base}-{n}"
        try:
            (root / run_id).mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - a thousand runs in one second
        raise TunedeckError("Could not create a run folder: too many runs started this second.")
    run = Run(root / run_id)
    run.config_path.write_text(config_yaml, encoding="utf-8")
    run.write_status(state="created", created=_now(), step=0)
    return run


def delete_run(ref: str) -> str:
    """Delete a finished run's folder — and only the run folder; returns a sentence for people.

    The user's data and base model are never inside a run folder (the config only names them);
    refused: anything that is not a folder directly inside the run store, a run whose worker is
    alive, and a run whose config points inside its own folder."""
    run = get_run(ref)
    folder = run.dir
    store = runs_dir().resolve()
    if folder.is_symlink() or folder.resolve().parent != store:
        raise TunedeckError(f"{folder} is not a folder inside the run store {store}; Tunedeck deletes only its own runs.")
    info = run.info(with_log=False)
    if info.state in ALIVE:
        raise TunedeckError(f"Run {run.id} is still {info.state} (pid {info.pid}); stop it first (`tunedeck stop {run.id}`).")
    config = run.config()
    for key in ("model", "data", "eval_data"):
        value = config.get(key)
        if isinstance(value, str) and value != "demo":
            target = Path(value).expanduser()
            if target.exists() and folder.resolve() in (target.resolve(), *target.resolve().parents):
                raise TunedeckError(
                    f"Run {run.id}'s {key} ({value}) lies inside its own folder; move it out before deleting the run."
                )
    shutil.rmtree(folder)
    return f"Deleted run {run.id} ({folder})."


def list_runs() -> list[RunInfo]:
    """Every run, newest first."""
    runs = [Run(p) for p in runs_dir().iterdir() if p.is_dir() and (p / "status.json").exists()]
    infos = [r.info(with_log=False) for r in runs]
    return sorted(infos, key=lambda i: (i.created or 0, i.id), reverse=True)


def get_run(ref: str) -> Run:
    """A run by id, unique id prefix, path, or ``latest``."""
    path = Path(ref).expanduser()
    if path.is_dir() and (path / "status.json").exists():
        return Run(path)
    root = runs_dir()
    if ref == "latest":
        runs = list_runs()
        if not runs:
            raise RunNotFound("There are no runs yet; start one with `tunedeck train CONFIG.yaml`.")
        return Run(runs[0].dir)
    if (root / ref / "status.json").exists():
        return Run(root / ref)
    matches = [p for p in root.iterdir() if p.name.startswith(ref) and (p / "status.json").exists()]
    if len(matches) == 1:
        return Run(matches[0])
    if matches:
        raise RunNotFound(f"Run '{ref}' is ambiguous ({len(matches)} runs start with it); give more of the id.")
    raise RunNotFound(f"No run '{ref}' in {root}; `tunedeck runs` lists them.")
