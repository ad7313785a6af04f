"""What a few minutes of training on the demo does, on this CPU: a short LoRA SFT run, then on held-back
validation prompts (never trained on) base and fine-tuned answer side by side through the chat process
(compare mode, greedy) and the answers in the trained format (one JSON object with the six keys) are
counted. Moved here from the test suite (it takes ~5 minutes on 2 cores); the e2e test keeps the
same path as a person walks it.

    python bench/bench_demo_quality.py [--steps 10] [--prompts 12]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

KEYS = {"category", "priority", "product", "order_id", "sentiment", "needs_human"}


def follows_format(answer: str) -> bool:
    from engine.evaluate import parse_strict

    value = parse_strict(answer)
    return isinstance(value, dict) and set(value) == KEYS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=12)
    args = parser.parse_args()
    from _report import report

    from engine.chat_client import ChatClient
    from engine.config import RunConfig
    from engine.demo import validation_file
    from engine.launch import start_run
    from engine.runs import ALIVE

    started = time.monotonic()
    run = start_run(RunConfig.from_dict({"model": "demo", "data": "demo", "method": "lora", "max_steps": args.steps,
                                         "learning_rate": 1e-3, "batch_size": 8, "max_length": 256,
                                         "save_steps": args.steps, "eval_steps": 0}))
    while run.info().state in ALIVE + ("created",):
        time.sleep(2)
    if run.info().state != "completed":
        print(f"the run did not complete: {run.info().message}", file=sys.stderr)
        return 1
    trained = time.monotonic() - started
    rows = [json.loads(line) for line in validation_file().read_text().splitlines() if line.strip()]
    prompts = [row["messages"][:-1] for row in rows[:args.prompts]]
    client = ChatClient()
    try:
        loaded = list(client.load(run=run.id, timeout=300))[-1]
        if loaded["type"] != "loaded":
            print(f"chat could not load the run: {loaded}", file=sys.stderr)
            return 1
        counts = {"base": 0, "tuned": 0, "tuned_eos": 0}
        for messages in prompts:
            done = list(client.generate(messages, mode="compare", max_new_tokens=80, timeout=300))[-1]
            for side in ("base", "tuned"):
                counts[side] += follows_format(done["sides"][side]["text"])
            counts["tuned_eos"] += done["sides"]["tuned"]["stop"] == "eos"
    finally:
        client.close()
    n = len(prompts)
    report("demo LoRA: answers in the trained format, base → fine-tuned",
           f"{counts['base']}/{n} → {counts['tuned']}/{n}", "fine-tuned > base, ≥ half",
           f"{args.steps} steps (trained in {trained:.0f} s), {n} held-back prompts, greedy")
    report("demo LoRA: fine-tuned ends its turn itself", f"{counts['tuned_eos']}/{n}", "≥ half")
    return 0 if counts["tuned"] > counts["base"] and counts["tuned"] >= n // 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
