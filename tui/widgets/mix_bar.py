"""The sources of a data mix (a run's ``data:`` list), one line: each source's name and its share of
the mix (with what the user asked: weight or fraction), the one shown below highlighted. A click on a
source posts ``MixBar.Chosen``; the screen also binds keys to step through them."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widgets import Static


def short_name(ref: str) -> str:
    return Path(ref).name or ref if ("/" in ref or Path(ref).is_absolute()) else ref


def asked(entry: dict) -> str:
    if entry.get("weight") is not None:
        return f"weight {entry['weight']:g}"
    if entry.get("fraction") is not None:
        return f"fraction {entry['fraction']:g}"
    return ""


class MixBar(Static):
    DEFAULT_CSS = """
    MixBar { height: auto; max-height: 3; margin: 0 1; color: $text-muted; }
    MixBar.-hidden { display: none; }
    MixBar > .mix-bar--current { color: $text; background: $primary-muted; text-style: bold; }
    MixBar > .mix-bar--source { color: $text; }
    MixBar > .mix-bar--share { color: $accent; }
    MixBar > .mix-bar--error { color: $error; }
    """
    COMPONENT_CLASSES = {"mix-bar--current", "mix-bar--source", "mix-bar--share", "mix-bar--error"}

    class Chosen(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, **kwargs) -> None:
        super().__init__("", classes="-hidden", **kwargs)
        self.entries: list[dict] = []
        self.current = 0
        self.note: str | None = None
        self._spans: list[tuple[int, int, int]] = []  # (start, end, source index) on the first line

    def show_mix(self, entries: list[dict], current: int, note: str | None = None) -> None:
        """``entries``: per source {ref, weight, fraction, taken?, examples?, share?, refused?}."""
        self.entries, self.current, self.note = list(entries), current, note
        self.set_class(len(self.entries) < 2, "-hidden")
        self.update(self.build())

    def build(self) -> Text:
        style = self.get_component_rich_style
        text = Text()
        text.append(f"mix of {len(self.entries)}: ")
        self._spans = []
        for k, entry in enumerate(self.entries):
            if k:
                text.append(" · ")
            start = len(text)
            name_style = style("mix-bar--current") if k == self.current else style("mix-bar--source")
            text.append(f"{k + 1} {short_name(entry['ref'])}", name_style)
            if entry.get("refused"):
                text.append(f" ✗ {entry['refused']}", style("mix-bar--error"))
            elif entry.get("share") is not None:
                text.append(f" {entry['share']:.0%}", style("mix-bar--share"))
                text.append(f" ({entry['taken']:,} of {entry['examples']:,}"
                            + (f", {asked(entry)}" if asked(entry) else "") + ")")
            elif asked(entry):
                text.append(f" {asked(entry)}")
            self._spans.append((start, len(text), k))
        text.append("   [ ] source", "dim")
        if self.note:
            text.append(f"\n{self.note}", style("mix-bar--error"))
        return text

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y != 0:
            return
        for start, end, k in self._spans:
            if start <= offset.x < end:
                self.post_message(self.Chosen(k))
                return
