"""The monitor's GRPO panel: what the rewards say about the answers the model samples, and the answers.

GRPO (Shao et al. 2024) samples several answers to each prompt, scores them with reward functions and
pushes the model toward the better ones. Its events carry, per logged step (train, and ``eval_`` for
evaluations): the mean weighted total ``reward``, each reward function's mean
(``rewards/<name>/mean``), ``full_marks`` (the share of answers that reached the highest possible
total), the mean completion length and the KL to the reference model. Each is a sparkline over the
logged steps and its latest value. Below them, the most recent sampled answers with their scores —
the question every GRPO user asks: what is it generating now?

Two forms, chosen by the height the panel is given (as the preference panel): a table with a meaning
beside each figure and up to four recent answers (a screen 36 rows high or more), or three dense
lines (e.g. 80x24): the total and full marks, each reward's mean, then length, KL and the newest
answer on one line. Hidden for other objectives. It draws the ``RunView`` it is given (``show``);
the series and samples come from engine.run_state.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.follow import RunView

from .preference_panel import TALL_FROM, Figure, Point, sparkline, value_text
from .run_header import theme_colour

OBJECTIVE = "grpo"
REWARD_PREFIX, REWARD_SUFFIX = "rewards/", "/mean"
SAMPLES_SHOWN = 4  # recent answers in the table form

TOTAL = Figure("reward", "reward", "reward", "the weighted total of the rewards, mean over answers; should rise")
FULL_MARKS = Figure("full marks", "full", "full_marks",
                    "share of answers that got the highest possible total", percent=True)
LENGTH = Figure("answer length", "length", "completions/mean_length",
                "mean tokens per sampled answer (cut at max_completion_length)", signed=False)
KL = Figure("KL", "KL", "kl", "how far the model has drifted from where it started", signed=False)


def reward_help(name: str) -> str:
    """A reward's one-line explanation (engine.rewards' built-ins), or that it is the user's own."""
    try:
        from engine.rewards import BUILTIN
    except ImportError:  # pragma: no cover - the engine's rewards are part of the package
        BUILTIN = {}
    spec = BUILTIN.get(name)
    text = getattr(spec, "help", None) if spec is not None else None
    return str(text) if text else "a reward from your reward file"


def reward_names(view: RunView | None) -> list[str]:
    """The reward functions whose means the run logs, in the order the run logged them."""
    if view is None:
        return []
    names = []
    for key in view.series:
        if key.startswith(REWARD_PREFIX) and key.endswith(REWARD_SUFFIX):
            name = key[len(REWARD_PREFIX):-len(REWARD_SUFFIX)]
            if name and name not in names:
                names.append(name)
    return names


def reward_figure(name: str) -> Figure:
    return Figure(name, name[:8], f"{REWARD_PREFIX}{name}{REWARD_SUFFIX}", reward_help(name))


def one_line(text: str) -> str:
    """An answer on one line: newlines as ⏎, runs of spaces as one."""
    return " ".join(str(text).replace("\r", "").replace("\n", " ⏎ ").split())


def samples_of(view: RunView | None) -> list[dict]:
    """The latest sampled answers the run recorded (dicts: prompt, completion, scores, reward, step)."""
    items = getattr(view, "samples", None) if view is not None else None
    return [s for s in (items or ()) if isinstance(s, dict)]


def score_text(value) -> str:
    """A score in 5 cells at most: 1, 0.5, 0.25, -1."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{number:.2f}".rstrip("0").rstrip(".") if number == number else "nan"


class GrpoPanel(Widget):
    DEFAULT_CSS = """
    GrpoPanel { height: auto; padding: 0 1; display: none; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: RunView | None = None

    def show(self, view: RunView | None) -> None:
        """Draw ``view``; shown only while it is a GRPO run's."""
        before = self._shape()
        self.view = view
        self.display = view is not None and view.objective == OBJECTIVE
        if self.display:
            self.refresh(layout=self._shape() != before)

    def _shape(self) -> tuple:
        return len(self.figures()), len(self.samples()), tuple(bool(s.get("prompt")) for s in self.samples())

    # --- what to draw -------------------------------------------------------------------------
    def figures(self) -> list[Figure]:
        return [TOTAL, FULL_MARKS, *(reward_figure(n) for n in reward_names(self.view)), LENGTH, KL]

    def series(self, figure: Figure) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
        view = self.view
        if view is None:
            return (), ()
        return view.points(figure.key), view.points("eval_" + figure.key)

    def latest(self, figure: Figure) -> tuple[float | None, float | None]:
        train, evals = self.series(figure)
        return (train[-1][1] if train else None), (evals[-1][1] if evals else None)

    def samples(self) -> list[dict]:
        return samples_of(self.view)[-SAMPLES_SHOWN:]

    # --- layout -------------------------------------------------------------------------------
    def sample_lines(self) -> int:
        samples = self.samples()
        if not samples:
            return 2  # the title and "none yet"
        prompts = sum(1 for i, s in enumerate(samples) if i == 0 or s.get("prompt") != samples[i - 1].get("prompt"))
        return 1 + prompts + len(samples)

    def table_lines(self) -> int:
        return 1 + len(self.figures()) + self.sample_lines()

    def get_content_height(self, container, viewport, width: int) -> int:
        return 3 if viewport.height < TALL_FROM else self.table_lines()

    def render(self) -> Text:
        width = self.content_size.width or 80
        if self.view is None:
            return Text()
        if self.content_size.height and self.content_size.height < self.table_lines():
            return self._dense(width)
        return self._table(width)

    def _colours(self) -> tuple[str, str]:
        return theme_colour(self.app, "primary") or "blue", theme_colour(self.app, "accent") or "yellow"

    # The table: label | train sparkline value | eval sparkline value | meaning, then recent answers.
    LABEL, VALUE, GAP, NOTE = 16, 6, 2, 44

    def _table(self, width: int) -> Text:
        train_colour, eval_colour = self._colours()
        notes = self.NOTE if width - self.LABEL - 2 * (self.VALUE + 1) - 2 * self.GAP - 16 >= self.NOTE else 0
        room = max(2, width - self.LABEL - 2 * (self.VALUE + 1) - 2 * self.GAP - notes)
        train_w = max(1, room * 3 // 5)
        eval_w = max(1, room - train_w)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{'GRPO rewards':<{self.LABEL}}", style="bold")
        text.append(f"{'train':>{self.VALUE}}{'':<{train_w + 1}}", style=train_colour)
        text.append(" " * self.GAP)
        text.append(f"{'eval':>{self.VALUE}}{'':<{eval_w + 1}}", style=eval_colour)
        rewards = set(reward_names(self.view))
        for figure in self.figures():
            train, evals = self.series(figure)
            last_train, last_eval = self.latest(figure)
            label = ("  " + figure.label) if figure.label in rewards else figure.label
            text.append("\n")
            text.append(f"{label[:self.LABEL - 1]:<{self.LABEL}}")
            text.append(f"{value_text(last_train, figure):>{self.VALUE}} ", style="bold")
            text.append(f"{sparkline(train, train_w, figure.percent):<{train_w}}", style=train_colour)
            text.append(" " * self.GAP)
            text.append(f"{value_text(last_eval, figure):>{self.VALUE}} ", style="bold")
            text.append(f"{sparkline(evals, eval_w, figure.percent):<{eval_w}}", style=eval_colour)
            if notes:
                text.append(" " * self.GAP)
                text.append(figure.means[:notes], style="dim")
        self._samples_table(text, width)
        return text

    def _samples_table(self, text: Text, width: int) -> None:
        samples = self.samples()
        names = reward_names(self.view)
        step = samples[-1].get("step") if samples else None
        text.append("\n")
        title = "What it generates now" + (f" (step {step})" if step is not None else "")
        text.append(title, style="bold")
        if not samples:
            text.append("\n")
            text.append("  no sampled answers yet: they come with the first logged step", style="dim")
            return
        text.append("   score = " + " + ".join(names) if names else "", style="dim")
        previous = None
        for item in samples:
            prompt = item.get("prompt")
            if prompt != previous:
                text.append("\n")
                text.append("  ▸ " + one_line(prompt or ""), style="dim italic")
                previous = prompt
            scores = item.get("scores") if isinstance(item.get("scores"), dict) else {}
            parts = " ".join(score_text(scores.get(n)) for n in names)
            text.append("\n")
            text.append(f"  {score_text(item.get('reward')):>5}", style="bold")
            text.append(f" {('(' + parts + ')') if parts else '':<{2 + 5 * len(names)}} ", style="dim")
            text.append(one_line(item.get("completion") or "") or "(empty answer)")

    # The dense form: total and full marks; each reward's mean; length, KL and the newest answer.
    def _dense(self, width: int) -> Text:
        train_colour, eval_colour = self._colours()
        text = Text(no_wrap=True, overflow="ellipsis")

        def figure_cell(figure: Figure, spark: int, with_eval: bool) -> None:
            train, _ = self.series(figure)
            last_train, last_eval = self.latest(figure)
            text.append(f"{figure.short} ")
            text.append(value_text(last_train, figure), style="bold")
            if spark:
                text.append(" " + sparkline(train, spark, figure.percent), style=train_colour)
            if with_eval and last_eval is not None:
                text.append(" eval ", style=eval_colour)
                text.append(value_text(last_eval, figure), style="bold")

        spark = max(0, min(16, (width - 4 - 2 * 28) // 2))
        text.append("GRPO ", style="bold")
        figure_cell(TOTAL, spark, True)
        text.append("   ")
        figure_cell(FULL_MARKS, spark, True)
        text.append("\n")
        names = reward_names(self.view)
        if names:
            budget = (width - 5) // len(names) - 2
            text.append("     ")
            for i, name in enumerate(names):
                if i:
                    text.append("  ")
                figure = reward_figure(name)
                figure = Figure(name, name, figure.key, figure.means)
                figure_cell(figure, max(0, min(10, budget - len(name) - 8)), False)
        else:
            text.append("     no reward logged yet", style="dim")
        text.append("\n")
        text.append(f"     {LENGTH.short} ")
        text.append(value_text(self.latest(LENGTH)[0], LENGTH), style="bold")
        text.append(f"  {KL.short} ")
        text.append(value_text(self.latest(KL)[0], KL), style="bold")
        samples = self.samples()
        if samples:
            newest = samples[-1]
            text.append("  now ", style="dim")
            text.append(score_text(newest.get("reward")), style="bold")
            text.append(" " + (one_line(newest.get("completion") or "") or "(empty answer)"))
        else:
            text.append("  no sampled answers yet", style="dim")
        lines = text.split("\n")
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        return Text("\n", no_wrap=True, overflow="ellipsis").join(lines)
