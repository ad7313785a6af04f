"""`tunedeck export RUN --to DIR [--merged] [--json]` and `--trl-config FILE`."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's adapter or merged model for plain transformers, or a `trl sft` config",
        description="Export a run: its LoRA adapter (PEFT format) or, with --merged, the adapter merged into "
        "the base weights, as safetensors with the tokenizer and chat template; loadable without Tunedeck. "
        "--trl-config FILE writes a YAML that `trl sft --config FILE` accepts, with the run's data beside it.",
    )
    p.add_argument("run", help="run id, unique prefix, folder, or 'latest'")
    p.add_argument("--to", metavar="DIR", help="a new (or empty) folder to write the weights to")
    p.add_argument("--merged", action="store_true", help="merge the adapter into the base weights (merge_and_unload)")
    p.add_argument("--trl-config", metavar="FILE", help="also write a YAML config for `trl sft --config FILE`")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.errors import TunedeckError
    from engine.export import export_run, write_trl_config

    if not args.to and not args.trl_config:
        raise TunedeckError("Nothing to export: give --to DIR (weights) and/or --trl-config FILE.")
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr))
    result = {}
    if args.to:
        result = export_run(args.run, args.to, merged=args.merged, say=say)
    if args.trl_config:
        result["trl_config"] = write_trl_config(args.run, args.trl_config, say=say)
    if args.json:
        print(json.dumps(result))
    else:
        if args.to:
            print(f"Exported the {result['export']} of run {result['run']} to {result['to']} "
                  f"({result['bytes'] / 1e6:.1f} MB): {', '.join(result['files'])}")
        if args.trl_config:
            t = result["trl_config"]
            print(f"Wrote {t['config']} and {t['data']}/ ({t['train_rows']} train, {t['eval_rows']} validation rows); "
                  f"reproduce the run with: trl sft --config {t['config']}")
    return 0
