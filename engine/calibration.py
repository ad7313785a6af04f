"""Estimates that learn from this machine: every run records its memory estimate and the peak it
really reached; later estimates for the same device kind, model family and method are scaled by
what was measured here (the median ratio of the last runs). No ML import: the TUI uses it.

    calibration.json (in $TUNEDECK_HOME)   {"cpu|llama|lora": [1.04, 0.98, ...], ...}
"""

from __future__ import annotations

import json
import statistics
import threading

from .paths import home
from .runs import write_json_atomic

KEPT = 10  # the last runs of each kind that count
_lock = threading.Lock()


def key(device: str, model_type: str | None, method: str) -> str:
    return f"{device}|{model_type or '?'}|{method}"


def _path():
    return home() / "calibration.json"


def _load() -> dict:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(device: str, model_type: str | None, method: str, estimated: int, measured: int) -> None:
    """Remember how a run's measured peak compared with its estimate."""
    if not estimated or not measured or estimated <= 0 or measured <= 0:
        return
    with _lock:
        data = _load()
        ratios = [r for r in data.get(key(device, model_type, method), []) if isinstance(r, (int, float))]
        data[key(device, model_type, method)] = (ratios + [round(measured / estimated, 4)])[-KEPT:]
        write_json_atomic(_path(), data)


def factor(device: str, model_type: str | None, method: str) -> tuple[float, int] | None:
    """(measured / estimated, how many runs) for this kind of run here, or None before the first."""
    ratios = [r for r in _load().get(key(device, model_type, method), []) if isinstance(r, (int, float)) and r > 0]
    if not ratios:
        return None
    return statistics.median(ratios), len(ratios)


def calibrated(total: int, device: str, model_type: str | None, method: str) -> tuple[int, str]:
    """The estimate scaled by what runs here measured, and a few words saying so ("" when none did)."""
    found = factor(device, model_type, method)
    if found is None:
        return total, ""
    ratio, runs = found
    return int(total * ratio), f"calibrated x{ratio:.2f} from {runs} run{'s' if runs > 1 else ''} measured here"
