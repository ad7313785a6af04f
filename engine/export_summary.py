"""The lines shown after a GGUF export, by the CLI and the Runs screen's export dialog (no ML import)."""

from __future__ import annotations


def gguf_summary(g: dict) -> list[str]:
    t = g.get("seconds") or {}
    took = (f" in {t['total']:.0f} s (merge {t.get('merge', 0):.0f} s, conversion {t.get('convert', 0):.0f} s"
            + (f", check {t['check']:.0f} s" if "check" in t else "") + ")") if "total" in t else ""
    lines = [f"Wrote {g['gguf']} ({g['bytes'] / 1e6:.1f} MB, {g['quant']}) and {g['modelfile']}{took}."]
    if not (g.get("modelfile_info") or {}).get("template"):
        lines.append((g.get("modelfile_info") or {}).get("note") or "The Modelfile has no TEMPLATE.")
    check = g.get("check")
    if check:
        t, gr = check["template"], check["greedy"]
        lines.append(("✓ " if t["ok"] else "✗ ") + t["verdict"])
        lines.append(("✓ " if gr["ok"] else "✗ ") + gr["verdict"])
    lines.append(f"Import it into Ollama with: {g['ollama']}")
    return lines
