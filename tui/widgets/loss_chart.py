"""The loss chart: training loss and eval loss over steps, on real axes (plotext), with smoothing."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Static
from textual_plotext import PlotextPlot

from .run_header import theme_colour

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


def _rgb(color: str | None, fallback: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        return Color.parse(color).rgb if color else fallback
    except Exception:
        return fallback


class LossPlot(PlotextPlot):
    """The plot itself; data is set by LossChart."""

    DEFAULT_CSS = """
    LossPlot { height: 1fr; width: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.losses: tuple[Point, ...] = ()
        self.eval_losses: tuple[Point, ...] = ()
        self.max_steps: int | None = None
        self.smoothing = True

    def render(self):
        self._draw()
        return super().render()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        variables = self.app.theme_variables
        train_colour = _rgb(variables.get("primary"), (59, 130, 246))
        faint_colour = _rgb(variables.get("foreground"), (160, 160, 160))
        faint_colour = tuple(int(c * 0.45) for c in faint_colour)
        eval_colour = _rgb(variables.get("accent"), (245, 158, 11))
        width = max(10, self.size.width)
        losses = downsample(self.losses, width * 2)
        if losses:
            steps = [s for s, _ in losses]
            values = [v for _, v in losses]
            if self.smoothing and len(values) > 2:
                plt.plot(steps, values, color=faint_colour, marker="braille")
                plt.plot(steps, smooth(values), color=train_colour, marker="braille")
            else:
                plt.plot(steps, values, color=train_colour, marker="braille")
        if self.eval_losses:
            evals = downsample(self.eval_losses, width)
            steps, values = [s for s, _ in evals], [v for _, v in evals]
            if len(evals) > 1:
                plt.plot(steps, values, color=eval_colour, marker="braille")
            plt.scatter(steps, values, color=eval_colour, marker="●")
        high = self.max_steps or max([s for s, _ in self.losses] + [s for s, _ in self.eval_losses] + [1])
        high = max(1, high)
        plt.xlim(0, high)
        ticks = sorted({round(high * i / 4) for i in range(5)})
        plt.xticks(ticks, [str(t) for t in ticks])
        if not losses and not self.eval_losses:
            plt.ylim(0, 1)
        plt.xlabel("step")


class LossChart(Vertical):
    """Caption with a legend and the smoothing state, then the plot."""

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 6; }
    LossChart #loss-caption { height: 1; color: $text-muted; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    smoothing: reactive[bool] = reactive(True)

    def compose(self) -> ComposeResult:
        yield Static(id="loss-caption")
        yield LossPlot(id="loss-plot")

    def on_mount(self) -> None:
        self._caption()

    def set_data(self, losses: Sequence[Point], eval_losses: Sequence[Point], max_steps: int | None) -> None:
        plot = self.query_one(LossPlot)
        losses, eval_losses = tuple(losses), tuple(eval_losses)
        if (losses, eval_losses, max_steps) == (plot.losses, plot.eval_losses, plot.max_steps):
            return
        plot.losses, plot.eval_losses, plot.max_steps = losses, eval_losses, max_steps
        plot.refresh()
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
            text.append("   waiting for the first logged step…")
        self.query_one("#loss-caption", Static).update(text)
