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
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import OBJECTIVE_NAMES, PREFERENCE_OBJECTIVES
from .errors import TunedeckError
from .paths import runs_dir

ALIVE = ("starting", "running", "stopping")
FINAL = ("completed", "stopped", "failed", "crashed")


class RunNotFound(TunedeckError):
    pass


class RunBusy(TunedeckError):
    """Another process holds the run's lock: its worker lives, or another command is starting it."""

    exit_code = 1


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


BEST_FILE = "best.json"  # in best/: the step and eval loss its weights are from

def _weights_in(path: Path, label: str, step: int | None = None) -> Weights | None:
    if (path / "adapter_config.json").is_file():
        return Weights("adapter", path, label, step)
    if (path / "config.json").is_file():
        return Weights("full", path, label, step)
    return None


def _now() -> float:
    return round(time.time(), 3)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or the file system cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def swap_in(tmp: Path, target: Path) -> None:
    """Put the finished folder ``tmp`` in place of ``target``: a reader sees the old folder or the new
    one, never half of one, and — with an atomic exchange — never no folder at all. Where the
    exchange is not available, two renames leave a short window that ``recover_swap`` repairs."""
    if target.exists() and _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
        return
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_swap(target: Path, marker: str) -> None:
    """After a kill between ``swap_in``'s two renames ``target`` is missing: put back the newest
    complete folder (one that holds ``marker``, e.g. adapter_config.json), a new one before an old."""
    if target.exists():
        return
    leftovers = [p for p in target.parent.glob(f".{target.name}-*") if (p / marker).is_file()]
    leftovers.sort(key=lambda p: ("-old-" not in p.name, p.stat().st_mtime), reverse=True)
    for candidate in leftovers:
        try:
            os.replace(candidate, target)
            return
        except OSError:
            continue  # another reader put one back first


def _safetensors_problem(path: Path) -> str | None:
    """Whether a .safetensors file is whole: its header parses and its data reach the end it declares."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path.name} is truncated"
            length = int.from_bytes(head, "little")
            if length <= 0 or 8 + length > size:
                return f"{path.name} is truncated"
            header = json.loads(f.read(length))
    except (OSError, ValueError, RecursionError):
        return f"{path.name} cannot be read"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    if 8 + length + max(ends, default=0) > size:
        return f"{path.name} is truncated"
    return None


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (None when it is whole): the trainer's state
    must parse, its weight files must be whole, and the optimizer's file must be a whole archive."""
    import zipfile

    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
            return "trainer_state.json has no global_step"
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (OSError, ValueError, RecursionError):
        return "trainer_state.json is cut short or damaged"
    for path in folder.glob("*.safetensors"):
        problem = _safetensors_problem(path)
        if problem:
            return problem
    for name in ("optimizer.pt", "scheduler.pt"):
        path = folder / name
        if path.exists():
            try:
                zipfile.ZipFile(path).close()  # reads the archive's directory, at its very end
            except (OSError, zipfile.BadZipFile):
                return f"{name} is cut short or damaged"
    return None


def _private(path: Path, mode: int) -> int:
    """A descriptor for ``path`` opened for writing, created 0600 (run folders are the user's alone)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o600)


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


def process_identity(pid: int) -> dict:
    """What the launcher records about the process it started (status.json's ``pid``, ``pid_started``
    and ``pid_cmdline``), so that nothing but that very process is ever taken for the run's worker."""
    try:
        import psutil

        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
        deadline = time.monotonic() + 2.0
        # Popen returns while the child is still inside exec: its arguments may not be readable yet (seen
        # under load), and an empty command line recorded here would show the live run as crashed.
        while not cmdline and time.monotonic() < deadline:
            time.sleep(0.01)
            cmdline = proc.cmdline()
        return {"pid": pid, "pid_started": proc.create_time(), "pid_cmdline": cmdline}
    except Exception:
        return {"pid": pid, "pid_started": None, "pid_cmdline": None}


def is_run_process(status: dict) -> bool:
    """True when the process status.json names is alive and provably the one its launcher started:
    same start time and same command line as recorded. A pid without that record (hand-written, or
    reused by another program) is never the worker, so it is never signalled or waited for."""
    pid, started, cmdline = status.get("pid"), status.get("pid_started"), status.get("pid_cmdline")
    # (A run started by a Tunedeck that recorded no command line is shown crashed; it is not signalled.)
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or not isinstance(started, (int, float)):
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or abs(proc.create_time() - started) >= 2.0:
            return False
        actual = proc.cmdline()
    except Exception:
        return False
    return isinstance(cmdline, list) and actual == cmdline


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


def lock_run(run: Run, wait: float = 0.0) -> int:
    """Take the run folder's lock (an exclusive ``flock`` on ``.lock``) and return its descriptor.
    One worker per run folder: the command that starts or resumes a run takes it, the worker it
    starts inherits it and holds it while it lives. ``RunBusy`` when anyone else holds it after
    ``wait`` seconds (a worker that has just written how it ended may take a moment to exit)."""
    import fcntl

    fd = os.open(run.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise RunBusy(f"Run {run.id} is already being trained or started by another process; "
                              f"`tunedeck runs` shows its state.") from None
            time.sleep(0.05)


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
    objective: str | None = None  # sft | dpo | kto (None: a config from before objectives, i.e. sft)
    message: str | None = None
    best_eval_loss: float | None = None
    log_tail: list[str] = field(default_factory=list)
    last_loss: float | None = None
    tokens_per_second: float | None = None
    peak_memory: float | None = None  # bytes the worker measured at most
    estimated_memory: float | None = None  # bytes estimated for the run's largest batch

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

    @property
    def best_dir(self) -> Path:
        """keep: best — the weights of the lowest eval loss so far, while the run trains (at its end they
        become adapter/ or model/)."""
        return self.dir / "best"

    def best(self) -> dict | None:
        """{"step", "eval_loss"} of the weights in best/, if any."""
        try:
            best = json.loads((self.best_dir / BEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(best, dict) or not isinstance(best.get("step"), int) or isinstance(best["step"], bool):
            return None
        return best

    # --- status ----------------------------------------------------------------------------
    def read_status(self) -> dict:
        """status.json as a dict; {} when it is missing or damaged (``problem()`` says which)."""
        try:
            status = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return {}
        return status if isinstance(status, dict) else {}

    def problem(self) -> str | None:
        """What is wrong with this run folder's status.json, in a few words; None when it is sound."""
        try:
            text = self.status_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return "status.json is missing"
        except (OSError, UnicodeDecodeError) as exc:
            return f"status.json cannot be read ({getattr(exc, 'strerror', None) or type(exc).__name__})"
        try:
            status = json.loads(text)
        except (ValueError, RecursionError):
            return "status.json is not valid JSON"
        if not isinstance(status, dict):
            return f"status.json holds a {type(status).__name__}, not an object"
        bad = [key for key, check in _STATUS_TYPES.items() if key in status and status[key] is not None
               and not check(status[key])]
        if bad:
            return "status.json has a bad " + ", ".join(f"{k} ({status[k]!r:.40})" for k in bad)
        return None

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
        with open(_private(self.events_path, os.O_APPEND), "a", encoding="utf-8") as f:
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
                    event = json.loads(raw)
                except (ValueError, RecursionError):
                    continue
                if isinstance(event, dict):  # a damaged line is not an event
                    events.append(event)
        return events, offset + end

    def events(self) -> list[dict]:
        return self.read_events(0)[0]

    # --- files -----------------------------------------------------------------------------
    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first: one cut short (a kill or a full disk while it was
        written) is passed over, so a resume takes the newest whole one."""
        found = []
        if self.checkpoints_dir.is_dir():
            for p in self.checkpoints_dir.iterdir():
                m = re.fullmatch(r"checkpoint-(\d+)", p.name)
                if m and checkpoint_problem(p) is None:
                    found.append((int(m.group(1)), p))
        return sorted(found)

    def latest_checkpoint(self) -> Path | None:
        cps = self.checkpoints()
        return cps[-1][1] if cps else None

    # --- weights -------------------------------------------------------------------------------
    def final_weights(self) -> Weights | None:
        """The adapter (or, for full fine-tuning, the model) written when training ended."""
        self.recover_outputs()
        return _weights_in(self.adapter_dir, "adapter") or _weights_in(self.model_dir, "model")

    def recover_outputs(self) -> None:
        """Repair an adapter/ or model/ left missing by a kill in the middle of its swap."""
        if not self.dir.is_dir():
            return
        recover_swap(self.adapter_dir, "adapter_config.json")
        recover_swap(self.model_dir, "config.json")
        recover_swap(self.best_dir, BEST_FILE)

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
        """The run as viewers list it. A damaged folder is listed ``damaged`` with what is wrong,
        never an exception: one bad run must not hide the others."""
        problem = self.problem()
        status = {} if problem else self.read_status()
        config = self.config()
        state = str(status.get("state") or "unknown")
        message = status.get("message") if isinstance(status.get("message"), str) else None
        log = []
        if problem:
            state, message = "damaged", f"Run folder {self.dir} is damaged: {problem}; delete it with `tunedeck delete {self.id}`."
        elif state in ALIVE and not is_run_process(status):
            state = "crashed"
            log = self.log_tail(10)
            message = crash_message(log)
        elif state in ("failed", "crashed") and with_log:
            log = self.log_tail(10)
        text = lambda value: value if isinstance(value, str) else None  # noqa: E731
        return RunInfo(
            id=self.id,
            dir=self.dir,
            state=state,
            step=as_int(status.get("step")) or 0,
            max_steps=as_int(status.get("max_steps")),
            pid=as_int(status.get("pid")),
            created=as_float(status.get("created")),
            updated=as_float(status.get("updated")),
            model=text(config.get("model")),
            data=data_label(config.get("data")),
            method=text(config.get("method")),
            objective=text(config.get("objective")),
            message=message,
            best_eval_loss=as_float(status.get("best_eval_loss")),
            log_tail=log,
            last_loss=as_float(status.get("last_loss")),
            tokens_per_second=as_float(status.get("tokens_per_second")),
            peak_memory=as_float(status.get("peak_memory")),
            estimated_memory=as_float(status.get("estimated_memory")),
        )


def method_label(method: str | None, objective: str | None) -> str | None:
    """A run's method as tables show it: ``lora`` for supervised fine-tuning, ``lora · DPO`` for a
    preference or GRPO run (the objective named only when it is not SFT)."""
    if objective in OBJECTIVE_NAMES and objective != "sft":
        return f"{method or '?'} · {OBJECTIVE_NAMES[objective]}"
    return method


def data_label(data) -> str | None:
    """A run's data as people read it: the reference, or the references of a mix joined by +."""
    if isinstance(data, list):
        refs = [s if isinstance(s, str) else s.get("path") for s in data if isinstance(s, (str, dict))]
        return " + ".join(str(r) for r in refs if r) or None
    return data if isinstance(data, str) else None


def as_float(value, default: float | None = None) -> float | None:
    """A finite number, or ``default``: None, booleans, NaN, infinities and what is not a number."""
    if isinstance(value, bool) or value is None:
        return default
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return value if math.isfinite(value) else default


def as_int(value) -> int | None:
    number = as_float(value)
    return int(number) if number is not None and abs(number) < 2**62 else None


# A number; the worker writes a non-finite loss as "nan"/"inf"/"-inf" (JSON has no NaN).
_number = lambda v: as_float(v) is not None or v in ("nan", "inf", "-inf")  # noqa: E731
_STATUS_TYPES = {  # status.json keys a viewer relies on, and what each must be
    "state": lambda v: isinstance(v, str), "step": _number, "max_steps": _number, "pid": _number,
    "created": _number, "updated": _number, "started": _number, "ended": _number,
    "best_eval_loss": _number, "last_loss": _number, "tokens_per_second": _number,
    "message": lambda v: isinstance(v, str),
}


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
    with open(_private(run.config_path, os.O_TRUNC), "w", encoding="utf-8") as f:
        f.write(config_yaml)
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


RUN_FILES = ("status.json", "config.yaml", "events.jsonl")


def is_run_folder(path: Path) -> bool:
    """A run folder holds at least one of the files Tunedeck writes first (a damaged one too)."""
    return path.is_dir() and not path.name.startswith(".") and any((path / f).exists() for f in RUN_FILES)


def list_runs() -> list[RunInfo]:
    """Every run, newest first (damaged ones too, listed as such)."""
    runs = [Run(p) for p in runs_dir().iterdir() if is_run_folder(p)]
    infos = [r.info(with_log=False) for r in runs]
    return sorted(infos, key=lambda i: (i.created or 0, i.id), reverse=True)


def get_run(ref: str) -> Run:
    """A run by id, unique id prefix, path, or ``latest``. An empty or ambiguous reference is refused."""
    ref = str(ref or "").strip()
    if not ref:
        raise RunNotFound("No run given: pass a run id (or a unique start of one), a run folder, or latest; "
                          "`tunedeck runs` lists them.")
    path = Path(ref).expanduser()
    if is_run_folder(path):
        return Run(path)
    root = runs_dir()
    if ref == "latest":
        runs = list_runs()
        if not runs:
            raise RunNotFound("There are no runs yet; start one with `tunedeck train CONFIG.yaml`.")
        return Run(runs[0].dir)
    if "/" not in ref and is_run_folder(root / ref):
        return Run(root / ref)
    matches = [p for p in root.iterdir() if p.name.startswith(ref) and is_run_folder(p)]
    if len(matches) == 1:
        return Run(matches[0])
    if matches:
        raise RunNotFound(f"Run '{ref}' is ambiguous ({len(matches)} runs start with it); give more of the id.")
    raise RunNotFound(f"No run '{ref}' in {root}; `tunedeck runs` lists them.")
