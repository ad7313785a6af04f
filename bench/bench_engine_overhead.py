"""Engine overhead: training throughput through `tunedeck train` vs the same TRL SFTTrainer script
written by hand (TRL's defaults: each batch padded to its longest row), same model, data and
settings, interleaved (A B, B A, ...) in one run. Budget on the demo data (nearly uniform lengths):
tunedeck / hand >= 0.97. With `--data varied` (lengths spread like real chat data, from a few dozen
to ~1,000 tokens) Tunedeck's default padding-free batching spends nothing on padding: budget >= 1.3.

Throughput, measured the same way for both: input tokens (TRL's `num_tokens`: every non-padding
token) between the first and the last logged step, divided by the wall time between those two logs;
and the same tokens divided by the training process's CPU time over that window (on a shared, busy
machine wall time swings with other people's jobs; CPU time much less, above all with --threads 1).
Step 1 (warm-up) is outside the window; so are loading, and saving at the end. The tunedeck side
includes everything the engine adds inside the loop: its callback, events.jsonl and status.json
writes, the signal handling, the detached process. (`--follow`'s viewer is not part of the engine:
the bench watches the events file from outside instead.) By default the hand script gets the one
environment setting the engine gives its worker (OMP_WAIT_POLICY=PASSIVE, see
engine.worker.quiet_cpu_threads), so the ratio measures overhead, not that setting;
`--hand-env default` measures it against a plain environment.

    .venv/bin/python bench/bench_engine_overhead.py [--model demo] [--steps 6] [--pairs 3]
    .venv/bin/python bench/bench_engine_overhead.py --model tiny --steps 30 --pairs 4   # quick
    .venv/bin/python bench/bench_engine_overhead.py --data varied --batch-size 4 --steps 4 --pairs 2
    ... --concurrent   # each pair's two runs at the same time: both meet the same load on a busy machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 0.97
VARIED_BUDGET = 1.3


def varied_data(path: Path, rows: int = 160, seed: int = 0) -> Path:
    """Chat rows whose token lengths spread like real instruction data: most short, a long tail to
    ~1,000 tokens (log-normal, median ~120 tokens). Written for the project, deterministic."""
    import json
    import random

    rng = random.Random(seed)
    words = ("the order arrived late and the box was damaged so I would like a refund or a replacement "
             "please check the tracking number and tell me what happens next with my account").split()
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(rows):
            n = max(8, min(900, int(rng.lognormvariate(4.6, 0.9))))  # words, about one token each
            ask, answer = max(4, n // 3), max(4, n - n // 3)
            text = lambda k: " ".join(rng.choice(words) for _ in range(k))  # noqa: E731
            f.write(json.dumps({"messages": [{"role": "user", "content": text(ask)},
                                             {"role": "assistant", "content": text(answer)}]}) + "\n")
    return path
HAND_LIKE_WORKER = True  # --hand-env default turns this off


# --- B: the hand-written script -----------------------------------------------------------------
def hand_child(model_dir: str, data_file: str, steps: int, batch_size: int, lr: float, max_length: int,
               out: str) -> None:
    """What a user would write with TRL directly: a messages dataset, LoRA through PEFT, SFTTrainer."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    dataset = load_dataset("json", data_files=data_file, split="train")
    rows: list[dict] = []

    class Timer(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                rows.append({"step": state.global_step, "time": time.time(), "num_tokens": logs.get("num_tokens"),
                             "loss": logs["loss"], "cpu": time.process_time()})

    args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="hand-sft-"), max_steps=steps, learning_rate=lr,
        per_device_train_batch_size=batch_size, gradient_accumulation_steps=1, max_length=max_length,
        logging_steps=1, logging_first_step=True, save_strategy="no", eval_strategy="no", seed=42, data_seed=42,
        bf16=False, fp16=False, use_cpu=True, activation_checkpointing=False, report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, assistant_only_loss=False, completion_only_loss=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[Timer()])
    trainer.train()
    Path(out).write_text(json.dumps(rows))


# --- A: tunedeck ----------------------------------------------------------------------------------
def _cpu(pid: int) -> float | None:
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except Exception:
        return None


def run_tunedeck(model: str, data: str, steps: int, batch_size: int, lr: float, max_length: int, home: Path,
                 env_extra: dict) -> list[dict]:
    env = dict(os.environ, TUNEDECK_HOME=str(home), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", **env_extra)
    cmd = [sys.executable, "-m", "engine", "train", "--model", model, "--data", data, "--max-steps", str(steps),
           "--batch-size", str(batch_size), "--learning-rate", str(lr), "--max-length", str(max_length),
           "--eval-steps", "0", "--save-steps", "100000", "--logging-steps", "1", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"tunedeck train failed: {out.stderr.strip()[-500:]}")
    # `tunedeck train` has returned and the detached worker trains. Watch its events file (a
    # separate process: this costs the worker nothing) and note the worker's CPU time as each step
    # is logged, to compare CPU seconds per token as well as wall time.
    run_dir = Path(json.loads(out.stdout.splitlines()[0])["run_dir"])
    events_path = run_dir / "events.jsonl"
    pid = None
    cpu_at: dict[int, float | None] = {}
    events: list[dict] = []
    end: list = []
    size, buf = 0, b""
    deadline = time.time() + 3600
    while time.time() < deadline and not end:
        time.sleep(0.02)
        try:
            now = os.stat(events_path).st_size  # a stat a tick: the watcher must not compete for the CPU
        except FileNotFoundError:
            continue
        if now == size:
            continue
        with open(events_path, "rb") as f:
            f.seek(size)
            buf += f.read(now - size)
        size = now
        *lines, buf = buf.split(b"\n")
        for line in lines:
            e = json.loads(line)
            events.append(e)
            if e.get("type") == "log":
                if pid is None:
                    pid = json.loads((run_dir / "status.json").read_text()).get("pid")
                cpu_at[e["step"]] = _cpu(pid) if pid else None
            elif e.get("type") == "end":
                end = [e]
    if not end or end[-1]["state"] != "completed":
        raise SystemExit(f"tunedeck run did not complete: {end}")
    return [{"step": e["step"], "time": e["time"], "num_tokens": e.get("num_tokens"), "loss": e["loss"],
             "cpu": cpu_at.get(e["step"])} for e in events if e.get("type") == "log"]


def run_hand(model_dir: str, data_file: str, steps: int, batch_size: int, lr: float, max_length: int,
             env_extra: dict) -> list[dict]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, __file__, "--hand-child", out, "--model-dir", model_dir, "--data-file",
           data_file, "--steps", str(steps), "--batch-size", str(batch_size), "--lr", str(lr),
           "--max-length", str(max_length)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", **env_extra)
    if HAND_LIKE_WORKER:  # the environment the engine gives its worker (engine.worker.quiet_cpu_threads)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"hand-written script failed:\n{proc.stderr[-2000:]}")
    rows = json.loads(Path(out).read_text())
    os.unlink(out)
    return rows


def throughput(rows: list[dict]) -> tuple[float, int, float | None]:
    """(tokens per wall second, tokens in all, tokens per CPU second) between the first and the last
    logged step (step 1, the warm-up, is before the window)."""
    first, last = rows[0], rows[-1]
    tokens = last["num_tokens"] - first["num_tokens"]
    # The worker's CPU time is sampled from outside a moment after each log, while it trains on; after
    # the last step it saves instead, so the CPU window ends one step earlier (for both sides alike).
    end = rows[-2] if len(rows) > 2 else last
    per_cpu = None
    if first.get("cpu") is not None and end.get("cpu") is not None and end["cpu"] > first["cpu"]:
        per_cpu = (end["num_tokens"] - first["num_tokens"]) / (end["cpu"] - first["cpu"])
    return tokens / (last["time"] - first["time"]), int(last["num_tokens"]), per_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="demo, tiny (the test model), or a model folder")
    parser.add_argument("--data", default="demo", choices=("demo", "varied"),
                        help="demo (nearly uniform lengths) or varied (a few dozen to ~1,000 tokens)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both sides (OMP_NUM_THREADS); default: torch's own choice")
    parser.add_argument("--hand-env", choices=("worker", "default"), default="worker",
                        help="worker (default): the hand script runs with the OpenMP setting the engine gives its "
                        "worker (OMP_WAIT_POLICY=PASSIVE), so the ratio is the engine's own overhead; default: "
                        "plain environment, which shows what that setting is worth on a busy CPU")
    parser.add_argument("--concurrent", action="store_true",
                        help="run each pair at the same time instead of one after the other (for busy machines)")
    parser.add_argument("--hand-child", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--data-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hand_child:
        hand_child(args.model_dir, args.data_file, args.steps, args.batch_size, args.lr, args.max_length,
                   args.hand_child)
        return 0

    global HAND_LIKE_WORKER
    HAND_LIKE_WORKER = args.hand_env == "worker"
    sys.path.insert(0, str(ROOT))
    from engine import models

    with tempfile.TemporaryDirectory(prefix="tunedeck-bench-overhead-") as tmp:
        model = args.model
        if model == "tiny":
            sys.path.insert(0, str(ROOT / "tests"))
            from tiny_model import build_tiny_model

            model = str(build_tiny_model(Path(tmp) / "tiny"))
        model_dir = models.materialize(model)
        from engine import demo

        data = str(varied_data(Path(tmp) / "varied.jsonl")) if args.data == "varied" else "demo"
        data_file = data if args.data == "varied" else str(demo.train_file())
        env_extra = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)} if args.threads else {}
        ratios, a_all, b_all, cpu_ratios = [], [], [], []
        for pair in range(args.pairs):
            order = ("A", "B") if pair % 2 == 0 else ("B", "A")
            got = {}

            def one(which: str):
                if which == "A":
                    return run_tunedeck(model, data, args.steps, args.batch_size, args.lr, args.max_length,
                                        Path(tmp) / f"home{pair}", env_extra)
                return run_hand(model_dir, data_file, args.steps, args.batch_size, args.lr, args.max_length, env_extra)

            if args.concurrent:  # both at once: on a shared machine they then meet the same load
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(2) as pool:
                    futures = {w: pool.submit(one, w) for w in order}
                    results = {w: f.result() for w, f in futures.items()}
            else:
                results = {}
                for which in order:
                    results[which] = one(which)
            for which in order:
                got[which] = throughput(results[which])
                cpu = f", {got[which][2]:.1f} tokens per CPU second" if got[which][2] else ""
                print(f"pair {pair + 1} {which} ({'tunedeck' if which == 'A' else 'hand'}): "
                      f"{got[which][0]:.1f} tokens/s over steps 2-{args.steps}{cpu} ({got[which][1]} tokens in all)",
                      flush=True)
            a_all.append(got["A"][0])
            b_all.append(got["B"][0])
            ratios.append(got["A"][0] / got["B"][0])
            if got["A"][2] and got["B"][2]:
                cpu_ratios.append(got["A"][2] / got["B"][2])
            if got["A"][1] != got["B"][1]:
                print(f"  note: token totals differ ({got['A'][1]} vs {got['B'][1]}): not the same batches")
    ratio = statistics.median(ratios)
    budget = VARIED_BUDGET if args.data == "varied" else BUDGET
    how = "concurrent" if args.concurrent else "interleaved"
    print(f"\nengine vs hand-written TRL ({args.model}, {args.data} data, batch {args.batch_size}, {args.steps} steps, "
          f"{args.pairs} {how} pairs)")
    print(f"  tunedeck  median {statistics.median(a_all):.1f} tokens/s")
    print(f"  hand TRL  median {statistics.median(b_all):.1f} tokens/s")
    print(f"  ratio tunedeck/hand: per pair {', '.join(f'{r:.3f}' for r in ratios)}; median {ratio:.3f}; "
          f"budget >= {budget}: {'OK' if ratio >= budget else 'UNDER'}")
    if cpu_ratios:
        print(f"  CPU-time ratio (tokens per CPU second, tunedeck/hand): per pair "
              f"{', '.join(f'{r:.3f}' for r in cpu_ratios)}; median {statistics.median(cpu_ratios):.3f}")
    print(f"  hand environment {args.hand_env}, threads {args.threads or 'default'}, cores {os.cpu_count()}, "
          f"load average at the end {os.getloadavg()[0]:.1f}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import report

    name = ("train: varied lengths, tokens/s tunedeck (padding-free) / TRL defaults" if args.data == "varied"
            else "train: engine overhead, tokens/s tunedeck / hand-written TRL")
    report(name, f"{ratio:.3f}", f">= {budget}",
           f"{args.model}, {args.pairs} {how} pairs of {args.steps} steps, batch {args.batch_size}; median ratio"
           + (f"; per CPU second {statistics.median(cpu_ratios):.3f}" if cpu_ratios else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
