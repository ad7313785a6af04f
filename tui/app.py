"""TunedeckApp: one mode per area (Home, Data, Method, Train, Chat, Runs), number keys to move."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding

from themes import DEFAULT_THEME, THEMES

from .project import Project
from .screens.chat import ChatScreen
from .screens.data import DataScreen
from .screens.home import HomeScreen
from .screens.method import MethodScreen
from .screens.runs import RunsScreen
from .screens.train import TrainScreen
from .widgets.nav_bar import NavBar


class TunedeckApp(App):
    TITLE = "Tunedeck"
    CSS_PATH = "app.tcss"
    MODES = {
        "home": HomeScreen,
        "data": DataScreen,
        "method": MethodScreen,
        "train": TrainScreen,
        "chat": ChatScreen,
        "runs": RunsScreen,
    }
    DEFAULT_MODE = "home"
    BINDINGS = [
        Binding("0", "switch_mode('home')", "Home", id="go-home"),
        Binding("1", "switch_mode('data')", "Data", id="go-data"),
        Binding("2", "switch_mode('method')", "Method", id="go-method"),
        Binding("3", "switch_mode('train')", "Train", id="go-train"),
        Binding("4", "switch_mode('chat')", "Chat", id="go-chat"),
        Binding("5", "switch_mode('runs')", "Runs", id="go-runs"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, data: str = "demo", model: str = "demo", attach_run: str | None = None) -> None:
        super().__init__()
        self.project = Project(model=model, data=data, run_id=attach_run)
        self._attach_run = attach_run

    def on_mount(self) -> None:
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = DEFAULT_THEME
        if self._attach_run:
            self.switch_mode("train")

    def on_nav_bar_selected(self, message: NavBar.Selected) -> None:
        self.switch_mode(message.area)
