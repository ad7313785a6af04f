"""A one-line bar: how much of a GPU (or of RAM) a training method needs, coloured by fit."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widget import Widget

from engine.estimate import gib

VERDICT_COLOUR = {"fits": "$success", "tight": "$warning", "no": "$error", "no-gpu": "$text-muted"}


class MemoryBar(Widget):
    """``need`` bytes against ``capacity`` bytes; the bar is full (and red) past the capacity.

    With no capacity (nothing to judge against) it shows only the figure.
    """

    DEFAULT_CSS = """
    MemoryBar { height: 1; width: 1fr; min-width: 12; }
    """

    need: reactive[int | None] = reactive(None)
    capacity: reactive[int | None] = reactive(None)
    verdict: reactive[str] = reactive("no-gpu")

    def __init__(self, need: int | None = None, capacity: int | None = None, verdict: str = "no-gpu", **kwargs):
        super().__init__(**kwargs)
        self.set_reactive(MemoryBar.need, need)
        self.set_reactive(MemoryBar.capacity, capacity)
        self.set_reactive(MemoryBar.verdict, verdict)

    def show(self, need: int | None, capacity: int | None, verdict: str) -> None:
        self.need, self.capacity, self.verdict = need, capacity, verdict

    def label(self) -> str:
        if self.need is None:
            return "—"
        if not self.capacity:
            return gib(self.need)
        return f"{gib(self.need, unit='')}/{gib(self.capacity)}"

    def render(self):
        from textual.content import Content

        label = self.label()
        width = self.size.width or 30
        if self.need is None or not self.capacity:
            return Content(label)
        bar = max(4, width - len(label) - 1)
        filled = min(bar, max(1 if self.need else 0, round(bar * self.need / self.capacity)))
        colour = VERDICT_COLOUR.get(self.verdict, "$text-muted")
        return Content.from_markup(
            f"[{colour}]{'█' * filled}[/][$text-muted 40%]{'░' * (bar - filled)}[/] $label", label=label
        )
