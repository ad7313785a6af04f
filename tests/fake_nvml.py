"""A stand-in for nvidia-ml-py's ``pynvml`` module: the one fake the tests allow (the hardware edge).

It implements the calls engine.gpu makes, with the error classes and messages the real module
raises ("NVML Shared Library Not Found", "Driver Not Loaded", "Not Supported"). Install it with
``install(monkeypatch, FakeNVML(...))``, which also resets engine.gpu's cached NVML state.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

GIB = 1024**3


class NVMLError(Exception):
    message = "Unknown Error"

    def __str__(self) -> str:
        return self.message


class NVMLError_LibraryNotFound(NVMLError):
    message = "NVML Shared Library Not Found"


class NVMLError_DriverNotLoaded(NVMLError):
    message = "Driver Not Loaded"


class NVMLError_NotSupported(NVMLError):
    message = "Not Supported"


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    total: int = 80 * GIB
    used: int = 20 * GIB
    utilization: int | None = 87
    temperature: int = 61
    power_mw: int = 312_000
    limit_mw: int = 700_000
    processes: dict[int, int] = field(default_factory=dict)  # pid -> bytes held


class _Obj:
    def __init__(self, **kw) -> None:
        self.__dict__.update(kw)


class FakeNVML(types.ModuleType):
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus: list[FakeGpu] | None = None, init_error: type[NVMLError] | None = None) -> None:
        super().__init__("pynvml")
        self.gpus = list(gpus or [])
        self.init_error = init_error
        self.calls: list[str] = []
        self.NVMLError = NVMLError
        self.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
        self.NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
        self.NVMLError_NotSupported = NVMLError_NotSupported

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise self.init_error()

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        return handle.name

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu):
        return _Obj(total=handle.total, used=handle.used, free=handle.total - handle.used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu):
        if handle.utilization is None:
            raise NVMLError_NotSupported()
        return _Obj(gpu=handle.utilization, memory=handle.utilization // 2)

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return handle.temperature

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        return handle.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeGpu) -> int:
        return handle.limit_mw

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu):
        return [_Obj(pid=pid, usedGpuMemory=used) for pid, used in handle.processes.items()]


def install(monkeypatch, module: types.ModuleType | None) -> None:
    """Put ``module`` where ``import pynvml`` finds it (None: the package is not installed)."""
    from engine import gpu

    monkeypatch.setitem(sys.modules, "pynvml", module)
    gpu.reset()
    monkeypatch.setattr(gpu, "_initialised", False)  # restored (and reset again) after the test
    monkeypatch.setattr(gpu, "_init_error", None)
