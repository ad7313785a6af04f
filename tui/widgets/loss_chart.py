"""The loss chart: training loss and eval loss over steps, on real axes (plotext), with smoothing."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widgets import Static
from textual.widget import Widget
from textual_plotext.plot import Plot

from .run_header import put, rgb, theme_colour

Point = tuple[int, float]

SMOOTHING = 0.8  # weight of the exponential moving average (TensorBoard-style, de-biased)


def smooth(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """De-biased exponential moving average: the first points are not dragged towards zero."""
    out, last, norm = [], 0.0, 0.0
    for value in values:
        last = last * weight + (1 - weight) * value
        norm = norm * weight + (1 - weight)
        out.append(last / norm)
    return out


def downsample(points: Sequence[Point], limit: int) -> list[Point]:
    """At most ``limit`` points: consecutive points averaged per bucket (keeps the shape, not the noise)."""
    if limit <= 0 or len(points) <= limit:
        return list(points)
    size = len(points) / limit
    out = []
    for i in range(limit):
        bucket = points[int(i * size): max(int((i + 1) * size), int(i * size) + 1)]
        out.append((bucket[-1][0], sum(v for _, v in bucket) / len(bucket)))
    return out


@dataclass(frozen=True)
class Frame:
    """What one drawing of the plot depends on (besides the data, which has a version number)."""

    version: int
    smoothing: bool
    width: int
    height: int
    colours: tuple  # train, faint, eval, canvas, axes, ticks (RGB tuples)


def draw(plt, frame: Frame, losses: Sequence[Point], eval_losses: Sequence[Point], max_steps: int | None) -> Text:
    """Build the plot as text with plotext (pure Python, 10-40 ms: kept off the UI thread)."""
    train, faint, evalc, canvas, axes, ticks_colour = frame.colours
    plt.clear_data()
    plt.clear_figure()
    plt.canvas_color(canvas)
    plt.axes_color(axes)
    plt.ticks_color(ticks_colour)
    # Drawn in this order because a later series wins a shared cell: the eval line under the train
    # lines (eval loss often sits right on the train curve and hid it), the eval points on top.
    evals = downsample(eval_losses, frame.width) if eval_losses else []
    if len(evals) > 1:
        plt.plot([s for s, _ in evals], [v for _, v in evals], color=evalc, marker="braille")
    shown = downsample(losses, frame.width * 2)
    if shown:
        steps = [s for s, _ in shown]
        values = [v for _, v in shown]
        if frame.smoothing and len(values) > 2:
            plt.plot(steps, values, color=faint, marker="braille")
            plt.plot(steps, smooth(values), color=train, marker="braille")
        else:
            plt.plot(steps, values, color=train, marker="braille")
    if evals:
        plt.scatter([s for s, _ in evals], [v for _, v in evals], color=evalc, marker="●")
    last = max([s for s, _ in losses] + [s for s, _ in eval_losses] + [0])
    # The axis grows with the run (a quarter ahead of the last point) up to max_steps: early points
    # of a long run are not squeezed into the first column; the progress bar shows how far it is.
    high = max(1, min(max_steps, max(10, round(last * 1.25))) if max_steps else last)
    plt.xlim(0, high)
    ticks = sorted({round(high * i / 4) for i in range(5)})
    plt.xticks(ticks, [str(t) for t in ticks])
    if not losses and not eval_losses:
        plt.ylim(0, 1)
    plt.xlabel("step")
    plt.plotsize(frame.width, frame.height)
    plt._set_size(frame.width, frame.height)  # textual-plotext does both; resizing misbehaves otherwise
    return Text.from_ansi(plt.build())


def to_strips(text: Text, width: int, height: int) -> list[Strip]:
    """Text -> one Strip a line, so the UI thread only hands out ready lines (Textual's line API)."""
    console = Console(width=width, height=height, color_system="truecolor", force_terminal=True,
                      legacy_windows=False, file=io.StringIO())
    options = console.options.update(width=width, height=height, no_wrap=True, overflow="crop")
    lines = console.render_lines(text, options, pad=True)
    return [Strip(line, width) for line in lines[:height]]


class _Builder(threading.Thread):
    """Draws frames on its own thread; only the newest request is kept (older ones are stale)."""

    def __init__(self, deliver) -> None:
        super().__init__(daemon=True, name="tunedeck-loss-plot")
        self.deliver = deliver
        self._cond = threading.Condition()
        self._job: tuple | None = None
        self._halt = False

    def submit(self, frames: list[Frame], losses, eval_losses, max_steps) -> None:
        with self._cond:
            self._job = (frames, losses, eval_losses, max_steps)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._halt = True
            self._cond.notify()

    def run(self) -> None:
        plt = Plot()
        while True:
            with self._cond:
                while self._job is None and not self._halt:
                    self._cond.wait()
                if self._halt:
                    return
                frames, losses, eval_losses, max_steps = self._job
                self._job = None
            for frame in frames:
                with self._cond:
                    if self._job is not None or self._halt:
                        break  # newer data or size: draw that instead
                try:
                    text = draw(plt, frame, losses, eval_losses, max_steps)
                except Exception as exc:  # a plotting bug must not kill the chart
                    text = Text(f"(could not draw the plot: {exc})")
                strips = to_strips(text, frame.width, frame.height)
                try:
                    self.deliver(frame, strips)
                except Exception:
                    return  # the app is gone


class LossPlot(Widget):
    """Loss and eval loss over steps. Frames are drawn by a builder thread and cached, both with and
    without smoothing, so a key press or a redraw only shows a frame that is already there."""

    DEFAULT_CSS = """
    LossPlot { height: 1fr; width: 1fr; }
    """

    class FrameDrawn(Message, bubble=False):
        """A frame the builder thread has drawn."""

        def __init__(self, frame: Frame, strips: list[Strip]) -> None:
            super().__init__()
            self.frame, self.strips = frame, strips

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.losses: tuple[Point, ...] = ()
        self.eval_losses: tuple[Point, ...] = ()
        self.max_steps: int | None = None
        self.smoothing = True
        self.version = 0
        self._frames: dict[Frame, list[Strip]] = {}
        self._last: list[Strip] | None = None
        self._shown: list[Strip] | None = None
        self._builder: _Builder | None = None

    def on_mount(self) -> None:
        self._builder = _Builder(lambda frame, strips: self.post_message(self.FrameDrawn(frame, strips)))
        self._builder.start()
        self.app.theme_changed_signal.subscribe(self, lambda theme: self.refresh())

    def on_unmount(self) -> None:
        if self._builder is not None:
            self._builder.stop()

    def set_data(self, losses, eval_losses, max_steps) -> None:
        self.losses, self.eval_losses, self.max_steps = losses, eval_losses, max_steps
        self.version += 1
        self.refresh()

    def frame(self, smoothing: bool | None = None) -> Frame:
        variables = self.app.theme_variables
        foreground = rgb(variables.get("foreground"), (200, 200, 200))
        canvas = rgb(variables.get("surface"), (22, 29, 38))
        colours = (
            rgb(variables.get("primary"), (59, 130, 246)),
            tuple(int(c * 0.45 + b * 0.55) for c, b in zip(foreground, canvas)),
            rgb(variables.get("accent"), (245, 158, 11)),
            canvas,
            canvas,
            foreground,
        )
        width, height = max(10, self.size.width), max(3, self.size.height)
        return Frame(self.version, self.smoothing if smoothing is None else smoothing, width, height, colours)

    @property
    def ready(self) -> bool:
        """The frame for the current data, size and smoothing is drawn."""
        return self.frame() in self._frames

    def render_line(self, y: int) -> Strip:
        if y == 0 or self._shown is None:
            self._shown = self._current()
        strips = self._shown
        width = self.size.width
        if strips is None or y >= len(strips):
            return Strip.blank(width)
        strip = strips[y]
        return strip if strip.cell_length == width else strip.crop_extend(0, width, None)

    def _current(self) -> list[Strip] | None:
        frame = self.frame()
        strips = self._frames.get(frame)
        if strips is None:
            if self._builder is not None:
                other = self.frame(not frame.smoothing)
                self._builder.submit([frame, other], self.losses, self.eval_losses, self.max_steps)
            return self._last  # the previous frame until the new one is drawn
        self._last = strips
        return strips

    def on_loss_plot_frame_drawn(self, message: FrameDrawn) -> None:
        frame, strips = message.frame, message.strips
        if frame.version != self.version:
            return  # drawn for data that has changed since
        self._frames = {f: t for f, t in self._frames.items() if f.version == self.version}
        self._frames[frame] = strips
        if frame == self.frame():
            self.refresh()


class LossChart(Vertical):
    """Caption with a legend and the smoothing state, then the plot."""

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 6; }
    LossChart #loss-caption { height: 1; color: $text-muted; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    smoothing: reactive[bool] = reactive(True)
    waiting = True  # no points yet because the run has not logged yet (False: it never will)

    def compose(self) -> ComposeResult:
        yield Static(id="loss-caption")
        yield LossPlot(id="loss-plot")

    def on_mount(self) -> None:
        self._caption()

    def set_data(self, losses: Sequence[Point], eval_losses: Sequence[Point], max_steps: int | None,
                 *, waiting: bool = True) -> None:
        plot = self.query_one(LossPlot)
        losses, eval_losses = tuple(losses), tuple(eval_losses)
        if waiting != self.waiting:
            self.waiting = waiting
            self._caption()
        if (losses, eval_losses, max_steps) == (plot.losses, plot.eval_losses, plot.max_steps):
            return
        plot.set_data(losses, eval_losses, max_steps)
        self._caption()

    @property
    def points(self) -> int:
        return len(self.query_one(LossPlot).losses)

    def watch_smoothing(self, smoothing: bool) -> None:
        if not self.is_mounted:
            return
        plot = self.query_one(LossPlot)
        plot.smoothing = smoothing
        plot.refresh()
        self._caption()

    def _caption(self) -> None:
        plot = self.query_one(LossPlot)
        text = Text()
        text.append("Loss ", style="bold")
        text.append("━ train", style=theme_colour(self.app, "primary"))
        if plot.losses:
            text.append(f" {plot.losses[-1][1]:.4g}")
        text.append("  ")
        text.append("● eval", style=theme_colour(self.app, "accent"))
        if plot.eval_losses:
            best_step, best = min(plot.eval_losses, key=lambda p: p[1])
            text.append(f" {plot.eval_losses[-1][1]:.4g} (best {best:.4g} @ {best_step})")
        text.append(f"   smoothing {'on' if self.smoothing else 'off'}")
        if not plot.losses and not plot.eval_losses:
            text.append("   waiting for the first logged step…" if self.waiting else "   no step was logged")
        put(self.query_one("#loss-caption", Static), text)
