"""`tunedeck eval RUN [--json] [--progress] [--limit N] [--k K]`: was fine-tuning worth it?"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="score a run against zero-shot, few-shot and retrieval few-shot prompting of its base model",
        description="Evaluate a run on its held-out rows (the test set when it kept one apart, else validation): eval loss and perplexity of base vs fine-tuned, "
        "and exact match / valid JSON / field accuracy of the answers of the base model prompted zero-shot, "
        "few-shot (k training examples), retrieval few-shot (k most similar by BM25), and the fine-tuned model. "
        "A DPO/KTO run is scored on held-out pairs instead: how often each model prefers the chosen answer "
        "(log-probability margin), the tuned model's reward accuracy against its reference, and answers of the "
        "base and tuned model side by side. Both also get the general-ability probe (forgetting): perplexity on general text "
        "and answers to everyday prompts, base vs tuned, with a one-line verdict. The result is saved in the run folder as eval.json.",
    )
    p.add_argument("run", help="run id, unique prefix, folder, or 'latest'")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N validation examples")
    p.add_argument("--k", type=int, default=3, metavar="K", help="examples shown in few-shot prompts (default 3)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="examples per forward pass (default 8)")
    p.add_argument("--max-new-tokens", type=int, metavar="T", help="answer length cap (default: from the references)")
    p.add_argument("--samples", type=int, default=5, metavar="S",
                   help="preference runs: held-out prompts answered side by side by the base and tuned model (default 5)")
    p.add_argument("--split", choices=("test", "validation"),
                   help="which held-out rows (default: the test set when the run kept one apart, else validation)")
    p.add_argument("--no-probe", dest="probe", action="store_false",
                   help="skip the general-ability probe (base vs tuned on everyday prompts and general text: "
                   "did fine-tuning make the model forget the rest?)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--progress", action="store_true", help="with --json: stream progress as JSON lines first")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.errors import TunedeckError
    from engine.eval_scores import format_table, json_safe
    from engine.evaluate import evaluate_run

    if args.limit is not None and args.limit < 1:
        raise TunedeckError(f"--limit must be a positive number of examples, got {args.limit}.")
    if args.k < 0:
        raise TunedeckError(f"--k must be 0 or more, got {args.k}.")
    if args.samples < 0:
        raise TunedeckError(f"--samples must be 0 or more, got {args.samples}.")
    if args.json and args.progress:
        def progress(event):
            print(json.dumps(event), flush=True)
    elif args.json:
        progress = None
    else:
        last = {"pct": -1}

        def progress(event):
            if event["type"] == "status":
                print(event["message"], file=sys.stderr, flush=True)
            elif event["type"] == "progress":
                pct = int(event["fraction"] * 100)
                if pct // 10 != last["pct"] // 10:
                    last["pct"] = pct
                    print(f"  {pct}% ({event['stage']})", file=sys.stderr, flush=True)

    result = evaluate_run(args.run, limit=args.limit, k=args.k, batch_size=args.batch_size,
                          max_new_tokens=args.max_new_tokens, progress=progress, samples=args.samples,
                          split=args.split, probe=args.probe)
    if args.json:
        print(json.dumps({"type": "result", **json_safe(result)}), flush=True)
    else:
        print(format_table(result))
    return 0
