"""Chat budgets on the demo model, through the real chat process and pipe (engine.chat_client):

  * load base + adapter from the cache: budget < 5 s (the `load` request, warm-up included, less
    the one-off import of torch/transformers/peft, which is shown apart), plus the whole cold start
    (spawn python, imports, load) and an adapter swap (another checkpoint);
  * first token once loaded: budget < 1 s (request written -> first token event read);
  * tokens/s: fine-tuned alone, and compare (base and fine-tuned in one batch).

    .venv/bin/python bench/bench_chat.py [--run RUN] [--prompts 5] [--tokens 64]

Without --run, a run folder is made in a temporary TUNEDECK_HOME holding a LoRA adapter (r=16, all
linear layers, like the default config) with random non-zero weights: the cost of an adapter does
not depend on its values. Figures are wall-clock on this machine; the load average is printed
because other processes on a shared machine change them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_adapter_run() -> str:
    """A run folder with a random LoRA adapter for the demo model (in a temporary run store)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from engine import models
    from engine.data.encode import ensure_chat_template
    from engine.runs import create_run

    os.environ["TUNEDECK_HOME"] = tempfile.mkdtemp(prefix="tunedeck-bench-chat-")
    model, tokenizer = models.load_model("demo")
    ensure_chat_template(tokenizer)
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                            init_lora_weights=False, task_type="CAUSAL_LM"))
    run = create_run("model: demo\ndata: demo\nmethod: lora\n", model="demo", method="lora")
    for target in (run.adapter_dir, run.checkpoints_dir / "checkpoint-10"):
        peft.save_pretrained(target)
        tokenizer.save_pretrained(target)
    (run.checkpoints_dir / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 10}')
    run.write_status(state="completed", step=10, max_steps=10)
    return run.id


def prompts(n: int) -> list[list[dict]]:
    from engine.demo import validation_file

    rows = [json.loads(line) for line in validation_file().read_text().splitlines() if line.strip()]
    return [row["messages"][:-1] for row in rows[:n]]


def timed_generate(client, messages, mode: str, tokens: int) -> dict:
    sent = time.perf_counter()
    first = None
    for event in client.generate(messages, mode=mode, max_new_tokens=tokens, min_new_tokens=tokens, timeout=300):
        if event["type"] == "token" and first is None:
            first = time.perf_counter() - sent
        if event["type"] == "error":
            raise SystemExit(f"generation failed: {event['message']}")
        if event["type"] == "done":
            total = time.perf_counter() - sent
            return {"first": first, "total": total, "done": event}
    raise SystemExit("no done event")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="a run with an adapter (default: make one)")
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per answer (fixed length)")
    args = parser.parse_args()

    from engine import models
    from engine.chat_client import ChatClient

    models.materialize("demo")  # the cache exists before anything is timed
    run = args.run or make_adapter_run()
    print(f"demo model {models.DEMO_NAME}, run {run}; cpu cores {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f} at start")

    client = ChatClient()
    spawned = time.perf_counter()
    client.start()
    client.wait_ready(120)
    ready = time.perf_counter() - spawned
    t = time.perf_counter()
    events = list(client.load(run=run, timeout=300))
    load_wall = time.perf_counter() - t
    loaded = events[-1]
    if loaded["type"] != "loaded":
        raise SystemExit(f"load failed: {loaded.get('message')}")
    cold = time.perf_counter() - spawned
    from engine.runs import get_run

    checkpoint = get_run(run).checkpoints()[0][0]
    t = time.perf_counter()
    swap = list(client.load(run=run, checkpoint=checkpoint, timeout=300))[-1]
    swap_wall = time.perf_counter() - t
    assert swap["type"] == "loaded", swap
    list(client.load(run=run, timeout=300))

    print(f"\nload (device {loaded['device']}, template: {loaded['template']})")
    print(f"  process start -> ready (python + imports) {ready:6.2f} s")
    timings = loaded.get("timings", {})
    weights = load_wall - timings.get("imports", 0.0)
    print(f"  load request -> loaded                   {load_wall:6.2f} s   of which: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    print(f"  load base + adapter from cache          {weights:6.2f} s   budget < 5 s  "
          f"{'OK' if weights < 5 else 'OVER'}  (the above less the first import of torch/transformers/peft;"
          " warm-up included)")
    print(f"  cold start total (spawn -> loaded)       {cold:6.2f} s")
    print(f"  switch to another checkpoint (no reload) {swap_wall:6.2f} s")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import report

    report("chat: load base + adapter from cache", f"{weights:.1f} s", "< 5 s",
           "load request -> loaded, less the one-off import of torch/transformers/peft")

    ps = prompts(args.prompts)
    for mode in ("tuned", "compare", "base"):
        runs = [timed_generate(client, p, mode, args.tokens) for p in ps]
        firsts = sorted(r["first"] for r in runs)
        p90 = firsts[min(len(firsts) - 1, int(round(0.9 * (len(firsts) - 1))))]
        per_side = statistics.median(
            r["done"]["sides"]["tuned" if mode != "base" else "base"]["tokens_per_second"] for r in runs)
        total = statistics.median(r["done"]["tokens"] / r["total"] for r in runs)
        budget = "OK" if statistics.median(firsts) < 1 else "OVER"
        print(f"\n{mode} ({len(ps)} prompts x {args.tokens} tokens)")
        print(f"  first token: median {statistics.median(firsts) * 1000:5.0f} ms, p90 {p90 * 1000:5.0f} ms, "
              f"max {firsts[-1] * 1000:5.0f} ms   budget < 1 s  {budget}")
        print(f"  tokens/s per answer {per_side:6.1f}   all answers together {total:6.1f}")
        report(f"chat: first token / tokens per s ({mode})",
               f"{statistics.median(firsts) * 1000:.0f} ms / {per_side:.1f}", "first token < 1 s",
               f"median of {len(ps)} prompts x {args.tokens} tokens, demo model + adapter, CPU")
    client.close()
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
