"""`tunedeck estimate`: exact parameter counts and the training memory of a method, before downloading.

    tunedeck estimate --model llama-3.1-8b --method qlora
    tunedeck estimate --model ./my-model --method all --seq-len 2048 --json
    tunedeck estimate --model demo --objective dpo --batch-size 8    # 8 pairs: 16 sequences a step
"""

from __future__ import annotations

from ._args import number

import argparse
import json
import sys

from ..config import METHOD_NAMES as METHOD_LABELS


def register(sub) -> None:
    p = sub.add_parser(
        "estimate",
        help="parameter counts and training memory for a model and method (no weights downloaded)",
        description="Count a model's parameters on the meta device and estimate the peak memory of "
                    "training it with full fine-tuning, LoRA or QLoRA; judge it against the GPUs found.",
    )
    p.add_argument("--model", default="demo",
                   help="a built-in name (see --list), a config.json, a model folder, a .gguf file, demo, "
                        "or a hub id (default: demo)")
    p.add_argument("--method", default="lora", choices=["full", "lora", "qlora", "all"],
                   help="training method, or all three side by side (default: lora)")
    p.add_argument("--objective", default="sft", choices=["sft", "dpo", "kto"],
                   help="what the model learns from: sft, dpo (batch-size pairs, chosen and rejected in one "
                        "forward, plus a reference pass) or kto (default: sft)")
    p.add_argument("--init-from-adapter", action="store_true",
                   help="dpo/kto starting from an earlier run's adapter (init_from): TRL keeps a frozen copy of it")
    p.add_argument("--lora-r", type=int, default=16, metavar="R", help="LoRA rank (default: 16)")
    p.add_argument("--lora-targets", default="all-linear", metavar="NAMES",
                   help="comma-separated module names such as q_proj,v_proj, or all-linear (default)")
    p.add_argument("--lora-dropout", type=number, default=0.05, metavar="P", help="LoRA dropout (default: 0.05)")
    p.add_argument("--seq-len", "--max-length", dest="seq_len", type=int, default=1024, metavar="N",
                   help="tokens per example, RunConfig's max_length (default: 1024)")
    p.add_argument("--batch-size", type=int, default=4, metavar="B", help="examples per step (default: 4)")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1, metavar="K")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute activations in the backward pass (default: the worker's default per "
                        "method: on for QLoRA, off otherwise)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="estimate for a GPU (bf16) or for training on this machine's CPU (fp32)")
    p.add_argument("--precision", choices=["mixed", "bf16"], default="mixed",
                   help="full fine-tuning on a GPU: fp32 master weights + bf16 autocast (mixed, what "
                        "Tunedeck trains with) or pure bf16")
    p.add_argument("--optimizer", choices=["adamw", "adamw-8bit"], default="adamw")
    p.add_argument("--attention", choices=["sdpa", "eager"], default="sdpa")
    p.add_argument("--gpu-memory", type=number, metavar="GIB",
                   help="judge against a GPU with this much memory instead of the GPUs found here")
    p.add_argument("--data", metavar="FILE",
                   help="size the largest batch from this data's real token lengths (with the model's tokenizer) "
                        "instead of assuming every row is --max-length long")
    p.add_argument("--padding-free", action=argparse.BooleanOptionalAction, default=True,
                   help="batches as the worker runs them by default: rows back to back, no padding (default on)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--list", action="store_true", help="list the built-in model configs and exit")
    p.set_defaults(func=run)


def _plan(args, method: str, lengths=None, arch=None):
    """(the Plan, why its batches are padded or packed)."""
    from types import SimpleNamespace

    from engine.estimate import Plan, longest_batch

    rows, seq_len, packed, why = longest_batch(
        SimpleNamespace(batch_size=args.batch_size, max_length=args.seq_len, padding_free=args.padding_free,
                        objective=args.objective, method=method), lengths, arch=arch, device=args.device)
    preference = args.objective != "sft"
    return Plan(method=method, lora_r=args.lora_r, lora_targets=args.lora_targets,
                lora_dropout=0.0 if preference else args.lora_dropout,  # TRL turns dropout off for DPO/KTO
                seq_len=seq_len, batch_size=rows, packed=packed,
                gradient_accumulation_steps=args.gradient_accumulation_steps,
                gradient_checkpointing=args.gradient_checkpointing, device=args.device,
                precision=args.precision, optimizer=args.optimizer, attention=args.attention,
                objective=args.objective, reference_adapter=preference and args.init_from_adapter and method != "full"
                ), why


def _targets(args) -> tuple[list, str | None]:
    """(GPUs or a stand-in, why there are none)."""
    from engine import gpu

    return gpu.memory_targets(device=args.device, planned_gib=args.gpu_memory)


def _lengths(args):
    """The data's token lengths (engine.estimate.TokenLengths; None without --data)."""
    if not args.data:
        return None
    from engine import models
    from engine import estimate as E
    from engine.data.stats import token_stats

    stats = token_stats(args.data, models.load_tokenizer(args.model), args.seq_len, workers=1,
                        objective=args.objective)
    return E.TokenLengths.from_stats(stats)


def _one(arch, plan, gpus, reason) -> dict:
    from engine import calibration
    from engine import estimate as E

    est = E.estimate(arch, plan)
    total, note = calibration.calibrated(est.memory.total, plan.device, arch.model_type,
                                         E.calibration_method(plan.method, plan.objective))
    fit = E.judge_fit(total, gpus, reason)
    out = est.to_dict()
    out["calibrated_total"], out["calibration"] = total, note
    out["fit"] = fit.to_dict()
    out["suggestions"] = []
    if fit.verdict in ("no", "tight") and fit.gpu:
        out["suggestions"] = E.ways_to_fit(arch, plan, fit.gpu["memory_free"])
    return out


def run(args) -> int:
    from engine import estimate as E
    from engine import model_shapes as shapes

    if args.list:
        rows = shapes.builtin_models()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for name, info in rows.items():
                print(f"{name:16s} {info['display']:18s} {info['hub_id']}")
        return 0
    methods = list(E.METHODS) if args.method == "all" else [args.method]
    for m in methods:
        _plan(args, m)[0].resolved()  # bad values fail before the model is built
    arch = shapes.architecture_for(args.model)
    lengths = _lengths(args)
    plans = {m: _plan(args, m, lengths, arch) for m in methods}
    gpus, reason = _targets(args)
    results = {m: _one(arch, plan.resolved(), gpus, reason) | {"batching": why} for m, (plan, why) in plans.items()}
    if args.json:
        if args.method == "all":
            payload = {"model": arch.name, "total_params": arch.total_params, "methods": results,
                       "architecture": arch.to_dict(),
                       "gpus": E.judge_fit(0, gpus).gpus,
                       "no_gpu_reason": reason}
        else:
            payload = dict(results[args.method])
            payload["architecture"] = arch.to_dict()
            payload["no_gpu_reason"] = reason
        payload["sized_from"] = "data" if lengths else "max_length"
        payload["objective"] = args.objective
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
        return 0
    _print(arch, results, args)
    return 0


def _print(arch, results: dict, args) -> None:
    from rich.console import Console
    from rich.table import Table

    from engine import estimate as E

    console = Console()
    first = next(iter(results.values()))
    s = first["settings"]
    where = "a GPU (bf16)" if s["device"] == "cuda" else "this CPU (fp32)"
    console.print(f"[b]{arch.name}[/b]  {arch.model_class}, {arch.layers} layers, hidden {arch.hidden}, "
                  f"vocabulary {arch.vocab:,}")
    console.print(f"Parameters: [b]{arch.total_params:,}[/b] ({E.human_count(arch.total_params)}), counted on "
                  f"the meta device")
    shape = (f"one sequence of {s['seq_len']} tokens ({args.batch_size} rows back to back)" if s.get("packed")
             else f"{s['batch_size']} pairs = {2 * s['batch_size']} sequences x {s['seq_len']} tokens"
             if s.get("objective") == "dpo" else f"batch {s['batch_size']} x {s['seq_len']} tokens")
    if s.get("objective", "sft") != "sft":
        console.print(f"Objective: {s['objective'].upper()} (a reference pass without gradients beside each step)")
    sized = f"the largest batch of {args.data}" if args.data else f"every row {args.seq_len} tokens (max length)"
    console.print(f"Sized for: {sized}")
    whys = {r["batching"] for r in results.values()}
    for m, r in results.items() if len(whys) > 1 else list(results.items())[:1]:
        kind = "padding-free" if r["settings"].get("packed") else "padded"
        console.print(f"Batching{f' ({METHOD_LABELS[m]})' if len(whys) > 1 else ''}: {kind}: {r['batching']}")
    console.print(f"Settings: {shape}, gradient accumulation "
                  f"{s['gradient_accumulation_steps']}, LoRA r={s['lora_r']} on {_targets_text(s['lora_targets'])}, "
                  f"training on {where}\n")
    table = Table(show_edge=False, header_style="bold")
    table.add_column("")
    for m, r in results.items():
        gc = "with" if r["settings"]["gradient_checkpointing"] else "no"
        table.add_column(f"{METHOD_LABELS[m]}\n[dim]{gc} grad. checkpointing[/dim]", justify="right")
    table.add_row("trainable", *[f"{r['trainable_params']:,}\n[dim]{r['trainable_percent']:.2f}%[/dim]"
                                 for r in results.values()])
    for part in ("weights", "gradients", "optimizer", "activations", "overhead"):
        table.add_row(part, *[E.gib(r["memory_bytes"][part]) for r in results.values()])
    table.add_row("[b]peak[/b]", *[f"[b]{E.gib(r['memory_bytes']['total'])}[/b]" for r in results.values()])
    colours = {"fits": "green", "tight": "yellow", "no": "red", "no-gpu": "yellow"}
    table.add_row("fit", *[f"[{colours[r['fit']['verdict']]}]{r['fit']['verdict']}[/]" for r in results.values()])
    console.print(table)
    console.print("[dim]peak = weights + optimizer + the larger of (activations + gradients alive in the "
                  "backward pass) and (all gradients at the optimizer step) + overhead[/dim]\n")
    for m, r in results.items():
        label = METHOD_LABELS[m] if len(results) > 1 else "Fit"
        console.print(f"[b]{label}:[/b] {r['fit']['reason']}")
        if r["calibration"]:
            console.print(f"  [dim]{E.gib(r['calibrated_total'])} expected: {r['calibration']}[/dim]")
        for sug in r["suggestions"]:
            console.print(f"  to fit: {sug['change']} -> {E.gib(sug['total'])}")
        for note in r["notes"]:
            console.print(f"  [dim]{note}[/dim]")


def _targets_text(targets) -> str:
    return targets if isinstance(targets, str) else ",".join(targets)
