"""One figure per line for `make bench`'s table: ``report(name, value, budget, method)`` prints the
figure and, when run by bench/run_all.py (BENCH_REPORT set), appends it to that JSON-lines file."""

from __future__ import annotations

import json
import os


def report(name: str, value: str, budget: str = "", method: str = "") -> None:
    print(f"  {name}: {value}" + (f"   (budget {budget})" if budget else ""))
    path = os.environ.get("BENCH_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "value": value, "budget": budget, "method": method}) + "\n")
