"""engine.gpu: NVML sampling through a fake ``pynvml`` (the hardware edge), the CPU fallback with the
real psutil, and the sampler thread."""

import os
import subprocess
import sys
import threading
import time

import psutil
import pytest

from engine import gpu
from fake_nvml import GIB, FakeGpu, FakeNVML, NVMLError_DriverNotLoaded, NVMLError_LibraryNotFound, install


@pytest.fixture
def child():
    """A real child process of this test (so it is part of our process tree)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_without_the_pynvml_package_the_reason_says_what_to_install(monkeypatch):
    install(monkeypatch, None)
    reason = gpu.no_gpu_reason()
    assert reason == "NVML library not installed (pip install nvidia-ml-py)"
    assert gpu.sample_gpus() == [] and gpu.list_gpus() == []


def test_without_the_driver_library_one_line_says_no_gpu(monkeypatch):
    install(monkeypatch, FakeNVML(init_error=NVMLError_LibraryNotFound))
    reason = gpu.no_gpu_reason()
    assert reason.startswith("no NVIDIA GPU found") and "driver library" in reason
    assert "\n" not in reason
    assert gpu.sample_gpus(os.getpid()) == []


def test_driver_not_loaded_is_told_apart(monkeypatch):
    fake = FakeNVML(gpus=[FakeGpu()], init_error=NVMLError_DriverNotLoaded)
    install(monkeypatch, fake)
    assert gpu.no_gpu_reason() == "no NVIDIA GPU usable: the NVIDIA driver is not loaded"
    assert gpu.sample_gpus() == []


def test_zero_devices(monkeypatch):
    install(monkeypatch, FakeNVML(gpus=[]))
    assert gpu.no_gpu_reason() == "no NVIDIA GPU found"


def test_samples_every_gpu_and_the_memory_our_process_tree_holds(monkeypatch, child):
    other = 1  # init: not ours
    gpus = [
        FakeGpu(processes={os.getpid(): 3 * GIB, child.pid: 2 * GIB, other: 7 * GIB}),
        FakeGpu(name="NVIDIA A10", total=24 * GIB, used=1 * GIB, utilization=None, processes={other: GIB}),
    ]
    fake = FakeNVML(gpus=gpus)
    install(monkeypatch, fake)
    assert gpu.no_gpu_reason() is None
    first, second = gpu.sample_gpus(os.getpid())
    assert (first.index, first.name, first.memory_total, first.memory_used) == (0, "NVIDIA H100 80GB HBM3", 80 * GIB, 20 * GIB)
    assert first.process_memory == 5 * GIB  # this process and its child, not pid 1
    assert (first.utilization, first.temperature, first.power, first.power_limit) == (87, 61, 312.0, 700.0)
    assert second.utilization is None  # "Not Supported" leaves that one reading empty, the rest stays
    assert second.process_memory == 0 and second.temperature == 61
    assert [g.name for g in gpu.list_gpus()] == ["NVIDIA H100 80GB HBM3", "NVIDIA A10"]
    assert gpu.sample_gpus()[0].process_memory is None  # no pid asked: not measured
    assert fake.calls.count("nvmlInit") == 1  # initialised once, then reused


def test_cpu_fallback_measures_the_worker_with_real_psutil():
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()+20\nwhile time.time()<t: pass"])
    try:
        proc = psutil.Process(burner.pid)
        gpu.sample_host(burner.pid)  # psutil's cpu_percent measures from the previous call
        before, t0 = proc.cpu_times(), time.monotonic()
        time.sleep(1.0)
        host = gpu.sample_host(burner.pid)
        after, t1 = proc.cpu_times(), time.monotonic()
    finally:
        burner.kill()
        burner.wait()
    # what the busy child really used in that second (however loaded the machine is)
    used = 100 * ((after.user + after.system) - (before.user + before.system)) / (t1 - t0)
    assert used > 1
    assert host.process_cpu_percent == pytest.approx(used, abs=max(10.0, used * 0.25))
    assert 1024**2 < host.process_memory < psutil.virtual_memory().total
    assert 0 < host.memory_used < host.memory_total == psutil.virtual_memory().total
    assert host.cores == (os.cpu_count() or 1)
    machine = gpu.sample_host()
    assert machine.process_cpu_percent is None and machine.process_memory is None


def test_sampler_calls_back_about_every_interval_and_stops(monkeypatch):
    install(monkeypatch, FakeNVML(gpus=[FakeGpu()]))
    got, seen = [], threading.Event()

    def on_sample(gpus, host):
        got.append((gpus, host, threading.current_thread().name))
        if len(got) >= 3:
            seen.set()

    sampler = gpu.Sampler(on_sample, pid=os.getpid(), interval=0.1)
    sampler.start()
    assert seen.wait(10)
    sampler.stop()
    sampler.join(5)
    assert not sampler.is_alive()
    gpus, host, thread = got[0]
    assert thread != threading.main_thread().name
    assert gpus[0].name == "NVIDIA H100 80GB HBM3" and host.memory_total > 0


def test_sampler_ends_when_the_receiver_is_gone(monkeypatch):
    install(monkeypatch, FakeNVML(gpus=[]))

    def on_sample(gpus, host):
        raise RuntimeError("app closed")

    sampler = gpu.Sampler(on_sample, interval=0.05)
    sampler.start()
    sampler.join(5)
    assert not sampler.is_alive()
