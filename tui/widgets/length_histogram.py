"""Token lengths of the examples as bars, with the max-length cut drawn as a line: what is to its
right is cut off in training. Fed the histogram of ``tunedeck data stats`` (linear bins)."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

BLOCKS = " ▁▂▃▄▅▆▇█"


class LengthHistogram(Widget):
    DEFAULT_CSS = """
    LengthHistogram { height: 9; padding: 0 1; }
    LengthHistogram > .length-histogram--bar { color: $primary; }
    LengthHistogram > .length-histogram--over { color: $error; }
    LengthHistogram > .length-histogram--cut { color: $error; text-style: bold; }
    LengthHistogram > .length-histogram--axis { color: $text-muted; }
    """
    COMPONENT_CLASSES = {
        "length-histogram--bar", "length-histogram--over", "length-histogram--cut", "length-histogram--axis",
    }

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.edges: list[int] = []
        self.counts: list[int] = []
        self.max_length = 0

    def set_data(self, histogram: dict | None, max_length: int) -> None:
        self.edges = list(histogram["edges"]) if histogram else []
        self.counts = list(histogram["counts"]) if histogram else []
        self.max_length = max_length
        self.refresh()

    def columns(self, width: int) -> list[int]:
        """Counts re-binned to ``width`` columns over the same token range."""
        bins = len(self.counts)
        if not bins or width < 1:
            return []
        cols = [0] * width
        if width >= bins:
            for c in range(width):
                cols[c] = self.counts[c * bins // width]
        else:
            for b, n in enumerate(self.counts):
                cols[b * width // bins] += n
        return cols

    def cut_column(self, width: int) -> int | None:
        if not self.edges or not self.max_length:
            return None
        top = self.edges[-1]
        return min(width - 1, int(self.max_length / top * width)) if top else None

    def render(self) -> Text:
        width = self.content_region.width
        height = max(2, self.content_region.height - 1)
        style = self.get_component_rich_style
        axis = style("length-histogram--axis")
        if not self.counts or not sum(self.counts):
            return Text("No lengths yet.", style=axis)
        cols = self.columns(width)
        peak = max(cols) or 1
        cut = self.cut_column(width)
        bar, over, cut_style = style("length-histogram--bar"), style("length-histogram--over"), style("length-histogram--cut")
        text = Text()
        for row in range(height - 1, -1, -1):
            for c, n in enumerate(cols):
                eighths = round(n / peak * height * 8)
                level = max(0, min(8, eighths - row * 8))
                if n and row == 0 and level == 0:
                    level = 1  # a count is never invisible
                if c == cut and level < 8:
                    text.append("│", cut_style)
                else:
                    text.append(BLOCKS[level], over if cut is not None and c > cut else bar)
            text.append("\n")
        top = self.edges[-1]
        left, right = "0", f"{top} tokens"
        label = f"max {self.max_length}"
        line = [" "] * width
        for i, ch in enumerate(left):
            line[i] = ch
        for i, ch in enumerate(right):
            if width - len(right) + i >= 0:
                line[width - len(right) + i] = ch
        if cut is not None:
            start = max(len(left) + 1, min(cut - len(label) // 2, width - len(right) - len(label) - 1))
            if start + len(label) <= width - len(right) - 1:
                for i, ch in enumerate(label):
                    line[start + i] = ch
        text.append("".join(line), axis)
        return text
