"""`tunedeck export RUN --to DIR [--merged] [--json]`, `--trl-config FILE` and `--launch-script FILE`."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's adapter or merged model for plain transformers, or a `trl sft|dpo|kto` config",
        description="Export a run: its LoRA adapter (PEFT format) or, with --merged, the adapter merged into "
        "the base weights, as safetensors with the tokenizer and chat template; loadable without Tunedeck. "
        "--trl-config FILE writes a YAML that `trl sft --config FILE` accepts (`trl dpo` / `trl kto` for a "
        "preference run), with the run's data beside it. "
        "--launch-script FILE writes a bash script that runs the run's training on several machines "
        "(accelerate launch or torchrun), with the run's config and an accelerate config beside it.",
    )
    p.add_argument("run", help="run id, unique prefix, folder, or 'latest'")
    p.add_argument("--to", metavar="DIR", help="a new (or empty) folder to write the weights to")
    p.add_argument("--merged", action="store_true", help="merge the adapter into the base weights (merge_and_unload)")
    p.add_argument("--trl-config", metavar="FILE",
                   help="also write a YAML config for `trl sft --config FILE` (trl dpo / trl kto for preference runs)")
    p.add_argument("--launch-script", metavar="FILE",
                   help="also write a bash script that trains this run on several machines")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.errors import TunedeckError
    from engine.export import export_run, write_launch_script, write_trl_config

    if not args.to and not args.trl_config and not args.launch_script:
        raise TunedeckError("Nothing to export: give --to DIR (weights), --trl-config FILE and/or --launch-script FILE.")
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr))
    result = {}
    if args.to:
        result = export_run(args.run, args.to, merged=args.merged, say=say)
    if args.trl_config:
        result["trl_config"] = write_trl_config(args.run, args.trl_config, say=say)
    if args.launch_script:
        result["launch_script"] = write_launch_script(args.run, args.launch_script, say=say)
    if args.json:
        print(json.dumps(result))
    else:
        if args.to:
            print(f"Exported the {result['export']} of run {result['run']} to {result['to']} "
                  f"({result['bytes'] / 1e6:.1f} MB): {', '.join(result['files'])}")
        if args.trl_config:
            t = result["trl_config"]
            print(f"Wrote {t['config']} and {t['data']}/ ({t['train_rows']} train, {t['eval_rows']} validation rows); "
                  f"reproduce the run with: {t['command']} --config {t['config']}")
        if args.launch_script:
            ls = result["launch_script"]
            print(f"Wrote {ls['script']} with {ls['config']} and {ls['accelerate_config']} beside it; set NUM_MACHINES, "
                  f"MAIN_IP and PROCS_PER_MACHINE in it, then run it on every machine with its MACHINE_RANK (0 first).")
    return 0
