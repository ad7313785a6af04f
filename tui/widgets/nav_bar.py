"""The row of areas at the top of every screen; click or press the number to go there."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

AREAS = [
    ("home", "0", "Home"),
    ("data", "1", "Data"),
    ("method", "2", "Method"),
    ("train", "3", "Train"),
    ("chat", "4", "Chat"),
    ("runs", "5", "Runs"),
]


class NavItem(Static):
    DEFAULT_CSS = """
    NavItem { width: auto; padding: 0 1; color: $text-muted; }
    NavItem:hover { background: $boost; color: $text; }
    NavItem.-current { background: $primary; color: $text; text-style: bold; }
    """

    def __init__(self, area: str, key: str, label: str) -> None:
        super().__init__(f"[b]{key}[/b] {label}", id=f"nav-{area}")
        self.area = area

    def on_click(self) -> None:
        self.post_message(NavBar.Selected(self.area))


class NavBar(Horizontal):
    DEFAULT_CSS = """
    NavBar { height: 1; dock: top; background: $panel; }
    NavBar #nav-brand { width: auto; padding: 0 1; color: $accent; text-style: bold; }
    """

    current: reactive[str] = reactive("home")

    class Selected(Message):
        def __init__(self, area: str) -> None:
            super().__init__()
            self.area = area

    def __init__(self, current: str = "home") -> None:
        super().__init__()
        self.set_reactive(NavBar.current, current)

    def compose(self) -> ComposeResult:
        yield Static("◆ Tunedeck", id="nav-brand")
        for area, key, label in AREAS:
            item = NavItem(area, key, label)
            item.set_class(area == self.current, "-current")
            yield item

    def watch_current(self, current: str) -> None:
        for item in self.query(NavItem):
            item.set_class(item.area == current, "-current")
