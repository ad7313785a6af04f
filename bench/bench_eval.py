"""How long `tunedeck eval` takes, stage by stage, on a run: prints seconds per stage and answers/s.

    python bench/bench_eval.py RUN [--limit N] [--k K] [--batch-size B]

RUN is a run id (in $TUNEDECK_HOME), a run folder or `latest`. Nothing is asserted: these are figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    from engine.evaluate import evaluate_run

    started = time.time()
    result = evaluate_run(args.run, limit=args.limit, k=args.k, batch_size=args.batch_size, save=False)
    wall = time.time() - started
    n = result["scored"]
    print(f"run {result['run']}  examples {n}  k {args.k}  batch {args.batch_size}  "
          f"max_new_tokens {result['max_new_tokens']}  cpus {os.cpu_count()}  load {os.getloadavg()[0]:.1f}")
    for stage, seconds in result["timings"].items():
        rate = f"{n / seconds:6.2f} examples/s" if seconds and stage != "load" else ""
        print(f"  {stage:<22} {seconds:8.2f} s  {rate}")
    print(f"  {'total':<22} {wall:8.2f} s")
    print(json.dumps({"timings": result["timings"], "wall": round(wall, 2), "examples": n}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
