"""Loss curves of two runs on one set of axes (training loss as lines, eval loss as dots), read from
their ``events.jsonl``. ``curves_of`` is pure file reading, for a thread; the widget only draws."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from .loss_chart import downsample
from .run_header import rgb as _rgb, theme_colour

Point = tuple[int, float]
SERIES_COLOURS = ("primary", "warning")


@dataclass(frozen=True)
class Curve:
    run_id: str
    losses: tuple[Point, ...] = ()
    eval_losses: tuple[Point, ...] = field(default_factory=tuple)


def curves_of(run_dir: str | Path) -> Curve:
    """Training and eval loss points of a run (resumed runs: the steps as they stand, no repeats)."""
    from engine.run_state import RunHistory
    from engine.runs import Run

    run = Run(Path(run_dir))
    history = RunHistory().extend(run.events())
    return Curve(run.id, history.losses, history.eval_losses)


class OverlayPlot(PlotextPlot):
    DEFAULT_CSS = """
    OverlayPlot { height: 1fr; width: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.curves: tuple[Curve, ...] = ()

    def render(self):
        self._draw()
        return super().render()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        width = max(10, self.size.width)
        variables = self.app.theme_variables
        high = 1
        for curve, name in zip(self.curves, SERIES_COLOURS):
            colour = _rgb(variables.get(name), (59, 130, 246))
            points = downsample(curve.losses, width * 2)
            if points:
                plt.plot([s for s, _ in points], [v for _, v in points], color=colour, marker="braille")
            if curve.eval_losses:
                plt.scatter([s for s, _ in curve.eval_losses], [v for _, v in curve.eval_losses],
                            color=colour, marker="dot")
            high = max([high] + [s for s, _ in curve.losses] + [s for s, _ in curve.eval_losses])
        plt.xlim(0, high)
        ticks = sorted({round(high * i / 4) for i in range(5)})
        plt.xticks(ticks, [str(t) for t in ticks])
        if not any(c.losses or c.eval_losses for c in self.curves):
            plt.ylim(0, 1)
        plt.xlabel("step")


class LossOverlay(Vertical):
    DEFAULT_CSS = """
    LossOverlay { height: 1fr; min-height: 5; }
    LossOverlay #overlay-caption { height: auto; max-height: 3; color: $text-muted; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="overlay-caption")
        yield OverlayPlot(id="overlay-plot")

    @property
    def curves(self) -> tuple[Curve, ...]:
        return self.query_one(OverlayPlot).curves

    def set_curves(self, curves: list[Curve], hint: str = "") -> None:
        plot = self.query_one(OverlayPlot)
        curves = tuple(curves[:2])
        if curves != plot.curves:
            plot.curves = curves
            plot.refresh()
        lines = []
        for curve, name in zip(curves, SERIES_COLOURS):
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append("━ ", style=theme_colour(self.app, name))
            line.append(curve.run_id)
            line.append(f"  loss {curve.losses[-1][1]:.4g}" if curve.losses else "  (no loss logged yet)")
            if curve.eval_losses:
                line.append(f"  best eval {min(v for _, v in curve.eval_losses):.4g}")
            lines.append(line)
        if hint:
            lines.append(Text(hint, style="italic"))
        text = Text("\n").join(lines)
        self.query_one("#overlay-caption", Static).update(text)
