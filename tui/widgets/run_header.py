"""The top of the monitor: which run, its state and why, a progress bar with step x of y, elapsed, ETA;
and the metrics strip (loss, eval loss, learning rate, grad-norm, tokens/s, epoch).

Both draw a ``RunView`` (engine.follow) they are given; ``tick()`` redraws the clocks.
"""

from __future__ import annotations

import time

from rich.progress_bar import ProgressBar
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Static

from engine.follow import RunView
from engine.runs import method_label

STATE_STYLE = {
    "created": ("○", "dim"),
    "starting": ("◌", "$warning"),
    "running": ("●", "$success"),
    "stopping": ("◍", "$warning"),
    "stopped": ("■", "$secondary"),
    "completed": ("✔", "$success"),
    "failed": ("✖", "$error"),
    "crashed": ("✖", "$error"),
}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def number(value: float | None, fmt: str = ".4g") -> str:
    return "–" if value is None else format(value, fmt)


def memory_words(measured: float | None, estimated: float | None) -> str:
    """"5.5 GiB (estimate 5.3)": what the worker measured beside what was estimated."""
    from engine.estimate import gib

    if measured is None:
        return f"? (estimate {gib(estimated)})"
    return gib(measured) + (f" (estimate {gib(estimated, '')})" if estimated else "")


def put(static: Static, content, *, layout: bool = False, key=None) -> None:
    """Update ``static`` only when its content changed, and without a layout pass unless asked (a
    layout pass re-renders the whole screen; a fixed-size line needs none)."""
    if key is None:
        key = (content.plain, tuple(content.spans)) if isinstance(content, Text) else content
    if getattr(static, "_last_put", None) == key:
        return
    static._last_put = key
    static.update(content, layout=layout)


def theme_colour(app, name: str) -> str:
    """A theme variable as a Rich colour ("" when the theme says "auto" or has none)."""
    value = app.theme_variables.get(name, "")
    try:
        return Color.parse(value).hex if value else ""
    except Exception:
        return ""


def rgb(colour: str | None, fallback: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour (e.g. a theme variable's value) as an RGB triple, for plotext; ``fallback`` when unset."""
    try:
        return Color.parse(colour).rgb if colour else fallback
    except Exception:
        return fallback


class RunHeader(Vertical):
    DEFAULT_CSS = """
    RunHeader { height: auto; padding: 0 1; }
    RunHeader Static { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    RunHeader #run-progress { height: 1; }
    RunHeader #run-bar { width: 1fr; }
    RunHeader #run-facts { width: auto; padding-left: 1; }
    RunHeader #run-reason { color: $text-muted; height: auto; max-height: 2; text-wrap: wrap; }
    RunHeader #run-reason.-bad { color: $error; }
    RunHeader #run-reason.-note { color: $warning; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: RunView | None = None
        self.stop_deadline: float | None = None  # when the forced stop happens (we asked to stop)

    def compose(self) -> ComposeResult:
        yield Static("No run yet: set up a run and press Start.", id="run-title")
        with Horizontal(id="run-progress"):
            yield Static(id="run-bar")
            yield Static(id="run-facts")
        yield Static(id="run-reason")

    def show(self, view: RunView | None) -> None:
        self.view = view
        if view is None or not view.alive:
            self.stop_deadline = None
        self.tick()

    def tick(self) -> None:
        view = self.view
        title = self.query_one("#run-title", Static)
        bar_line = self.query_one("#run-bar", Static)
        facts_line = self.query_one("#run-facts", Static)
        reason = self.query_one("#run-reason", Static)
        if view is None:
            put(title, "No run yet: set up a run and press [b]Start[/b] (n).")
            put(bar_line, "")
            put(facts_line, "", layout=True)
            put(reason, "", layout=True)
            return
        now = time.time()
        symbol, colour = STATE_STYLE.get(view.state, ("?", "dim"))
        colour = theme_colour(self.app, colour[1:]) if colour.startswith("$") else colour
        head = Text()
        head.append(f"{symbol} {view.state}", style=f"bold {colour}")
        head.append(f"  {view.run_id}", style="bold")
        if view.method:
            head.append(f"  {method_label(view.method, view.objective)}", style="dim")
        if view.device:
            head.append(f" on {view.device}", style="dim")
        if view.attempts > 1:
            head.append(f"  attempt {view.attempts}", style="dim")
        put(title, head)

        total = view.max_steps or 0
        bar = ProgressBar(
            total=float(total or 1),
            completed=float(view.step if total else (1 if view.state == "completed" else 0)),
            complete_style=theme_colour(self.app, "primary") or "blue",
            finished_style=theme_colour(self.app, "success") or "green",
            style=theme_colour(self.app, "panel") or "grey23",
        )
        facts = Text()
        facts.append(f"{view.fraction * 100:3.0f}%", style="bold")
        facts.append(f"  step {view.step}/{view.max_steps if view.max_steps else '?'}")
        facts.append(f"  elapsed {duration(view.elapsed(now))}")
        eta = view.eta(now)
        if view.alive:
            facts.append(f"  ETA {duration(eta)}")
        put(bar_line, bar, key=(bar.total, bar.completed, bar.complete_style))
        put(facts_line, facts, layout=len(facts.plain) != len(str(getattr(facts_line, "_last_put", ("",))[0])))

        note, style = self._reason(view, now)
        put(reason, Text(note), layout=True)
        reason.set_class(style == "bad", "-bad")
        reason.set_class(style == "note", "-note")

    def _reason(self, view: RunView, now: float) -> tuple[str, str]:
        if view.state == "stopping":
            text = "Stopping: the worker saves a checkpoint at the end of this step, then exits"
            if self.stop_deadline is not None:
                left = max(0, int(self.stop_deadline - now))
                text += f"; forced stop in {left} s if it has not"
            return text + ".", "note"
        if view.state in ("failed", "crashed"):
            return (view.message or view.error or f"The run {view.state}.") + "  (r resumes from the last checkpoint)", "bad"
        if view.state == "stopped":
            extra = f" at checkpoint-{view.checkpoints[-1]}" if view.checkpoints else ""
            return (view.message or "Stopped.") + f"  Press r to resume{extra}.", "note"
        if view.state == "completed":
            return view.message or "Completed.", ""
        if view.state in ("starting", "created"):
            return view.message or "Starting the worker…", ""
        if view.overfitting:  # caught live: say it, and what to do
            return "⚠ " + view.overfitting + "  (x stops and keeps a checkpoint)", "note"
        if view.resumed_from:
            return f"Resumed from {view.resumed_from}.", ""
        return view.message or "", ""


class RunMetrics(Widget):
    """Latest values, wrapped between pairs (never inside one) when the line is too narrow."""

    DEFAULT_CSS = """
    RunMetrics { height: auto; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: RunView | None = None

    def show(self, view: RunView | None) -> None:
        self.view = view
        lines = self._text(self.content_size.width).plain.count("\n")
        self.refresh(layout=lines != getattr(self, "_lines", None))
        self._lines = lines

    def pairs(self) -> list[tuple[str, str]]:
        v = self.view
        if v is None:
            return []
        best = v.best_eval_loss
        evals = v.eval_losses
        pairs = [
            ("loss", number(v.last_loss)),
            ("eval", number(evals[-1][1] if evals else None) + (f" (best {best:.4g})" if best is not None else "")),
            ("lr", number(v.learning_rate, ".2e")),
            ("grad", number(v.grad_norm, ".3g")),
            ("tok/s", number(v.tokens_per_second, ",.0f")),
            ("epoch", number(v.epoch, ".2f")),
        ]
        if v.peak_memory or v.estimated_memory:
            pairs.append(("peak", memory_words(v.peak_memory, v.estimated_memory)))
        return pairs

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self._text(width).plain.split("\n")))

    def render(self) -> Text:
        return self._text(self.content_size.width)

    def _text(self, width: int) -> Text:
        pairs = self.pairs()
        text = Text()
        muted = "dim"
        width = width or 10_000
        used = 0
        for key, value in pairs:
            size = len(key) + 1 + len(value)
            if used and used + 2 + size > width:
                text.append("\n")
                used = 0
            elif used:
                text.append("  ")
                used += 2
            text.append(f"{key} ", style=muted)
            text.append(value, style="bold")
            used += size
        return text
