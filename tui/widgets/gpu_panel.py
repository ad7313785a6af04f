"""The GPU panel: per GPU memory (bar + sparkline over time), utilisation, temperature, power, and the
memory our worker holds. Without an NVIDIA GPU: one line saying why, then CPU and RAM of the worker.

The panel draws samples it is given (``show(gpus, host)``); sampling happens off the UI thread
(engine.gpu.Sampler, started by the screen).
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from engine.estimate import gib
from engine.gpu import GpuSample, HostSample

from .run_header import put, theme_colour

HISTORY = 120  # samples kept per sparkline (two minutes at 1 Hz)


def bar(fraction: float, width: int) -> str:
    fraction = max(0.0, min(1.0, fraction))
    full = round(fraction * width)
    return "█" * full + "░" * (width - full)


BARS = "▁▂▃▄▅▆▇█"


def spark(values, width: int, ceiling: float | None) -> str:
    """One bar per sample, newest on the right, on a fixed 0..ceiling scale (empty columns on the left).

    Textual's Sparkline stretches a series over its width and scales it min..max, so a steady
    40 GiB would look like noise and two samples would fill the line; over time we want neither.
    """
    values = list(values)[-width:]
    top = ceiling or max(values, default=0) or 1
    chars = []
    for value in values:
        level = max(0.0, min(1.0, value / top))
        chars.append(BARS[min(len(BARS) - 1, int(level * len(BARS)))] if value > 0 else " ")
    return " " * (width - len(chars)) + "".join(chars)


class TimeSparkline(Static):
    """A fixed-scale sparkline over time (see ``spark``)."""

    DEFAULT_CSS = """
    TimeSparkline { width: 24; height: 1; color: $success; }
    TimeSparkline.-high { color: $warning; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history: deque[float] = deque(maxlen=HISTORY)
        self.ceiling: float | None = None

    def add(self, value: float, ceiling: float | None) -> None:
        self.history.append(value)
        self.ceiling = ceiling
        self.set_class(bool(ceiling) and value / ceiling >= 0.9, "-high")
        self.refresh()

    def render(self) -> str:
        return spark(self.history, max(1, self.size.width), self.ceiling)


class MetricRow(Horizontal):
    """One line of text and a sparkline of its value over time."""

    DEFAULT_CSS = """
    MetricRow { height: 1; }
    MetricRow > .row-text { width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    MetricRow > TimeSparkline { margin-left: 1; }
    """

    def __init__(self, key: str) -> None:
        super().__init__(id=f"row-{key}")
        self.text = Static(classes="row-text")  # made here so show() works before the row is mounted
        self.spark = TimeSparkline()

    def compose(self) -> ComposeResult:
        yield self.text
        yield self.spark

    def show(self, text: Text | str, value: float | None, ceiling: float | None = None) -> None:
        put(self.text, text)
        if value is not None:
            self.spark.add(value, ceiling)


class GpuPanel(Vertical):
    DEFAULT_CSS = """
    GpuPanel { height: auto; border: round $primary-muted; border-title-color: $text-muted; padding: 0 1; }
    GpuPanel #gpu-reason { color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    GpuPanel .gpu-head { text-style: bold; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "GPU"
        self._rows: dict[str, MetricRow] = {}
        self.reason: str | None = None
        self.samples: list[GpuSample] = []
        self.host: HostSample | None = None

    def compose(self) -> ComposeResult:
        yield Static("sampling…", id="gpu-reason")

    def _row(self, key: str) -> MetricRow:
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = MetricRow(key)
            self.mount(row)
        return row

    def show(self, gpus: list[GpuSample], host: HostSample | None, reason: str | None, watching: bool) -> None:
        """Draw one sample. ``watching``: a live worker process is being measured."""
        self.samples, self.host, self.reason = gpus, host, reason
        line = self.query_one("#gpu-reason", Static)
        if gpus:
            line.display = False
            self.border_title = "GPU" if len(gpus) == 1 else f"GPUs ({len(gpus)})"
            for gpu in gpus:
                self._show_gpu(gpu, watching)
        else:
            self.border_title = "CPU / RAM (no GPU)"
            line.display = True
            reason = reason or "no NVIDIA GPU found"
            put(line, Text(reason[0].upper() + reason[1:] + "."))
            if host is not None:
                self._show_host(host, watching)

    def _show_gpu(self, gpu: GpuSample, watching: bool) -> None:
        used = gpu.memory_used / gpu.memory_total if gpu.memory_total else 0.0
        head = Text()
        head.append(f"{gpu.index} {gpu.name}", style="bold")
        parts = []
        if gpu.utilization is not None:
            parts.append(f"util {gpu.utilization}%")
        if gpu.temperature is not None:
            parts.append(f"{gpu.temperature}°C")
        if gpu.power is not None:
            parts.append(f"{gpu.power:.0f}/{gpu.power_limit:.0f} W" if gpu.power_limit else f"{gpu.power:.0f} W")
        if parts:
            head.append("  " + "  ".join(parts))
        self._row(f"gpu{gpu.index}-head").show(head, gpu.utilization, 100)
        mem = Text()
        mem.append(bar(used, 12), style="bold" if used < 0.9 else f"bold {theme_colour(self.app, 'error')}")
        mem.append(f" {gib(gpu.memory_used, unit='')}/{gib(gpu.memory_total)}")
        if watching and gpu.process_memory is not None:
            mem.append(f"  worker {gib(gpu.process_memory)}")
        self._row(f"gpu{gpu.index}-mem").show(mem, gpu.memory_used, gpu.memory_total)

    def _show_host(self, host: HostSample, watching: bool) -> None:
        cpu, ram = Text(), Text()
        if watching and host.process_cpu_percent is not None:
            cpu.append(bar(host.process_cpu_percent / (100 * max(1, host.cores)), 12))
            cpu.append(f" worker CPU {host.process_cpu_percent:.0f}% of {host.cores} cores")
            self._row("host-cpu").show(cpu, host.process_cpu_percent, 100.0 * max(1, host.cores))
        else:
            cpu.append(bar(host.cpu_percent / 100, 12))
            cpu.append(f" machine CPU {host.cpu_percent:.0f}% ({host.cores} cores)")
            self._row("host-cpu").show(cpu, host.cpu_percent, 100.0)
        ram.append(bar(host.memory_used / host.memory_total if host.memory_total else 0, 12))
        if watching and host.process_memory is not None:
            ram.append(f" worker RAM {gib(host.process_memory)}")
            ram.append(f"  machine {gib(host.memory_used, unit='')}/{gib(host.memory_total, unit='')}", style="dim")
            self._row("host-ram").show(ram, host.process_memory, host.memory_total)
        else:
            ram.append(f" machine RAM {gib(host.memory_used, unit='')}/{gib(host.memory_total)}")
            self._row("host-ram").show(ram, host.memory_used, host.memory_total)
