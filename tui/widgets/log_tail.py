"""The latest lines of the worker's log (worker.log), newest at the bottom, cut to the width."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget


class LogTail(Widget):
    DEFAULT_CSS = """
    LogTail {
        height: 1fr; min-height: 3;
        border: round $primary-muted; border-title-color: $text-muted; padding: 0 1;
        color: $text-muted;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "worker.log"
        self.lines: tuple[str, ...] = ()

    def show(self, lines: Sequence[str]) -> None:
        lines = tuple(lines)
        if lines != self.lines:
            self.lines = lines
            self.refresh()

    def render(self) -> Text:
        height = max(1, self.content_size.height)
        width = max(1, self.content_size.width)
        shown = self.lines[-height:] if self.lines else ("(nothing logged yet)",)
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, line in enumerate(shown):
            if i:
                text.append("\n")
            line = line.expandtabs(4)
            text.append(line if len(line) <= width else line[: width - 1] + "…")
        return text
