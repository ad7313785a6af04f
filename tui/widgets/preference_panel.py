"""The monitor's preference panel, for DPO and KTO runs: what the rewards say, on train and eval.

DPO: reward accuracy (how often the tuned model gives the chosen answer the higher reward), reward
margin, and the chosen and rejected rewards. KTO has no pairs, so no accuracy: its events carry the
margin between the answers labelled good and bad, each side's reward, and the KL term it measures
rewards against. Each figure is a sparkline over the logged steps and its latest value, train and
eval; a line of plain words says what the first one means.

Two forms, chosen by the height the panel is given: a table with a meaning beside each figure (a
screen 36 rows high or more), or three dense lines (a small terminal, e.g. 80x24). Hidden for SFT
runs. It draws the ``RunView`` it is given (``show``); the series come from engine.run_state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from engine.config import OBJECTIVE_NAMES, PREFERENCE_OBJECTIVES
from engine.follow import RunView

from .loss_chart import downsample
from .run_header import theme_colour

Point = tuple[int, float]
BARS = "▁▂▃▄▅▆▇█"
TALL_FROM = 36  # screen rows from which the panel is a table rather than three dense lines


@dataclass(frozen=True)
class Figure:
    label: str  # in the table
    short: str  # in the dense lines (8 cells at most)
    key: str  # the series of a log event; an eval event's is "eval_" + key
    means: str  # plain words
    percent: bool = False
    signed: bool = True  # a + before positive values (not for the KL, which is never negative)


FIGURES: dict[str, tuple[Figure, ...]] = {
    "dpo": (
        Figure("reward accuracy", "accuracy", "rewards/accuracies",
               "how often the tuned model prefers the chosen answer; 50% is chance", percent=True),
        Figure("reward margin", "margin", "rewards/margins",
               "chosen minus rejected reward: how strongly it prefers the chosen; should rise"),
        Figure("chosen reward", "chosen", "rewards/chosen",
               "how much likelier the chosen answers became than before training (x beta)"),
        Figure("rejected reward", "rejected", "rewards/rejected",
               "the same for the rejected answers; should end below the chosen"),
    ),
    "kto": (
        Figure("reward margin", "margin", "rewards/margins",
               "good minus bad answers' reward: above 0, it tells them apart"),
        Figure("good answers", "good", "rewards/chosen",
               "how much likelier answers labelled good became than before training (x beta)"),
        Figure("bad answers", "bad", "rewards/rejected",
               "the same for answers labelled bad; should fall below the good"),
        Figure("KL", "KL", "kl",
               "how far the model has drifted from where it started (KTO's baseline)", signed=False),
    ),
}
# The caption of the dense form and of a table too narrow for the meanings: (long, short) — the short
# one when the long one does not fit the width.
CAPTIONS = {
    "dpo": ("reward accuracy: how often the tuned model prefers the chosen answer; 50% is chance",
            "reward accuracy: how often the model prefers the chosen answer; 50% is chance"),
    "kto": ("KTO has no pairs: a reward is how much likelier an answer became; good should beat bad",
            "reward: how much likelier an answer became; good answers should beat bad ones"),
}


def sparkline(points: Sequence[Point], width: int, percent: bool = False) -> str:
    """One bar a point (bucket-averaged down to ``width``). Percentages on a fixed 0-100% scale, so
    50% always sits mid-height; other values on their own range, with 0 (no change) kept in it."""
    if width <= 0 or not points:
        return ""
    values = [v for _, v in downsample(points, width)]
    low, high = (0.0, 1.0) if percent else (min(0.0, *values), max(0.0, *values))
    if high <= low:
        return BARS[0] * len(values)
    top = len(BARS) - 1
    return "".join(BARS[max(0, min(top, round((v - low) / (high - low) * top)))] for v in values)


def value_text(value: float | None, figure: Figure | None = None) -> str:
    """A figure's value in at most 6 cells: 88%, +0.158, -1.23, +123."""
    if value is None:
        return "–"
    if figure is not None and figure.percent:
        return f"{value:.0%}"
    sign = "+" if figure is None or figure.signed else ""
    digits = 0 if abs(value) >= 100 else 2 if abs(value) >= 1 else 3
    return f"{value:{sign}.{digits}f}"


class PreferencePanel(Widget):
    DEFAULT_CSS = """
    PreferencePanel { height: auto; padding: 0 1; display: none; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: RunView | None = None

    @property
    def objective(self) -> str | None:
        objective = self.view.objective if self.view is not None else None
        return objective if objective in PREFERENCE_OBJECTIVES else None

    def show(self, view: RunView | None) -> None:
        """Draw ``view``; shown only while it is a preference run's."""
        self.view = view
        self.display = self.objective is not None
        if self.display:
            self.refresh()

    # --- what to draw -------------------------------------------------------------------------
    def figures(self) -> tuple[Figure, ...]:
        return FIGURES.get(self.objective or "", ())

    def series(self, figure: Figure) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
        """(train, eval) points of ``figure``."""
        view = self.view
        if view is None:
            return (), ()
        return view.points(figure.key), view.points("eval_" + figure.key)

    def latest(self, figure: Figure) -> tuple[float | None, float | None]:
        train, evals = self.series(figure)
        return (train[-1][1] if train else None), (evals[-1][1] if evals else None)

    def caption(self, width: int) -> str:
        long, short = CAPTIONS.get(self.objective or "", ("", ""))
        return long if len(long) <= width else short

    # --- layout -------------------------------------------------------------------------------
    def table_lines(self, width: int) -> int:
        """Title, one line a figure, and the caption when the meanings do not fit beside them."""
        return 1 + len(self.figures()) + (0 if self._note_width(width) else 1)

    def get_content_height(self, container, viewport, width: int) -> int:
        return 3 if viewport.height < TALL_FROM else self.table_lines(width)

    def render(self) -> Text:
        width = self.content_size.width or 80
        if not self.figures():
            return Text()
        if self.content_size.height and self.content_size.height < self.table_lines(width):
            return self._dense(width)
        return self._table(width)

    def _colours(self) -> tuple[str, str]:
        return theme_colour(self.app, "primary") or "blue", theme_colour(self.app, "accent") or "yellow"

    # The table: label | train sparkline value | eval sparkline value | meaning
    LABEL, VALUE, GAP = 16, 6, 3

    def _note_width(self, width: int) -> int:
        """Cells for the meanings beside the figures; 0 when they do not fit whole (then a caption)."""
        free = width - self.LABEL - 2 * (self.VALUE + 1) - 2 * self.GAP - 16  # 16: sparklines at least
        longest = max((len(f.means) for f in self.figures()), default=0)
        return longest if free >= longest else 0

    def _table(self, width: int) -> Text:
        train_colour, eval_colour = self._colours()
        notes = self._note_width(width)
        room = width - self.LABEL - 2 * (self.VALUE + 1) - 2 * self.GAP - (notes + self.GAP if notes else 0)
        room = max(2, room)
        train_w = max(1, room * 3 // 5)
        eval_w = max(1, room - train_w)
        text = Text(no_wrap=True, overflow="ellipsis")
        name = OBJECTIVE_NAMES.get(self.objective or "", "")
        text.append(f"{name + ' rewards':<{self.LABEL}}", style="bold")
        text.append(f"{'train':>{self.VALUE}}{'':<{train_w + 1}}", style=train_colour)
        text.append(" " * self.GAP)
        text.append(f"{'eval':>{self.VALUE}}{'':<{eval_w + 1}}", style=eval_colour)
        for figure in self.figures():
            train, evals = self.series(figure)
            last_train, last_eval = self.latest(figure)
            text.append("\n")
            text.append(f"{figure.label:<{self.LABEL}}")
            text.append(f"{value_text(last_train, figure):>{self.VALUE}} ", style="bold")
            text.append(f"{sparkline(train, train_w, figure.percent):<{train_w}}", style=train_colour)
            text.append(" " * self.GAP)
            text.append(f"{value_text(last_eval, figure):>{self.VALUE}} ", style="bold")
            text.append(f"{sparkline(evals, eval_w, figure.percent):<{eval_w}}", style=eval_colour)
            if notes:
                text.append(" " * self.GAP)
                text.append(figure.means, style="dim")
        if not notes:
            text.append("\n")
            text.append(self.caption(width), style="dim")
        return text

    # The dense form: two figures a line, then the caption.
    def _dense(self, width: int) -> Text:
        train_colour, eval_colour = self._colours()
        badge = 4
        cell = (width - badge - 3) // 2
        fixed = 8 + 1 + 1 + self.VALUE + 2 + len("eval ") + self.VALUE  # label, spaces, values
        spare = cell - fixed
        eval_w = spare // 3 if spare >= 14 else 0
        train_w = spare - (eval_w + 1 if eval_w else 0)
        train_w = train_w if train_w >= 3 else 0
        text = Text(no_wrap=True, overflow="ellipsis")
        figures = self.figures()
        name = OBJECTIVE_NAMES.get(self.objective or "", "")
        for row in range(0, len(figures), 2):
            text.append(f"{name if row == 0 else '':<{badge}}", style="bold")
            for i, figure in enumerate(figures[row:row + 2]):
                train, evals = self.series(figure)
                last_train, last_eval = self.latest(figure)
                if i:
                    text.append("   ")
                text.append(f"{figure.short:<8} ")
                text.append(f"{value_text(last_train, figure):>{self.VALUE}}", style="bold")
                if train_w:
                    text.append(f" {sparkline(train, train_w, figure.percent):<{train_w}}", style=train_colour)
                text.append("  eval ", style=eval_colour)
                text.append(f"{value_text(last_eval, figure):>{self.VALUE}}", style="bold")
                if eval_w:
                    text.append(f" {sparkline(evals, eval_w, figure.percent):<{eval_w}}", style=eval_colour)
            text.append("\n")
        text.append(self.caption(width), style="dim")
        return text
