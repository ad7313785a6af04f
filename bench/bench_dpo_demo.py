"""DPO on the demo, end to end on this machine: a few minutes of DPO (LoRA, from the base model) on the
built-in demo-preference pairs through the real detached worker, then `tunedeck eval`'s preference
evaluation on held-out pairs (engine.evaluate.evaluate_run).

Prints the held-out reward accuracy (how often the tuned model prefers the chosen answer of a pair it
never saw, relative to the base; chance is 50 %), how often base and tuned prefer the chosen answer, the
reward margin at the first and last step, the median step time, and the measured peak memory against
the estimate. Budgets: accuracy >= 65 %, peak / estimate within 0.8-1.25. Asserts nothing.

(This was a test until the suite grew past CI's 25 minutes: it took about 7 of them.)

    .venv/bin/python bench/bench_dpo_demo.py [--steps 8] [--eval 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--eval", type=int, default=30, help="held-out pairs to score")
    args = ap.parse_args()
    os.environ.setdefault("TUNEDECK_HOME", tempfile.mkdtemp(prefix="tunedeck-dpo-bench-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from _report import report

    from engine.config import RunConfig
    from engine.evaluate import evaluate_run
    from engine.launch import start_run
    from engine.runs import FINAL

    run = start_run(RunConfig.from_dict({
        "model": "demo", "data": "demo-preference", "objective": "dpo", "max_steps": args.steps, "batch_size": 4,
        "eval_steps": 0, "save_steps": args.steps, "max_length": 256, "logging_steps": 1}))
    print(f"run {run.id}: DPO (LoRA) on demo-preference, {args.steps} steps, batch 4", flush=True)
    while run.info().state not in FINAL:
        time.sleep(2)
    info = run.info()
    if info.state != "completed":
        print(f"the run ended {info.state}: {info.message}")
        print("\n".join(run.log_tail(30)))
        return 1
    logs = [e for e in run.events() if e["type"] == "log"]
    steps = sorted(b["time"] - a["time"] for a, b in zip(logs, logs[1:]))
    status = run.read_status()
    ratio = status["peak_memory"] / status["estimated_memory"]
    result = evaluate_run(run.id, limit=args.eval, samples=2, batch_size=8, max_new_tokens=64)
    base, tuned = result["rows"][0], result["rows"][1]

    report("demo DPO: held-out reward accuracy", f"{result['reward_accuracy']:.0%} on {result['scored']} pairs",
           ">= 65 % (chance 50 %)", f"{args.steps} DPO steps, LoRA, batch 4; base vs tuned on held-out pairs")
    report("demo DPO: prefers the chosen answer, base / tuned",
           f"{base['prefers_chosen']:.0%} / {tuned['prefers_chosen']:.0%}", "", "sequence log-probabilities")
    report("demo DPO: reward margin, first / last step",
           f"{logs[0]['rewards/margins']:.3f} / {logs[-1]['rewards/margins']:.3f}", "0 then > 0", "the run's log events")
    report("demo DPO: step time (median)", f"{steps[len(steps) // 2]:.1f} s" if steps else "?", "",
           f"load average {os.getloadavg()[0]:.1f}")
    report("demo DPO: peak memory / estimate",
           f"{status['peak_memory'] / 2**30:.2f} / {status['estimated_memory'] / 2**30:.2f} GiB ({ratio:.2f}x)",
           "0.8-1.25x", f"measured: {status.get('peak_memory_kind', '?')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
