"""GPU inventory and sampling through NVML (nvidia-ml-py's ``pynvml``), with a CPU/RAM fallback.

Every NVML failure (library missing, driver not loaded, no device) becomes a one-line reason, never
an exception: callers show ``no_gpu_reason()`` and fall back to ``sample_host()`` (psutil).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field

_lock = threading.Lock()
_initialised = False
_init_error: str | None = None


@dataclass
class GpuInfo:
    index: int
    name: str
    memory_total: int  # bytes
    memory_used: int  # bytes


@dataclass
class GpuSample(GpuInfo):
    utilization: int | None = None  # percent
    temperature: int | None = None  # Celsius
    power: float | None = None  # watts
    power_limit: float | None = None  # watts
    process_memory: int | None = None  # bytes held by the watched pid (and its children) on this GPU


@dataclass
class HostSample:
    cpu_percent: float  # whole machine, 0-100
    memory_used: int
    memory_total: int
    process_cpu_percent: float | None = None  # the watched process tree; 100 = one core
    process_memory: int | None = None  # RSS of the watched process tree
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)


def _nvml():
    """Initialise NVML once; return the module or None (reason in ``_init_error``)."""
    global _initialised, _init_error
    with _lock:
        try:
            import pynvml
        except ImportError:
            _init_error = "NVML library not installed (pip install nvidia-ml-py)"
            return None
        if _initialised:
            return pynvml
        if _init_error is not None and _init_error.startswith("no NVIDIA"):
            return None
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            text = str(exc) or type(exc).__name__
            if "Library Not Found" in text or "LibraryNotFound" in text or "Shared Library" in text:
                _init_error = "no NVIDIA GPU found (NVIDIA driver library not present)"
            elif "Driver Not Loaded" in text or "DriverNotLoaded" in text:
                _init_error = "no NVIDIA GPU usable: the NVIDIA driver is not loaded"
            else:
                _init_error = f"no NVIDIA GPU usable: NVML failed ({text})"
            return None
        _initialised = True
        _init_error = None
        return pynvml


def reset() -> None:
    """Forget NVML state (tests swap the pynvml module)."""
    global _initialised, _init_error
    with _lock:
        _initialised, _init_error = False, None


def no_gpu_reason() -> str | None:
    """None when at least one NVIDIA GPU is visible, else one line saying why not."""
    nvml = _nvml()
    if nvml is None:
        return _init_error
    try:
        if nvml.nvmlDeviceGetCount() == 0:
            return "no NVIDIA GPU found"
    except Exception as exc:
        return f"no NVIDIA GPU usable: NVML failed ({exc})"
    return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _descendants(pid: int | None) -> set[int]:
    if not pid:
        return set()
    try:
        import psutil

        proc = psutil.Process(pid)
        return {pid, *(child.pid for child in proc.children(recursive=True))}
    except Exception:
        return {pid}


def list_gpus() -> list[GpuInfo]:
    return [GpuInfo(s.index, s.name, s.memory_total, s.memory_used) for s in sample_gpus()]


def memory_targets(*, device: str = "cuda", planned_gib: float | None = None) -> tuple[list, str | None]:
    """What a training run's memory is judged against: (the GPUs found, or a stand-in, and why there
    is no GPU). ``device="cpu"``: this machine's RAM; ``planned_gib``: a GPU of that size."""
    from .errors import ConfigError
    from .estimate import GIB, capacity_gpu

    if planned_gib is not None:
        if not planned_gib > 0:
            raise ConfigError(f"--gpu-memory must be a positive number of GiB, got {planned_gib}.")
        return [capacity_gpu(int(planned_gib * GIB), f"planned {planned_gib:g} GiB GPU")], None
    if device == "cpu":
        import psutil

        vm = psutil.virtual_memory()
        return [{"index": 0, "name": "this machine's RAM", "where": "this machine's RAM", "memory_total": int(vm.total),
                 "memory_used": int(vm.total - vm.available)}], None
    gpus = list_gpus()
    return gpus, (None if gpus else (no_gpu_reason() or "no NVIDIA GPU found"))


def sample_gpus(pid: int | None = None) -> list[GpuSample]:
    """One reading of every GPU; optional ``pid``: also the memory that process tree holds."""
    nvml = _nvml()
    if nvml is None:
        return []
    pids = _descendants(pid)
    samples = []
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception:
        return []
    for i in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            sample = GpuSample(i, _text(nvml.nvmlDeviceGetName(handle)), int(mem.total), int(mem.used))
        except Exception:
            continue
        sample.utilization = _try(lambda: int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        sample.temperature = _try(lambda: int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)))
        sample.power = _try(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        sample.power_limit = _try(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0)
        if pids:
            procs = _try(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle)) or []
            held = [p.usedGpuMemory for p in procs if p.pid in pids and p.usedGpuMemory]
            sample.process_memory = int(sum(held)) if held else 0
        samples.append(sample)
    return samples


def process_memory(pid: int) -> int | None:
    """GPU memory NVML says process ``pid`` holds, over every GPU (None without NVML)."""
    held = [s.process_memory for s in sample_gpus(pid) if s.process_memory]
    return int(sum(held)) if held else None


def _try(read):
    try:
        return read()
    except Exception:
        return None


def sample_host(pid: int | None = None) -> HostSample:
    """CPU and RAM of the machine, and of the watched process tree when ``pid`` is given."""
    import psutil

    vm = psutil.virtual_memory()
    sample = HostSample(psutil.cpu_percent(interval=None), int(vm.used), int(vm.total))
    if pid:
        cpu, rss = 0.0, 0
        for p in _descendants(pid):
            try:
                proc = _process(p)
                cpu += proc.cpu_percent(interval=None)
                rss += proc.memory_info().rss
            except psutil.Error:
                continue
        sample.process_cpu_percent, sample.process_memory = cpu, rss
    return sample


_processes: dict = {}


def _process(pid: int):
    """psutil.Process objects are kept so cpu_percent measures since the previous call."""
    import psutil

    proc = _processes.get(pid)
    if proc is None or not proc.is_running():
        proc = _processes[pid] = psutil.Process(pid)
    return proc


def as_dict(sample) -> dict:
    return asdict(sample)


class Sampler(threading.Thread):
    """Samples GPUs (or the host) about once a second off the caller's thread.

    ``on_sample(gpus, host)`` is called from the sampler thread; the TUI hops back with
    ``call_from_thread``. Stop with ``stop()``.
    """

    def __init__(self, on_sample, *, pid: int | None = None, interval: float = 1.0) -> None:
        super().__init__(daemon=True, name="tunedeck-gpu-sampler")
        self.on_sample, self.pid, self.interval = on_sample, pid, interval
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.monotonic()
            gpus = sample_gpus(self.pid)
            host = sample_host(self.pid)
            try:
                self.on_sample(gpus, host)
            except Exception:
                return  # the receiver is gone (app closing)
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._halt.set()
