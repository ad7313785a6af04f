"""GRPO on the demo, end to end on this machine: train engine/builtin/configs/demo-grpo.yaml (json_valid +
json_keys rewards, the demo-prompts data: the demo's tickets, each after one worked example, no ideal answers) through the real detached worker,
then score base vs tuned on held-out prompts with `tunedeck eval`'s GRPO evaluation (engine.evaluate
.evaluate_rewards: greedy answers, the run's own rewards).

Prints: the reward over training steps, the share of valid JSON answers base vs tuned, the held-out
reward base vs tuned (each reward's mean, the total, full marks), the mean step time and the peak
memory the worker recorded.

    .venv/bin/python bench/bench_grpo_demo.py [--steps N] [--eval 30]
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the config's max_steps)")
    ap.add_argument("--eval", type=int, default=30, help="held-out prompts to score (the demo's validation split)")
    ap.add_argument("--learning-rate", type=float, default=None)
    ap.add_argument("--sft-steps", type=int, default=0,
                    help="first train SFT this many steps and start GRPO from its adapter (init_from); not needed on "
                         "demo-prompts, whose worked example makes the base model write JSON about half the time")
    args = ap.parse_args()
    os.environ.setdefault("TUNEDECK_HOME", tempfile.mkdtemp(prefix="tunedeck-grpo-bench-"))

    from engine.config import RunConfig
    from engine.eval_scores import format_table
    from engine.evaluate import evaluate_run
    from engine.launch import start_run
    from engine.rewards import rewards_text
    from engine.run_state import RunHistory
    from engine.runs import FINAL

    cfg = RunConfig.load(ROOT / "engine" / "builtin" / "configs" / "demo-grpo.yaml")
    cfg = cfg.override(max_steps=args.steps, learning_rate=args.learning_rate)
    args.steps = cfg.max_steps
    if args.sft_steps:
        sft = start_run(RunConfig.from_dict({"model": "demo", "data": "demo", "max_steps": args.sft_steps,
                                             "eval_steps": 0, "save_steps": args.sft_steps}))
        print(f"SFT run {sft.id}: {args.sft_steps} steps first…", flush=True)
        while sft.info().state not in FINAL:
            time.sleep(2)
        assert sft.info().state == "completed", sft.info().message
        cfg = cfg.override(init_from=sft.id)
    t0 = time.time()
    run = start_run(cfg)
    print(f"run {run.id}: GRPO {cfg.method}, {args.steps} steps, batch {cfg.batch_size} answers "
          f"({cfg.num_generations} per prompt), up to {cfg.max_completion_length} tokens, lr {cfg.learning_rate:g}",
          flush=True)
    seen = 0
    while True:
        info = run.info()
        events = run.events()
        for e in events[seen:]:
            if e.get("type") == "log":
                print(f"  step {e['step']:3d}  reward {e.get('reward', 0):.3f}  full marks {e.get('full_marks', 0):.0%}  "
                      f"json_valid {e.get('rewards/json_valid/mean', 0):.2f}  length "
                      f"{e.get('completions/mean_length', 0):.0f}", flush=True)
        seen = len(events)
        if info.state in FINAL:
            break
        time.sleep(2)
    wall = time.time() - t0
    if info.state != "completed":
        print(f"run ended {info.state}: {info.message}")
        print("\n".join(run.log_tail(30)))
        return 1
    history = RunHistory().extend(run.events())
    status = run.read_status()
    logs = [e for e in run.events() if e.get("type") == "log"]
    first, last = logs[: max(1, len(logs) // 5)], logs[-max(1, len(logs) // 5):]
    avg = lambda rows, key: sum(r.get(key) or 0 for r in rows) / len(rows)  # noqa: E731

    print(f"\nevaluating base vs tuned on {args.eval} held-out prompts…", flush=True)
    t1 = time.time()
    result = evaluate_run(run.id, limit=args.eval, probe=False, samples=3)
    eval_seconds = time.time() - t1
    print(format_table(result))
    rows = {r["condition"]: r for r in result["rows"]}
    base, tuned = rows["base"], rows["fine-tuned"]
    peak = status.get("peak_memory")
    print("\n=== GRPO demo figures ===")
    print(f"training reward (mean of first/last fifth of steps): {avg(first, 'reward'):.3f} -> {avg(last, 'reward'):.3f}")
    print(f"valid JSON answers on held-out prompts: base {base['rewards']['json_valid']:.0%} -> tuned "
          f"{tuned['rewards']['json_valid']:.0%} ({result['scored']} prompts, greedy)")
    top = sum(r["weight"] for r in cfg.rewards)
    print(f"held-out reward ({rewards_text(cfg.rewards)}, max {top:g}): "
          f"base {base['reward']:.3f} -> tuned {tuned['reward']:.3f}; "
          f"full marks {base['full_marks']:.0%} -> {tuned['full_marks']:.0%}")
    print(f"step time: {history.step_seconds or float('nan'):.1f} s (mean over the run, generation included); "
          f"training wall time {wall:.0f} s for {args.steps} steps; evaluation {eval_seconds:.0f} s")
    print(f"peak memory (worker, {status.get('peak_memory_kind')}): {peak / 2**20:.0f} MiB" if peak else "peak memory: ?")
    print(f"device: {history.device}; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
