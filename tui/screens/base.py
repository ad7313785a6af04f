"""A screen for one area of the app: nav bar on top, footer with bindings below."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from ..widgets.nav_bar import NavBar


class AreaScreen(Screen):
    AREA = "home"

    def compose(self) -> ComposeResult:
        yield NavBar(self.AREA)
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def project(self):
        return self.app.project
