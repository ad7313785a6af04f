"""Tunedeck's themes, as Textual Theme objects registered by the app at start.

All colours in the stylesheets come from these variables. The high-contrast theme avoids
red/green pairs (Okabe-Ito blue/orange/yellow), so it is safe for the common colour blindness.
"""

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

TUNEDECK_LIGHT = Theme(
    name="tunedeck-light",
    primary="#1D4ED8",
    secondary="#7C3AED",
    accent="#B45309",
    foreground="#1F2937",
    background="#F8FAFC",
    surface="#FFFFFF",
    panel="#E2E8F0",
    success="#15803D",
    warning="#A16207",
    error="#B91C1C",
    dark=False,
)

TUNEDECK_HIGH_CONTRAST = Theme(
    name="tunedeck-high-contrast",
    primary="#0072B2",  # Okabe-Ito blue
    secondary="#CC79A7",  # reddish purple
    accent="#F0E442",  # yellow
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#1A1A1A",
    success="#56B4E9",  # sky blue, not green
    warning="#F0E442",
    error="#E69F00",  # orange, not red
    dark=True,
)

THEMES = [TUNEDECK_DARK, TUNEDECK_LIGHT, TUNEDECK_HIGH_CONTRAST]
DEFAULT_THEME = TUNEDECK_DARK.name
