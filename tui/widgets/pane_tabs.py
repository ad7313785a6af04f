"""One line above the panes of a screen: which pane is shown, the keys to switch, and a note on the
right (the Train screen: the run the monitor follows). A click on a tab posts ``PaneTabs.Chosen``."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static


class PaneTabs(Horizontal):
    DEFAULT_CSS = """
    PaneTabs { height: 1; background: $surface; }
    PaneTabs > Static { width: auto; padding: 0 1; color: $text-muted; }
    PaneTabs > Static.-current { color: $text; background: $primary-muted; text-style: bold; }
    PaneTabs > #tab-run { width: 1fr; text-align: right; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    current: reactive[str] = reactive("")

    class Chosen(Message):
        def __init__(self, pane: str) -> None:
            super().__init__()
            self.pane = pane

    def __init__(self, tabs: list[tuple[str, str, str]], **kwargs) -> None:
        """``tabs``: (pane, key, label) in order."""
        super().__init__(**kwargs)
        self.tabs = tabs

    def compose(self) -> ComposeResult:
        for pane, key, label in self.tabs:
            yield Static(f"[b]{key}[/b] {label}", id=f"tab-{pane}")
        yield Static(id="tab-run")

    def watch_current(self, pane: str) -> None:
        for name, _, _ in self.tabs:
            self.query_one(f"#tab-{name}").set_class(name == pane, "-current")

    def note(self, content) -> None:
        self.query_one("#tab-run", Static).update(content)

    def on_click(self, event) -> None:
        widget = event.widget
        names = [name for name, _, _ in self.tabs]
        if widget is not None and widget.id and widget.id.removeprefix("tab-") in names:
            self.post_message(self.Chosen(widget.id.removeprefix("tab-")))
