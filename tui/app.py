"""TunedeckApp: one mode per area (Home, Data, Method, Train, Chat, Runs), number keys to move.

The project (model, data, method, settings, the run in view) is one immutable value in the
``project`` reactive; screens replace it and watch it (tui/project.py, tui/screens/base.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from functools import partial

from textual.actions import parse
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import var
from textual.screen import Screen

from themes import DEFAULT_THEME, THEMES

from . import settings
from .project import Architectures, DataLengths, Project
from .screens.base import AreaScreen, ShowPane
from .screens.help import HelpScreen
from .widgets.nav_bar import AREAS, NavBar

# Each area's screen, imported when first shown: the first frame needs only Home's (the other
# screens' modules and widgets took about a third of the start-up time).
_AREA_SCREENS = {
    "home": "home:HomeScreen",
    "data": "data:DataScreen",
    "method": "method:MethodScreen",
    "train": "train:TrainScreen",
    "chat": "chat:ChatScreen",
    "runs": "runs:RunsScreen",
}


def area_screen(area: str) -> type[AreaScreen]:
    module, name = _AREA_SCREENS[area].split(":")
    return getattr(importlib.import_module(f"{__package__}.screens.{module}"), name)


def _new_area_screen(area: str) -> AreaScreen:
    return area_screen(area)()


class TunedeckApp(App):
    TITLE = "Tunedeck"
    CSS_PATH = "app.tcss"
    MODES = {area: partial(_new_area_screen, area) for area in _AREA_SCREENS}
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

    project: var[Project] = var(Project())

    def __init__(self, data: str = "demo", model: str = "demo", attach_run: str | None = None) -> None:
        super().__init__()
        self.set_reactive(TunedeckApp.project, Project(model=model, data=data, run_id=attach_run))
        self.architectures = Architectures()  # model shapes, fetched once per model (Method and Train)
        self.data_lengths = DataLengths()  # the longest rows of the data, measured once (estimates)
        self._attach_run = attach_run
        for theme in THEMES:
            self.register_theme(theme)
        saved = settings.load().get("theme")
        self.theme = saved if saved in self.available_themes else DEFAULT_THEME

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, lambda theme: settings.save(theme=theme.name))
        if self._attach_run:
            self.switch_mode("train")

    def open_area(self, area: str, pane: str | None = None) -> None:
        """Show an area; ``pane`` picks the pane to show in it (Train: "setup" or "monitor")."""
        self.switch_mode(area)
        if pane is not None:
            self.screen.post_message(ShowPane(pane))

    def on_nav_bar_selected(self, message: NavBar.Selected) -> None:
        self.switch_mode(message.area)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    # --- the command palette ---------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        current = screen.AREA if isinstance(screen, AreaScreen) else None
        if current is not None:
            yield from self._area_commands(current, screen)
        for area, key, label in AREAS:
            yield SystemCommand(f"Go to {label}", f"Open the {label} area (key {key})",
                                lambda area=area: self.switch_mode(area))
        for area, _, _ in AREAS:
            if area != current:
                yield from self._area_commands(area, None)
        for theme in THEMES:
            yield SystemCommand(f"Theme: {theme.name}", "Switch to this theme (remembered)",
                                lambda name=theme.name: setattr(self, "theme", name))
        yield SystemCommand("Help and glossary", "Every key, and the terms in plain words", self.action_help)

    def _area_commands(self, area: str, screen: Screen | None) -> Iterable[SystemCommand]:
        """Every action of an area: run on ``screen`` (the current one, when it allows it now), or,
        for another area, open that area to do it there."""
        label = next(label for a, _, label in AREAS if a == area)
        seen: set[str] = set()
        bindings = [b for cls in area_screen(area).__mro__ if cls.__module__.startswith("tui.")
                    for b in vars(cls).get("BINDINGS", [])]
        for binding in bindings:
            if not isinstance(binding, Binding) or not binding.description or binding.action in seen:
                continue
            seen.add(binding.action)
            key = binding.key_display or binding.key.split(",")[0]
            if screen is not None:
                _, name, parameters = parse(binding.action)
                if screen.check_action(name, parameters) is not True:
                    continue  # not possible right now (e.g. Stop on the setup pane)
                yield SystemCommand(f"{label}: {binding.description}", f"Key {key}",
                                    partial(screen.run_action, binding.action))
            else:
                yield SystemCommand(f"{label}: {binding.description}", f"Opens {label}, where key {key} does it",
                                    partial(self.switch_mode, area))
