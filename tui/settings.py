"""Small user settings (the theme) in settings.json under the user config dir."""

from __future__ import annotations

import json

from engine.paths import config_dir
from engine.runs import write_json_atomic


def load() -> dict:
    try:
        return json.loads((config_dir() / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def save(**changes) -> None:
    settings = load()
    settings.update(changes)
    write_json_atomic(config_dir() / "settings.json", settings)
