"""`tunedeck export RUN --to DIR [--merged] [--push ORG/NAME] [--json]`, `--gguf FILE [--quant Q]`,
`--trl-config FILE` and `--launch-script FILE`."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's adapter, merged model or GGUF (with an Ollama Modelfile), or a `trl sft|dpo|kto` config",
        description="Export a run: its LoRA adapter (PEFT format) or, with --merged, the adapter merged into "
        "the base weights, as safetensors with the tokenizer and chat template; loadable without Tunedeck. "
        "--gguf FILE merges and converts to one GGUF file (llama.cpp's converter) with an Ollama Modelfile and "
        "a model card beside it, then checks that it is prompted exactly as trained and answers like the merged "
        "model (stored in the run folder as export-check.json). "
        "--push ORG/NAME uploads the export (the adapter when no --to is given) with its model card. "
        "--trl-config FILE writes a YAML that `trl sft --config FILE` accepts (`trl dpo` / `trl kto` for a "
        "preference run), with the run's data beside it. "
        "--launch-script FILE writes a bash script that runs the run's training on several machines "
        "(accelerate launch or torchrun), with the run's config and an accelerate config beside it.",
    )
    p.add_argument("run", help="run id, unique prefix, folder, or 'latest'")
    p.add_argument("--to", metavar="DIR", help="a new (or empty) folder to write the weights to")
    p.add_argument("--merged", action="store_true", help="merge the adapter into the base weights (merge_and_unload)")
    p.add_argument("--gguf", metavar="FILE", help="merge and write one GGUF file, with a Modelfile and README.md beside it")
    p.add_argument("--quant", default="f16", metavar="TYPE", help="GGUF type: f16 (default), bf16, f32 or q8_0")
    p.add_argument("--no-check", action="store_true",
                   help="with --gguf: skip the template parity and greedy-answer check")
    p.add_argument("--push", metavar="ORG/NAME", help="upload the export to the Hugging Face Hub with its model card")
    p.add_argument("--trl-config", metavar="FILE",
                   help="also write a YAML config for `trl sft --config FILE` (trl dpo / trl kto for preference runs)")
    p.add_argument("--launch-script", metavar="FILE",
                   help="also write a bash script that trains this run on several machines")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--progress", action="store_true",
                   help="with --json: stream progress as JSON lines first, then the result as a 'result' line")
    p.set_defaults(func=run)


def run(args) -> int:
    import tempfile
    from pathlib import Path

    from engine.errors import TunedeckError
    from engine.export_summary import gguf_summary
    from engine.export import check_push, export_run, push_to_hub, write_launch_script, write_trl_config

    if not args.to and not args.trl_config and not args.launch_script and not args.gguf and not args.push:
        raise TunedeckError("Nothing to export: give --to DIR (weights), --gguf FILE, --push ORG/NAME, "
                            "--trl-config FILE and/or --launch-script FILE.")
    if args.push:
        check_push(args.push)  # offline, not logged in: said before anything is exported
    if args.progress:
        def progress(event):
            print(json.dumps(event), flush=True)
        say = lambda m: None  # noqa: E731  (status lines go through progress)
        status = lambda m: progress({"type": "status", "message": m})  # noqa: E731
    elif args.json:
        progress = None
        say = status = lambda m: None  # noqa: E731
    else:
        say = status = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
        last = {"pct": -1}

        def progress(event):  # the conversion's progress, every 10 %
            if event["type"] == "progress":
                pct = int(event["fraction"] * 100)
                if pct // 10 != last["pct"] // 10:
                    last["pct"] = pct
                    print(f"  {pct}% ({event['stage']})", file=sys.stderr, flush=True)
    result: dict = {}
    if args.to:
        result = export_run(args.run, args.to, merged=args.merged, say=status)
    if args.gguf:
        from engine.gguf_export import export_gguf

        result["gguf"] = export_gguf(args.run, args.gguf, quant=args.quant, check=not args.no_check, say=say,
                                     progress=progress)
    if args.push:
        if args.to:
            result["pushed"] = push_to_hub(Path(result["to"]), args.push, say=status)
        else:
            with tempfile.TemporaryDirectory(prefix="tunedeck-push-") as tmp:
                out = export_run(args.run, Path(tmp) / "export", merged=args.merged, say=status)
                result.setdefault("run", out["run"])
                result["pushed"] = push_to_hub(Path(out["to"]), args.push, say=status)
    if args.trl_config:
        result["trl_config"] = write_trl_config(args.run, args.trl_config, say=status)
    if args.launch_script:
        result["launch_script"] = write_launch_script(args.run, args.launch_script, say=status)
    if args.json:
        print(json.dumps({"type": "result", **result} if args.progress else result), flush=True)
    else:
        if args.to:
            print(f"Exported the {result['export']} of run {result['run']} to {result['to']} "
                  f"({result['bytes'] / 1e6:.1f} MB): {', '.join(result['files'])}")
        if args.gguf:
            print("\n".join(gguf_summary(result["gguf"])))
        if args.push:
            print(f"Pushed to {result['pushed']}")
        if args.trl_config:
            t = result["trl_config"]
            print(f"Wrote {t['config']} and {t['data']}/ ({t['train_rows']} train, {t['eval_rows']} validation rows); "
                  f"reproduce the run with: {t['command']} --config {t['config']}")
        if args.launch_script:
            ls = result["launch_script"]
            print(f"Wrote {ls['script']} with {ls['config']} and {ls['accelerate_config']} beside it; set NUM_MACHINES, "
                  f"MAIN_IP and PROCS_PER_MACHINE in it, then run it on every machine with its MACHINE_RANK (0 first).")
    return 0
