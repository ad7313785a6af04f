"""GGUF export of a demo run: time and size for each quantisation, and the export's own proof.

A demo LoRA run (a random adapter on SmolLM2-135M, as bench_chat.py makes it; or --run RUN) is
exported with `engine.gguf_export.export_gguf` to f16 and q8_0, each into its own temporary folder:
merge, conversion (llama.cpp's packaged converter), the Modelfile, the template parity check (training
vs the GGUF's embedded template vs the Modelfile's TEMPLATE, token by token) and the greedy answer of
the GGUF loaded back with transformers against the merged model's. The check is part of every export
from the app; it is timed apart because it costs more than the conversion (transformers rebuilding a
49k-token vocabulary from the GGUF).

    .venv/bin/python bench/bench_export_gguf.py [--quants f16,q8_0] [--run RUN]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _report import report  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quants", default="f16,q8_0")
    parser.add_argument("--run", default=None, help="a finished run (default: a demo run with a random adapter)")
    args = parser.parse_args()
    from bench_chat import make_adapter_run

    from engine.gguf_export import export_gguf

    run = args.run or make_adapter_run()
    failed = False
    for quant in args.quants.split(","):
        out = Path(tempfile.mkdtemp(prefix=f"tunedeck-gguf-{quant}-")) / f"demo-{quant}.gguf"
        started = time.perf_counter()
        result = export_gguf(run, out, quant=quant, say=lambda m: print(f"  {m}", flush=True))
        wall = time.perf_counter() - started
        s, check = result["seconds"], result.get("check", {})
        template_ok = check.get("template", {}).get("ok")
        greedy_ok = check.get("greedy", {}).get("ok")
        failed |= not (template_ok and greedy_ok)
        report(f"gguf export ({quant}): file size", f"{result['bytes'] / 1e6:.1f} MB", "", "demo model, merged")
        report(f"gguf export ({quant}): time", f"{wall:.1f} s (merge {s['merge']} s, convert {s['convert']} s, "
               f"check {s.get('check', '-')} s)", "", "one process, CPU")
        for part in ("template", "greedy"):
            print(f"  {part}: {check.get(part, {}).get('verdict', '-')}")
        report(f"gguf export ({quant}): parity", f"templates {'same' if template_ok else 'DIFFER'}, greedy answer "
               f"{'same' if greedy_ok else 'DIFFERS'}", "both same", "export-check.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
