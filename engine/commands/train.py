"""`tunedeck train [CONFIG.yaml] [--model ... --max-steps N ...] [--follow] [--json]`

Starts a training run in a detached worker and returns at once with its id. The run survives the
terminal: close it, lose SSH, come back with `tunedeck runs` / `tunedeck logs RUN -f`.
Options on the command line override the YAML file; with no file they start from the defaults of
the method (`tunedeck train --model demo --data demo --max-steps 20` is enough).
"""

from __future__ import annotations

import json
from pathlib import Path

# (flag, config key, help)
OPTIONS = [
    ("--model", "model", "base model: demo, a model folder, a .gguf file or a hub id"),
    ("--data", "data", "training data: demo, a .jsonl/.json/.csv/.parquet file or a dataset folder"),
    ("--method", "method", "lora, qlora or full"),
    ("--max-steps", "max_steps", "optimizer steps to train (instead of --epochs)"),
    ("--epochs", "epochs", "passes over the data (default 1)"),
    ("--learning-rate", "learning_rate", "peak learning rate, e.g. 2e-4"),
    ("--batch-size", "batch_size", "examples per step on each device"),
    ("--gradient-accumulation-steps", "gradient_accumulation_steps", "batches summed into one optimizer step"),
    ("--max-length", "max_length", "tokens per example; longer ones are cut"),
    ("--save-steps", "save_steps", "save a checkpoint every N steps"),
    ("--logging-steps", "logging_steps", "log the loss every N steps"),
    ("--eval-steps", "eval_steps", "evaluate every N steps (0: never)"),
    ("--eval-split", "eval_split", "fraction held out for evaluation when the data has no validation split"),
    ("--eval-data", "eval_data", "a separate validation file"),
    ("--seed", "seed", "random seed"),
    ("--lora-r", "lora.r", "LoRA rank"),
    ("--lora-alpha", "lora.alpha", "LoRA alpha (scale = alpha / r)"),
    ("--lora-dropout", "lora.dropout", "LoRA dropout"),
    ("--lora-targets", "lora.targets", "all-linear, or module names separated by commas (q_proj,v_proj)"),
    ("--processes", "processes", "processes to train with, one per GPU (2 or more: accelerate launch; no GPU: CPU gloo)"),
    ("--distributed", "distributed", "with several processes: ddp, fsdp or deepspeed"),
    ("--accelerate-config", "accelerate_config", "an accelerate config YAML of your own (wins over --distributed)"),
]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="start a training run in the background (survives the terminal)",
        description="Start a fine-tuning run in a detached worker and print its id. Options override "
        "the YAML file; without a file they start from the method's defaults.",
    )
    parser.add_argument("config", nargs="?", help="a run config YAML file (optional)")
    for flag, key, text in OPTIONS:
        parser.add_argument(flag, dest="cfg_" + key.replace(".", "_"), metavar="VALUE", help=text)
    gc = parser.add_mutually_exclusive_group()
    gc.add_argument("--gradient-checkpointing", dest="cfg_gradient_checkpointing", action="store_const",
                    const=True, help="trade compute for memory")
    gc.add_argument("--no-gradient-checkpointing", dest="cfg_gradient_checkpointing", action="store_const",
                    const=False)
    parser.add_argument("--follow", "-f", action="store_true",
                        help="show a progress bar with the loss until the run ends (Ctrl-C detaches, the run goes on)")
    parser.add_argument("--json", action="store_true", help='print {"run_id", "run_dir"} as JSON')
    parser.set_defaults(func=run)


def _resolve_relative(value, base: Path):
    """A relative path in a YAML file means the same file from anywhere: if it exists next to the
    YAML and not in the current directory, use the one next to the YAML."""
    if not isinstance(value, str) or value == "demo":
        return value
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return value
    beside = base / path
    return str(beside) if beside.exists() else value


def build_config(args):
    """The RunConfig from the YAML file (if any) and the options. ConfigError on any problem."""
    import yaml

    from ..config import RunConfig
    from ..errors import ConfigError

    raw: dict = {}
    if args.config:
        RunConfig.load(args.config)  # validates with line numbers in the messages
        path = Path(args.config).expanduser()
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key in ("model", "data", "eval_data", "accelerate_config"):
            if key in raw:
                raw[key] = _resolve_relative(raw[key], path.parent)
    flags: dict = {}
    for flag, key, _ in OPTIONS:
        value = getattr(args, "cfg_" + key.replace(".", "_"))
        if value is None:
            continue
        if key.startswith("lora."):
            raw.setdefault("lora", {})
            if not isinstance(raw["lora"], dict):
                raw["lora"] = {}
            raw["lora"][key[5:]] = value
        else:
            raw[key] = value
        flags[key] = flag
    if args.cfg_gradient_checkpointing is not None:
        raw["gradient_checkpointing"] = args.cfg_gradient_checkpointing
    if "max_steps" in flags and "epochs" not in flags:
        raw.pop("epochs", None)
    if "epochs" in flags and "max_steps" not in flags:
        raw.pop("max_steps", None)
    try:
        return RunConfig.from_dict(raw, source=args.config or "command line")
    except ConfigError as exc:
        text = str(exc)
        for key, flag in flags.items():  # name the option the user typed, not the YAML key
            text = text.replace(f" {key} must", f" {flag} must").replace(f"'{key}'", flag)
        raise ConfigError(text) from None


def run(args) -> int:
    from ..launch import start_run

    config = build_config(args)
    new = start_run(config)
    if args.json:
        print(json.dumps({"run_id": new.id, "run_dir": str(new.dir)}), flush=True)
        if args.follow:
            from ._follow import follow_json

            return follow_json(new)
        return 0
    print(f"Started run {new.id} ({config.method} on {config.model}, data {config.data}).")
    print(f"  folder  {new.dir}")
    if not args.follow:
        print(f"  watch   tunedeck logs {new.id} -f   (or tunedeck attach {new.id} for the live monitor)")
        print(f"  stop    tunedeck stop {new.id}")
        return 0
    from ._follow import follow_progress

    return follow_progress(new)
