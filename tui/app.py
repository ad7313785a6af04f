"""TunedeckApp: one mode per area (Home, Data, Method, Train, Chat, Runs), number keys to move."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from themes import DEFAULT_THEME, THEMES

from . import settings
from .project import Project
from .screens.chat import ChatScreen
from .screens.data import DataScreen
from .screens.help import HelpScreen
from .screens.home import HomeScreen
from .screens.method import MethodScreen
from .screens.runs import RunsScreen
from .screens.train import TrainScreen
from .widgets.nav_bar import AREAS, NavBar


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
        Binding("0", "switch_mode('home')", "Home", show=False, id="go-home"),
        Binding("1", "switch_mode('data')", "Data", show=False, id="go-data"),
        Binding("2", "switch_mode('method')", "Method", show=False, id="go-method"),
        Binding("3", "switch_mode('train')", "Train", show=False, id="go-train"),
        Binding("4", "switch_mode('chat')", "Chat", show=False, id="go-chat"),
        Binding("5", "switch_mode('runs')", "Runs", show=False, id="go-runs"),
        Binding("question_mark,f1", "help", "Help", key_display="?", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, data: str = "demo", model: str = "demo", attach_run: str | None = None) -> None:
        super().__init__()
        self.project = Project(model=model, data=data, run_id=attach_run)
        self._attach_run = attach_run
        for theme in THEMES:
            self.register_theme(theme)
        saved = settings.load().get("theme")
        self.theme = saved if saved in self.available_themes else DEFAULT_THEME

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, lambda theme: settings.save(theme=theme.name))
        if self._attach_run:
            self.switch_mode("train")

    def on_nav_bar_selected(self, message: NavBar.Selected) -> None:
        self.switch_mode(message.area)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for area, key, label in AREAS:
            yield SystemCommand(f"Go to {label}", f"Open the {label} area (key {key})",
                                lambda area=area: self.switch_mode(area))
        for theme in THEMES:
            yield SystemCommand(f"Theme: {theme.name}", "Switch to this theme (remembered)",
                                lambda name=theme.name: setattr(self, "theme", name))
        yield SystemCommand("Help and glossary", "Every key, and the terms in plain words", self.action_help)
