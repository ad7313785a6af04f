"""A list of sentences with a mark before each and wrapped lines indented under the text."""

from __future__ import annotations

from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.widgets import Static


class Bullets(Vertical):
    DEFAULT_CSS = """
    Bullets { height: auto; }
    Bullets > Horizontal { height: auto; }
    Bullets .bullet-mark { width: 2; }
    Bullets .bullet-text { width: 1fr; height: auto; }
    """

    def __init__(self, mark: str = "•", **kwargs) -> None:
        super().__init__(**kwargs)
        self.mark = mark
        self.items: list[str] = []

    def set_items(self, items: list[str]) -> None:
        """Show ``items`` (plain text, not markup)."""
        if list(items) == self.items and len(self.children) == len(items):
            return
        self.items = list(items)
        self.remove_children()
        self.mount(*(Horizontal(Static(self.mark, classes="bullet-mark"), Static(escape(item), classes="bullet-text"))
                     for item in self.items))

    @property
    def text(self) -> str:
        return "\n".join(self.items)
