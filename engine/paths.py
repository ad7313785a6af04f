"""Where Tunedeck keeps things: runs under $TUNEDECK_HOME (or the user data dir), caches and settings."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "tunedeck"


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def home() -> Path:
    env = os.environ.get("TUNEDECK_HOME")
    return _private_dir(Path(env).expanduser() if env else Path(platformdirs.user_data_dir(APP)))


def runs_dir() -> Path:
    return _private_dir(home() / "runs")


def cache_dir() -> Path:
    env = os.environ.get("TUNEDECK_CACHE")
    return _private_dir(Path(env).expanduser() if env else Path(platformdirs.user_cache_dir(APP)))


def config_dir() -> Path:
    env = os.environ.get("TUNEDECK_CONFIG")
    return _private_dir(Path(env).expanduser() if env else Path(platformdirs.user_config_dir(APP)))


def builtin_dir() -> Path:
    return Path(__file__).parent / "builtin"
