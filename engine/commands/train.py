"""`tunedeck train [CONFIG.yaml] [--model ... --max-steps N ...] [--follow] [--json]`

Starts a training run in a detached worker and returns at once with its id. The run survives the
terminal: close it, lose SSH, come back with `tunedeck runs` / `tunedeck logs RUN -f`.
Options on the command line override the YAML file; with no file they start from the defaults of
the method (`tunedeck train --model demo --data demo --max-steps 20` is enough).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import FIELDS

def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="start a training run in the background (survives the terminal)",
        description="Start a fine-tuning run in a detached worker and print its id. Options override "
        "the YAML file; without a file they start from the method's defaults.",
    )
    parser.add_argument("config", nargs="?", help="a run config YAML file (optional)")
    for spec in FIELDS:  # one option per setting of the schema
        dest = "cfg_" + spec.key.replace(".", "_")
        if spec.kind == "bool":
            pair = parser.add_mutually_exclusive_group()
            pair.add_argument(spec.flag, dest=dest, action="store_const", const=True, help=spec.help)
            pair.add_argument("--no-" + spec.flag[2:], dest=dest, action="store_const", const=False)
        else:
            parser.add_argument(spec.flag, dest=dest, metavar="VALUE", help=spec.help)
    parser.add_argument("--follow", "-f", action="store_true",
                        help="show a progress bar with the loss until the run ends (Ctrl-C detaches, the run goes on)")
    parser.add_argument("--check", action="store_true",
                        help="check everything the run needs (settings, model, tokenizer, every data row, memory) "
                             "and start nothing; exit 0 when it can start, 2 with the reason when not")
    parser.add_argument("--json", action="store_true", help='print {"run_id", "run_dir"} as JSON (with --check: the report)')
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
    from ..data.dataset import with_refs
    from ..errors import ConfigError

    raw: dict = {}
    if args.config:
        RunConfig.load(args.config)  # validates with line numbers in the messages
        path = Path(args.config).expanduser()
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key in ("model", "data", "eval_data", "accelerate_config", "reward_file"):
            if key in raw:
                raw[key] = with_refs(raw[key], lambda ref: _resolve_relative(ref, path.parent))
    flags: dict = {}
    for spec in FIELDS:
        key = spec.key
        value = getattr(args, "cfg_" + key.replace(".", "_"))
        if value is None:
            continue
        if spec.lora_only:
            raw.setdefault("lora", {})
            if not isinstance(raw["lora"], dict):
                raw["lora"] = {}
            raw["lora"][key[5:]] = value
        else:
            raw[key] = value
        flags[key] = spec.flag
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


def check(args) -> int:
    """``--check``: the full pre-flight, no run folder. With --json one object, refusals included."""
    from ..errors import TunedeckError
    from ..preflight import check as preflight_check

    try:
        report = preflight_check(build_config(args)).to_json()
    except TunedeckError as exc:  # the settings themselves are wrong
        report = {"ok": False, "problem": str(exc), "warnings": [],
                  "checks": [{"name": "settings", "ok": False, "detail": str(exc), "seconds": 0.0}]}
    code = 0 if report["ok"] else 2
    if args.json:
        print(json.dumps({**report, "exit": code}), flush=True)
        return code
    for c in report["checks"]:
        print(f"{'✔' if c['ok'] else '✘'} {c['name']:<10} {c['detail']}")
    for warning in report["warnings"]:
        print(f"! {warning}")
    if report["ok"]:
        print("Ready: `tunedeck train` without --check starts this run.")
    else:
        print(f"tunedeck: {report['problem']}", file=sys.stderr)
    return code


def run(args) -> int:
    from ..launch import start_run

    if args.check:
        return check(args)
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
