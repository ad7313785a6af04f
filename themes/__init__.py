"""Tunedeck's themes, as Textual Theme objects registered by the app at start."""

from __future__ import annotations

from textual.theme import Theme

TUNEDECK_DARK = Theme(
    name="tunedeck-dark",
    primary="#3B82F6",
    secondary="#A78BFA",
    accent="#F59E0B",
    foreground="#E5E7EB",
    background="#0F1419",
    surface="#161D26",
    panel="#1E2733",
    success="#22C55E",
    warning="#EAB308",
    error="#EF4444",
    dark=True,
)

THEMES = [TUNEDECK_DARK]
DEFAULT_THEME = TUNEDECK_DARK.name
