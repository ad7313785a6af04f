"""Argument types shared by the sub-commands: argparse turns a bad value into one line and exit 2."""

from __future__ import annotations

import argparse
import math


def number(text: str) -> float:
    """A finite number: ``nan`` and ``inf`` parse as floats but mean nothing as a setting."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


number.__name__ = "number"  # argparse names the type in its message
