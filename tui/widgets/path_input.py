"""A path input that completes file and folder names as you type (→ accepts the suggestion)."""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester
from textual.widgets import Input

DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".arrow")
MAX_ENTRIES = 2000


class PathSuggester(Suggester):
    """Suggests the first folder or data file whose name starts with what was typed."""

    def __init__(self, extra: tuple[str, ...] = ("demo",)) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.extra = extra

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        for word in self.extra:
            if word.startswith(value) and word != value:
                return word
        return complete_path(value)


def complete_path(value: str) -> str | None:
    expanded = os.path.expanduser(value)
    if value.endswith("/"):
        folder, prefix = Path(expanded), ""
    else:
        folder, prefix = Path(expanded).parent, Path(expanded).name
    try:
        entries = []
        with os.scandir(folder if str(folder) else ".") as it:
            for n, entry in enumerate(it):
                if n > MAX_ENTRIES:
                    break
                entries.append(entry)
    except OSError:
        return None
    matches = []
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or name == prefix or (name.startswith(".") and not prefix.startswith(".")):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if is_dir or name.lower().endswith(DATA_SUFFIXES):
            # data files first, then folders; alphabetical within each
            matches.append((0 if not is_dir else 1, name, is_dir))
    if not matches:
        return None
    _, name, is_dir = min(matches)
    return value[: len(value) - len(prefix)] + name + ("/" if is_dir else "")


class PathInput(Input):
    DEFAULT_CSS = """
    PathInput { width: 1fr; }
    """

    def __init__(self, value: str = "", **kwargs) -> None:
        super().__init__(value, suggester=PathSuggester(), **kwargs)
