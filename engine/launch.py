"""Start, stop and resume training runs as detached worker processes.

``start_run`` checks what can be checked cheaply (model and data exist, the method can run on this
hardware) so that problems are one sentence *before* a run folder fills with a failed run, then
starts ``python -m engine.worker RUN_DIR`` in its own session (``start_new_session``: no controlling
terminal, so closing the terminal or losing SSH never reaches it), stdin from /dev/null and output
appended to ``worker.log`` — never a pipe nobody drains. It returns at once.

Several processes (``processes: N`` > 1, or an ``accelerate_config``): the run folder gets an
``accelerate.yaml`` (DDP, FSDP or DeepSpeed, or a copy of the user's file) and the detached process
is ``python -m engine.launcher …`` (``engine/launcher.py``): ``accelerate launch`` (torchrun's elastic agent) with SIGHUP
ignored, which starts the N workers. Its pid is the one recorded, it leads its own session and
process group, and what torchrun does with signals was read in its source (torch 2.13,
torch/distributed/elastic): the agent forwards the signals in ``TORCHELASTIC_SIGNALS_TO_HANDLE``
(we pass SIGTERM and SIGINT; the default also has SIGHUP, which would end the run when a terminal
goes) to each worker, waits ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` seconds (default 30; we allow an hour
so ``stop_run``'s own grace decides), then SIGKILLs them. Each worker runs in a session of its own
(torchrun starts them with ``start_new_session``), so killing the launcher's process group does not
reach them: ``stop_run`` kills the launcher's whole process tree, and the workers end themselves
when their launcher disappears (see ``engine.worker``). If one worker fails, torchrun SIGTERMs the
others and exits non-zero.

No ML imports here: the TUI starts and stops runs through this module.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .config import RunConfig
from .errors import ConfigError, TunedeckError
from .run_state import RunHistory
from .runs import ALIVE, Run, create_run, get_run, is_run_process, lock_run, process_identity

QLORA_CPU_BNB = (0, 49)  # bitsandbytes trains 4-bit adapters on the CPU from here on
ACCELERATE_FILE = "accelerate.yaml"  # in the run folder, for runs of several processes
# How long torchrun lets the workers finish their step and checkpoint after a stop before it kills
# them; stop_run's grace (at most an hour) is what actually decides.
SHUTDOWN_TIMEOUT = 3600


class RunStateError(TunedeckError):
    """The run is in a state that does not allow the action (stop a finished run, resume a live one)."""

    exit_code = 1


# --- checks before starting --------------------------------------------------------------------
def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def _has_nvidia_gpu() -> bool:
    try:
        from . import gpu

        return bool(gpu.list_gpus())
    except Exception:
        return False


def method_problem(method: str) -> str | None:
    """Why ``method`` cannot run on this machine, or None. Cheap: no torch import."""
    if method != "qlora":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        return ("QLoRA needs the bitsandbytes package, which is not installed: `pip install bitsandbytes`, "
                "or use method: lora.")
    if _has_nvidia_gpu():
        return None
    if sys.platform == "darwin":
        return ("QLoRA needs an NVIDIA GPU or a Linux/Windows CPU build of bitsandbytes, and this Mac has "
                "neither; use method: lora.")
    version = importlib.metadata.version("bitsandbytes")
    if _version_tuple(version) < QLORA_CPU_BNB:
        need = ".".join(map(str, QLORA_CPU_BNB))
        return (f"QLoRA without an NVIDIA GPU needs bitsandbytes >= {need} to train on the CPU (found {version}): "
                f"`pip install -U bitsandbytes`, or use method: lora.")
    return None


def environment_problem() -> str | None:
    """A setting in the environment the worker would choke on."""
    text = os.environ.get("TUNEDECK_CHECKPOINT_SECONDS")
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 and seconds < float("inf")):
        return (f"TUNEDECK_CHECKPOINT_SECONDS must be a positive number of seconds, got {text!r}; "
                "fix or unset it (the default is 600).")
    return None


def _absolute_if_local(ref: str | None) -> str | None:
    if not ref or ref == "demo":
        return ref
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def preflight(config: RunConfig) -> RunConfig:
    """Check ``config`` against this machine; return it with local paths made absolute (the worker
    runs in the run folder). Raises a TunedeckError with one sentence."""
    from . import model_refs as models
    from .data.dataset import is_local, load_examples, with_refs

    problem = method_problem(config.method) or environment_problem()
    if problem:
        raise ConfigError(problem)
    models.resolve(config.model)  # ModelNotFound with one sentence
    for ref in (config.data, config.eval_data, config.test_data):
        if ref and is_local(ref):
            load_examples(ref, seed=config.seed, objective=config.objective)  # every row read: DataError with one sentence (missing file, any bad row)
    d = config.to_dict()
    d["model"] = _absolute_if_local(config.model)
    d["data"] = with_refs(config.data, _absolute_if_local)
    d["eval_data"] = _absolute_if_local(config.eval_data)
    d["test_data"] = _absolute_if_local(config.test_data)
    if config.reward_file:  # GRPO: the user's reward functions, checked (their file run) now rather than in the worker
        from .rewards import build

        build(config.rewards or [], config.reward_file)
        d["reward_file"] = str(Path(config.reward_file).expanduser().resolve())
    if config.report_to:  # a tracker the trainer would fail to import: the pip command now, not a crashed run
        from .config import trackers

        trackers(config.report_to)
    if config.accelerate_config:
        d["accelerate_config"] = str(Path(config.accelerate_config).expanduser().resolve())
    config = RunConfig.from_dict(d, source="config")
    if uses_launcher(config):
        scale_out_plan(config)  # ConfigError with one sentence
    return config


# --- several processes -------------------------------------------------------------------------
def uses_launcher(config: RunConfig) -> bool:
    """True when the worker runs under ``accelerate launch`` (several processes)."""
    return config.processes > 1 or bool(config.accelerate_config)


def _visible_gpus() -> int:
    """NVIDIA GPUs this machine offers the worker (CUDA_VISIBLE_DEVICES narrows NVML's count)."""
    try:
        from . import gpu

        count = len(gpu.list_gpus())
    except Exception:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = min(count, len([v for v in visible.split(",") if v.strip() and not v.strip().startswith("-")]))
    return count


def _read_accelerate_file(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"accelerate_config: {path} does not exist; give the path of an accelerate config "
                          "YAML (`accelerate config` writes one) or remove the key.") from None
    except OSError as exc:
        raise ConfigError(f"accelerate_config: cannot read {path} ({exc.strerror or exc}).") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"accelerate_config: {path} is not valid YAML ({getattr(exc, 'problem', None) or exc}); "
                          "fix it or let Tunedeck write one (remove the key, set distributed).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"accelerate_config: {path} holds no settings (expected `key: value` lines such as "
                          "`distributed_type: MULTI_GPU`).")
    return data


_STRATEGY_OF_TYPE = {"MULTI_GPU": "ddp", "FSDP": "fsdp", "DEEPSPEED": "deepspeed"}


def scale_out_plan(config: RunConfig) -> dict:
    """How a run of several processes will start on this machine: {processes, strategy, gpus, user_file}.
    Raises ConfigError (one sentence) for what cannot work here: too many processes for the GPUs,
    FSDP/DeepSpeed without a GPU, DeepSpeed not installed, an accelerate config that is unusable."""
    gpus = _visible_gpus()
    processes = config.processes
    strategy = config.distributed
    user_file = None
    if config.accelerate_config:
        user_file = Path(config.accelerate_config).expanduser()
        user = _read_accelerate_file(user_file)
        kind = user.get("distributed_type", "NO")
        kind = "NO" if kind is False else str(kind).upper()  # YAML reads an unquoted NO as false
        if kind not in _STRATEGY_OF_TYPE:
            raise ConfigError(f"accelerate_config: {user_file} has distributed_type: {kind}, which does not start "
                              "one worker per GPU through torchrun; use MULTI_GPU, FSDP or DEEPSPEED.")
        strategy = _STRATEGY_OF_TYPE[kind]
        try:
            machines = int(user.get("num_machines") or 1)
            in_file = int(user["num_processes"]) if user.get("num_processes") not in (None, -1) else None
        except (TypeError, ValueError):
            raise ConfigError(f"accelerate_config: {user_file} has a num_processes or num_machines that is not a "
                              "whole number.") from None
        if machines > 1:
            raise ConfigError(f"accelerate_config: {user_file} has num_machines: {machines}; Tunedeck starts runs "
                              "on this machine only; for several machines use `tunedeck export RUN --launch-script "
                              "FILE`.")
        if in_file is not None and processes > 1 and in_file != processes:
            raise ConfigError(f"processes: {processes} disagrees with num_processes: {in_file} in {user_file}; "
                              "remove one of them.")
        processes = processes if processes > 1 else (in_file or 1)
        if processes < 2:
            raise ConfigError(f"accelerate_config: {user_file} sets no num_processes of 2 or more; set processes: N "
                              "(one per GPU) or num_processes in that file.")
        if config.method == "qlora" and strategy != "ddp":
            raise ConfigError(f"accelerate_config: {user_file} uses {kind} with method: qlora, which Tunedeck does "
                              "not support; use DDP (distributed_type: MULTI_GPU) or method: lora.")
    if strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("distributed: deepspeed needs the deepspeed package, which is not installed: "
                          "`pip install deepspeed`, or use distributed: ddp or fsdp.")
    if importlib.util.find_spec("accelerate") is None:  # pragma: no cover - a dependency of tunedeck
        raise ConfigError(f"processes: {processes} needs the accelerate package: `pip install accelerate`.")
    if strategy != "ddp" and not gpus:
        raise ConfigError(f"distributed: {strategy} needs NVIDIA GPUs and none is visible here; on the CPU use "
                          "distributed: ddp (gloo), or processes: 1.")
    if gpus and processes > gpus:
        raise ConfigError(f"processes: {processes} but this machine shows {gpus} NVIDIA GPU{'s' if gpus > 1 else ''}; "
                          f"set processes: {gpus} or fewer (one process per GPU).")
    cores = os.cpu_count() or 1
    if not gpus and processes > cores:
        raise ConfigError(f"processes: {processes} on the CPU, but this machine has {cores} core"
                          f"{'s' if cores > 1 else ''} and no NVIDIA GPU; set processes: {cores} or fewer.")
    return {"processes": processes, "strategy": strategy, "gpus": gpus, "user_file": user_file}


def accelerate_settings(config: RunConfig, *, gpu: bool, processes: int | None = None,
                        num_machines: int = 1) -> dict:
    """An accelerate config (what `accelerate config` would write) for ``config.distributed``.

    ``processes`` is the total over all machines (accelerate's ``num_processes``). DDP on a machine
    without a GPU is still ``MULTI_GPU`` to accelerate: that is what makes it start the workers
    through torchrun; each worker then trains on the CPU (``use_cpu``) and talks over gloo.
    Mixed precision is left to the worker (bf16/fp16 where the GPU has it), as in one process."""
    strategy = config.distributed
    out: dict = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}[strategy],
        "num_processes": int(processes or config.processes),
        "num_machines": num_machines,
        "machine_rank": 0,
        "mixed_precision": "no",
        "use_cpu": not gpu,
        "gpu_ids": "all",
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
        "downcast_bf16": "no",
    }
    if strategy == "fsdp":
        out["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # one shard unit per decoder layer
            "fsdp_reshard_after_forward": True,  # ZeRO-3-like: parameters are sharded between uses
            "fsdp_offload_params": False,
            "fsdp_cpu_ram_efficient_loading": False,  # every process loads the model, then it is sharded
            "fsdp_state_dict_type": "FULL_STATE_DICT",  # the adapter/model saved as one plain file
            "fsdp_activation_checkpointing": False,  # gradient_checkpointing in the run config does this
        }
    elif strategy == "deepspeed":
        out["deepspeed_config"] = {
            "zero_stage": 2,  # optimizer state and gradients sharded; ZeRO-3 via your own accelerate_config
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "gradient_accumulation_steps": config.gradient_accumulation_steps,  # must match the trainer's
            "gradient_clipping": 1.0,  # the trainer's max_grad_norm
            "zero3_init_flag": False,
        }
    return out


def accelerate_yaml(settings: dict, header: str = "") -> str:
    import yaml

    return header + yaml.safe_dump(settings, sort_keys=False, default_flow_style=False)


def write_accelerate_file(run: Run, config: RunConfig, plan: dict) -> Path:
    """The accelerate config the run's workers start with, in the run folder: a copy of the user's
    file, or one written for ``distributed``. A resumed run keeps the file it started with."""
    path = run.dir / ACCELERATE_FILE
    if path.is_file():
        return path
    if plan["user_file"] is not None:
        text = plan["user_file"].read_text(encoding="utf-8")
        header = f"# Copied from {plan['user_file']} when run {run.id} started.\n"
    else:
        text = accelerate_yaml(accelerate_settings(config, gpu=bool(plan["gpus"]), processes=plan["processes"]))
        header = (f"# Written by Tunedeck for run {run.id}: distributed: {config.distributed}, "
                  f"{plan['processes']} processes{' on the CPU (gloo)' if not plan['gpus'] else ''}.\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# --- processes ---------------------------------------------------------------------------------
def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def worker_command(run: Run, *, resume: bool = False, processes: int = 1,
                   accelerate_file: Path | None = None) -> list[str]:
    worker = ["-m", "engine.worker", str(run.dir)] + (["--resume"] if resume else [])
    if accelerate_file is None:
        return [sys.executable, *worker]
    # `accelerate launch` through our wrapper (SIGHUP ignored); port 0: accelerate picks a free port,
    # so two runs on one machine never collide on torchrun's default 29500.
    return [sys.executable, "-m", "engine.launcher", "--config_file", str(accelerate_file),
            "--num_processes", str(processes), "--main_process_port", "0", *worker]


# What torchrun/accelerate put in a process' environment: a shell of a cluster job often exports
# them, and a worker that inherits RANK/WORLD_SIZE would take itself for one of several processes.
DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                   "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
DISTRIBUTED_ENV_PREFIXES = ("TORCHELASTIC_", "PET_", "ACCELERATE_")


def clean_env() -> dict:
    """The environment a worker (or the launcher of several) starts with: ours, minus any inherited
    distributed settings — the launcher sets its own for the processes it starts."""
    return {k: v for k, v in os.environ.items()
            if k not in DISTRIBUTED_ENV and not k.startswith(DISTRIBUTED_ENV_PREFIXES)}


def _spawn(run: Run, lock: int, *, resume: bool, message: str, config: RunConfig | None = None) -> int:
    """Start the worker (or the launcher of several) detached. ``lock`` is the run's lock, taken by
    the caller: the child inherits it and holds it while it lives, and our copy is closed here."""
    env = clean_env()
    env["TUNEDECK_LOCK_FD"] = str(lock)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["TUNEDECK_SPAWNED"] = "1"  # the worker waits for our status.json write before writing its own
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = worker_command(run, resume=resume)
    if config is not None and uses_launcher(config):
        plan = scale_out_plan(config)
        accelerate_file = write_accelerate_file(run, config, plan)
        command = worker_command(run, resume=resume, processes=plan["processes"], accelerate_file=accelerate_file)
        env["PET_SIGNALS_TO_HANDLE"] = "SIGTERM,SIGINT"  # torchrun's --signals-to-handle: not SIGHUP
        env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(SHUTDOWN_TIMEOUT))
    with open(os.open(run.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"==== {stamp} {'resume' if resume else 'start'}: {message} ====\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=run.dir, env=env, start_new_session=True, close_fds=True, pass_fds=(lock,),
            )
        finally:
            os.close(lock)  # the worker holds it now (or, if it did not start, nobody)
    # The worker waits for this write before it writes status.json itself. What is recorded here (and
    # only here) is what stop checks before it signals anything.
    run.write_status(state="starting", **process_identity(proc.pid), message=message, ended=None)
    # Reap it when it ends, so a long-lived parent (the TUI) keeps no zombie; a short-lived parent
    # (the CLI) simply exits and the worker carries on under init.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc.pid


def start_run(config: RunConfig) -> Run:
    """Create a run folder for ``config`` and start its worker detached; returns at once."""
    config = preflight(config)
    run = create_run(config.to_yaml(), model=config.model, method=config.method)
    if config.max_steps:
        run.write_status(max_steps=config.max_steps)
    _spawn(run, lock_run(run), resume=False, message="Starting the worker…", config=config)
    return run


def _as_run(run_ref: str | Run) -> Run:
    return run_ref if isinstance(run_ref, Run) else get_run(str(run_ref))


def resume_run(run_ref: str | Run) -> Run:
    """Continue a stopped, crashed or failed run in the same folder from its newest complete
    checkpoint (or from step 0 when none was saved); returns at once."""
    run = _as_run(run_ref)
    # A second resume (or the live worker) holds the lock: refused here. A worker that has just
    # recorded its end is given a moment to exit.
    lock = lock_run(run, wait=0.0 if run.info().state in ALIVE else 3.0)
    try:
        return _resume_locked(run, lock)
    except BaseException:
        os.close(lock)
        raise


def _resume_locked(run: Run, lock: int) -> Run:
    info = run.info()
    if info.state in ALIVE:
        raise RunStateError(f"Run {run.id} is still {info.state} (pid {info.pid}); there is nothing to resume.")
    if info.state == "completed":
        raise RunStateError(f"Run {run.id} already completed all its steps; start a new run with `tunedeck train`.")
    if info.state not in ("stopped", "crashed", "failed"):
        raise RunStateError(f"Run {run.id} is {info.state}, not stopped, crashed or failed; it cannot be resumed.")
    config = RunConfig.load(run.config_path)
    if config.accelerate_config and (run.dir / ACCELERATE_FILE).is_file():
        # the copy the run started with, even if the user's file has changed or gone since
        config = config.override(accelerate_config=str(run.dir / ACCELERATE_FILE))
    config = preflight(config)
    if info.state == "crashed":  # the dead worker could not say so itself
        run.append_event({"type": "end", "step": info.step, "state": "crashed", "message": info.message})
    checkpoint = run.latest_checkpoint()
    message = (f"Resuming from {checkpoint.name}…" if checkpoint is not None
               else "No checkpoint was saved, so training restarts from step 0 in the same folder…")
    run.write_status(message=message, max_steps=config.max_steps or run.read_status().get("max_steps"))
    _spawn(run, lock, resume=True, message=message, config=config)
    return run


def default_grace(run: Run) -> float:
    """How long a stop waits for the current step and its checkpoint: at least 60 s, and three
    steps' time on a slow machine (capped at an hour)."""
    per_step = RunHistory().extend(run.events()).step_seconds or 0.0
    return float(min(3600, max(60, 3 * per_step + 30)))


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid``, its process group, and every process below it. The launcher of a run of several
    processes is frozen first (SIGSTOP) so that it starts nothing new while its tree is read: torchrun
    starts each worker in a session of its own, outside the launcher's process group."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    try:
        import psutil

        below = psutil.Process(pid).children(recursive=True)
    except Exception:
        below = []
    try:
        os.killpg(pid, signal.SIGKILL)  # the worker (or launcher) leads its own process group
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for proc in below:
        try:
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)  # a torchrun worker and anything it started
            else:
                os.kill(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    if below:
        try:
            import psutil

            psutil.wait_procs(below, timeout=10)
        except Exception:
            pass


def stop_run(run_ref: str | Run, grace: float | None = None, *, wait: bool = True,
             on_wait: Callable[[float], None] | None = None,
             on_signalled: Callable[[int], None] | None = None) -> str:
    """Ask the worker to stop (SIGTERM): it finishes the current step, saves a checkpoint and the
    adapter, and ends ``stopped``. With ``wait`` (the default) wait up to ``grace`` seconds (None:
    ``default_grace``, at least 60 s), calling ``on_wait(seconds_left)`` about 5 times a second,
    then SIGKILL it. Returns a sentence for people."""
    run = _as_run(run_ref)
    if grace is None:
        grace = default_grace(run)
    info = run.info()
    if info.state not in ALIVE:
        raise RunStateError(f"Run {run.id} is not running (it is {info.state}); there is nothing to stop.")
    status = run.read_status()
    if not is_run_process(status):  # info() saw it alive a moment ago: it has just ended
        raise RunStateError(f"Run {run.id}'s worker has just ended; `tunedeck runs` shows how.")
    pid = status["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if on_signalled:
        on_signalled(pid)
    if not wait:
        return (f"Asked run {run.id} to stop: it saves a checkpoint at the end of the current step "
                f"(pid {pid}).")
    deadline = time.monotonic() + grace
    while is_run_process(status) and time.monotonic() < deadline:
        if on_wait:
            on_wait(max(0.0, deadline - time.monotonic()))
        time.sleep(0.2)
    killed = False
    if is_run_process(status):
        killed = True
        _kill_tree(pid)
        end = time.monotonic() + 10
        while is_run_process(status) and time.monotonic() < end:
            time.sleep(0.05)
    status = run.read_status()
    if status.get("state") in ALIVE:  # it died without recording an end: record it for it
        checkpoint = run.latest_checkpoint()
        cp = f"`tunedeck resume {run.id}` continues from {checkpoint.name}" if checkpoint else \
            f"no checkpoint was saved, so `tunedeck resume {run.id}` restarts from step 0"
        why = f"it did not finish its step within {grace:g} s and was killed" if killed else "the worker ended"
        message = f"Stopped at step {status.get('step') or 0}: {why}; {cp}."
        run.append_event({"type": "end", "step": status.get("step") or 0, "state": "stopped", "message": message})
        run.write_status(state="stopped", message=message, ended=round(time.time(), 3))
        return message
    return status.get("message") or f"Run {run.id} is {status.get('state')}."
