"""`tunedeck data inspect|render|stats|serve`: look at training data from the command line.

  inspect FILE... [--model REF]    format, rows, every bad row by line/record, warnings (+ token stats);
                                   several FILEs, or --config RUN.yaml (its data:), show each source and the mix
                                   exit 0 clean, 1 some rows bad, 2 the file is unusable
  render FILE --row N [--model]    one row through the chat template, trained tokens highlighted
  stats FILE --model REF           token length histogram, rows over --max-length, trainable tokens
  serve --model REF                a warm helper for the TUI: JSON requests on stdin, answers on stdout

``--objective sft|dpo|kto|grpo`` reads the rows as that objective trains them (default: the data decides:
a file of chosen/rejected pairs is read as pairs, answers labelled good/bad as KTO data, anything
else as supervised fine-tuning data); ``--objective sft`` refuses pairs and labels as before. For
preference data, inspect reports the pairs, the good/bad balance of labels, and (with --model) the
token lengths of the prompt, the chosen and the rejected answer; render shows both sides of a pair.

``--progress`` prints JSON lines ``{"event": "progress", ...}`` while working, then the result.
With ``--json`` (or ``--progress``) the answer is always one JSON object on stdout, a refusal too:
``{"error": "one sentence", "exit": 2, "kind"?: "preference", ...}`` (same exit codes, the sentence
also on stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine import ipc
from engine.config import FIELD
from engine.errors import DataError, TunedeckError

DEFAULT_MAX_LENGTH = 1024


def register(sub) -> None:
    parser = sub.add_parser("data", help="inspect, render and measure training data")
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])
    dsub = parser.add_subparsers(dest="data_command", metavar="ACTION")

    p = dsub.add_parser("inspect", help="detect the format, list bad rows by line, warnings (and token stats with --model)")
    _common(p, several=True)
    p.add_argument("--config", default=None, metavar="RUN.yaml",
                   help="inspect the data of this run config (its sources, mix, seed, max_length)")
    p.add_argument("--model", default=None, help="also compute token statistics with this model's tokenizer")
    p.add_argument("--max-errors", type=int, default=1000, help="list at most this many bad rows (default 1000)")
    p.set_defaults(func=_answering(cmd_inspect))

    p = dsub.add_parser("render", help="show one row as tokens, trained tokens highlighted")
    _common(p)
    p.add_argument("--row", type=int, required=True, help="row number, counted from 1")
    p.add_argument("--model", default="demo", help="model whose tokenizer and chat template to use (default demo)")
    p.set_defaults(func=_answering(cmd_render))

    p = dsub.add_parser("stats", help="token length histogram, rows over max length, trainable tokens")
    _common(p)
    p.add_argument("--model", default="demo", help="model whose tokenizer to use (default demo)")
    p.add_argument("--workers", type=int, default=None, help="processes for big JSON Lines files (default: CPU count)")
    p.set_defaults(func=_answering(cmd_stats))

    p = dsub.add_parser("serve", help="warm helper for the app: JSON lines in, JSON lines out")
    p.add_argument("--model", default="demo")
    p.set_defaults(func=cmd_serve)


def _common(p, *, several: bool = False) -> None:
    what = "a .jsonl/.json/.csv/.tsv/.parquet file, a save_to_disk folder, a hub id, or demo"
    if several:
        p.add_argument("file", metavar="FILE", nargs="*", help=what + " (several: each source and their mix)")
    else:
        p.add_argument("file", metavar="FILE", help=what)
    p.add_argument("--split", default="train", help="split of a saved dataset folder or of demo (default train)")
    p.add_argument("--max-length", type=int, default=None, help=f"tokens per example (default {DEFAULT_MAX_LENGTH})")
    p.add_argument("--special-token-text", choices=FIELD["special_token_text"].choices, default=None,
                   help="special-token text in the data stays literal text (default) or becomes the token")
    p.add_argument("--objective", choices=FIELD["objective"].choices, default=None,
                   help="read the rows as this objective trains them (default: the data decides)")
    p.add_argument("--max-prompt-length", type=int, default=None,
                   help="preference data: prompts keep their last N tokens (as training does)")
    p.add_argument("--max-completion-length", type=int, default=None,
                   help="preference data: answers are cut to N tokens (as training does)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--progress", action="store_true", help="print JSON-lines progress events while working")


def _emit(obj: dict) -> None:
    ipc.write_line(sys.stdout, obj)


def _answering(command):
    """With --json or --progress, every outcome is JSON on stdout: a refusal is {"error", "exit",
    ...} (the sentence also on stderr, the exit code unchanged); anything else unexpected too, and
    then it is raised, so its traceback still reaches stderr."""

    def run(args) -> int:
        if not (args.json or args.progress):
            return command(args)
        try:
            return command(args)
        except TunedeckError as exc:
            from engine.data.dataset import RefusedData
            from engine.data.formats import DESCRIPTIONS

            out = {"error": str(exc), "exit": exc.exit_code}
            if isinstance(exc, RefusedData):
                out.update(kind=exc.kind, file=exc.display, format_description=DESCRIPTIONS[exc.kind])
            _emit({**out, "event": "error"} if args.progress else out)
            print(f"tunedeck: {exc}", file=sys.stderr)
            return exc.exit_code
        except Exception as exc:
            _emit({"error": f"{type(exc).__name__}: {exc}", "exit": 1, **({"event": "error"} if args.progress else {})})
            raise

    return run


def _settings(args) -> tuple[object, int, int, str]:
    """(data, seed, max_length, special_token_text) from FILE(s) or --config and the options."""
    from engine.config import RunConfig
    from engine.data.dataset import DEFAULT_SEED, with_refs

    files = args.file if isinstance(args.file, list) else [args.file]
    config = getattr(args, "config", None)
    if config:
        if files:
            raise DataError("Give data files or --config, not both.")
        from engine.commands.train import _resolve_relative

        cfg = RunConfig.load(config)
        data = with_refs(cfg.data, lambda ref: _resolve_relative(ref, Path(config).expanduser().parent))
        seed, max_length, mode = cfg.seed, cfg.max_length, cfg.special_token_text
    else:
        if not files:
            raise DataError("No data given: pass a file, folder, hub id or demo (several to see their mix), "
                            "or --config RUN.yaml.")
        data = files[0] if len(files) == 1 else list(files)
        seed, max_length, mode = DEFAULT_SEED, DEFAULT_MAX_LENGTH, "literal"
    return data, seed, max_length if args.max_length is None else args.max_length, args.special_token_text or mode


def _preference_settings(args) -> tuple[str | None, dict]:
    """(objective, {max_prompt_length, max_completion_length}) from the options, else --config's."""
    objective, limits = args.objective, {"max_prompt_length": args.max_prompt_length,
                                         "max_completion_length": args.max_completion_length}
    config = getattr(args, "config", None)
    if config:
        from engine.config import RunConfig

        cfg = RunConfig.load(config)
        objective = objective or cfg.objective
        limits = {k: v if v is not None else getattr(cfg, k) for k, v in limits.items()}
    return objective, limits


def _progress_printer(phase: str, enabled: bool):
    if not enabled:
        return None

    def progress(fraction: float, rows: int) -> None:
        _emit({"event": "progress", "phase": phase, "fraction": round(float(fraction), 4), "rows": rows})

    return progress


def _model_progress(enabled: bool):
    if not enabled:
        return None

    def progress(message: str, fraction: float | None) -> None:
        _emit({"event": "progress", "phase": "model", "message": message, "fraction": fraction})

    return progress


def _tokenizer(ref: str, progress: bool):
    from engine import models

    if progress:
        _emit({"event": "progress", "phase": "model", "message": f"loading the tokenizer of {ref}", "fraction": None})
    return models.load_tokenizer(ref, _model_progress(progress))


# --- inspect -------------------------------------------------------------------------------------


def cmd_inspect(args) -> int:
    from engine.data.dataset import data_sources, inspect, mix_label, mix_summary
    from engine.data.hub import open_source

    data, seed, max_length, mode = _settings(args)
    objective, limits = _preference_settings(args)
    reports = [inspect(open_source(s.ref, split=args.split), progress=_progress_printer("rows", args.progress),
                       max_errors=args.max_errors, objective=objective) for s in data_sources(data)]
    if isinstance(data, list):
        out = _mix_report(data, reports, mix_summary(data_sources(data), [r.valid_rows for r in reports]), seed)
        unit = "record"
    else:
        out = reports[0].as_json()
        unit = reports[0].unit
    stats_warnings: list[str] = []
    if args.model:
        from engine.data.stats import token_stats

        tok = _tokenizer(args.model, args.progress)
        out["stats"] = token_stats(data if isinstance(data, list) else open_source(data, split=args.split), tok,
                                   max_length, progress=_progress_printer("tokens", args.progress),
                                   special_token_text=mode, seed=seed, objective=objective, **limits)
        out["stats"]["model"] = args.model
        _stats_warnings(out["stats"], stats_warnings, unit)
        out["warnings"] += stats_warnings
    code = 1 if out["bad_rows"] else 0
    if args.json or args.progress:
        if args.progress:
            out["event"] = "report"
        _emit(out)
        return code
    for k, report in enumerate(reports):
        _print_report(report, out["sources"][k] if "sources" in out else None)
    if "sources" in out:
        sys.stdout.write(f"mix of {mix_label(data)} (seed {seed}): {out['examples']:,} examples — "
                         + ", ".join(f"{s['taken']:,} from {s['ref']} ({s['share']:.0%})" for s in out["sources"])
                         + "\n")
    for w in stats_warnings:
        sys.stdout.write(f"warning: {w}\n")
    if out.get("stats"):
        _print_stats(out["stats"])
    return code


def _mix_report(data, reports, summary: list[dict], seed: int) -> dict:
    """inspect's answer for several sources: each source's report with its part of the mix, and totals."""
    from engine.data.dataset import mix_label

    return {
        "file": mix_label(data), "format": "mix", "seed": seed,
        "sources": [{**r.as_json(), **m} for r, m in zip(reports, summary)],
        "rows": sum(r.rows for r in reports), "valid_rows": sum(r.valid_rows for r in reports),
        "bad_rows": sum(r.error_count for r in reports), "examples": sum(m["taken"] for m in summary),
        "warnings": [f"{r.display}: {w}" for r in reports for w in r.warnings], "stats": {},
        "objective": reports[0].objective if reports else None,
    }


def _stats_warnings(stats: dict, warnings: list[str], unit: str) -> None:
    if stats.get("over_max_length"):
        n = stats["over_max_length"]
        where = stats["over_max_length_where"].get(unit, [])
        warnings.append(
            f"{n} example{'s are' if n > 1 else ' is'} longer than max_length {stats['max_length']} and will be cut"
            + (f" ({unit} {', '.join(map(str, where[:5]))}{', ...' if n > 5 else ''})" if where else "")
            + "."
        )
    pref = stats.get("preference") or {}
    for part, key in (("prompt", "max_prompt_length"), ("answer", "max_completion_length")):
        over = pref.get(f"over_{key}")
        if over:
            warnings.append(f"{over} example{'s have' if over > 1 else ' has'} a{'n' if part == 'answer' else ''} "
                            f"{part} longer than {key} {pref[key]} and will be cut"
                            + (" (the prompt keeps its last tokens)." if part == "prompt" else "."))
    if stats.get("nothing_trained"):
        n = stats["nothing_trained"]
        warnings.append(
            f"{n} example{'s have' if n > 1 else ' has'} no trained token left after the cut at {stats['max_length']}; "
            "raise max_length or shorten the prompts."
        )
    from engine.data.render import special_text_warnings

    listed = stats.get("special_token_text_where") or []
    for row in listed:
        warnings += [f"{unit} {row[unit]}: {w}" for w in special_text_warnings(row["found"], stats["special_token_text_mode"])]
    if stats.get("special_token_text", 0) > len(listed):
        warnings.append(f"... and {stats['special_token_text'] - len(listed)} more rows hold special-token text.")


def _print_report(report, part: dict | None = None) -> None:
    from engine.data.formats import DESCRIPTIONS

    out = sys.stdout
    fmt = report.format or "unknown"
    out.write(f"{report.display}: {fmt} — {DESCRIPTIONS.get(fmt, 'no known format')}\n")
    out.write(f"{report.rows} rows: {report.valid_rows} usable, {report.error_count} bad\n")
    if part is not None:
        asked = (f"weight {part['weight']:g}" if part["weight"] is not None else
                 f"fraction {part['fraction']:g}" if part["fraction"] is not None else "all of it")
        out.write(f"  in the mix ({asked}): {part['taken']:,} examples, {part['share']:.0%} of the mix\n")
    pref = report.preference
    if pref:
        good, bad = pref["labelled"]["good"], pref["labelled"]["bad"]
        parts = [f"{pref['pairs']:,} pairs (chosen / rejected)"] if pref["pairs"] else []
        if good or bad:
            parts.append(f"{good:,} answers labelled good and {bad:,} bad ({pref['good_fraction']:.0%} good)")
        out.write("preference data: " + "; ".join(parts) + "\n")
    if report.tool_rows:
        calls = ", ".join(f"{name} ×{n}" for name, n in list(report.tool_calls.items())[:8])
        out.write(f"{report.tool_rows} row{'s use' if report.tool_rows > 1 else ' uses'} tools"
                  + (f"; calls: {calls}" if calls else "") + "\n")
    for problem in report.errors:
        out.write(f"  {report.unit} {problem.where}: {problem.message}\n")
    if report.error_count > len(report.errors):
        out.write(f"  ... and {report.error_count - len(report.errors)} more\n")
    for w in report.warnings:
        out.write(f"warning: {w}\n")


def _print_stats(s: dict) -> None:
    out = sys.stdout
    L = s["length"]
    what = ("sequence (prompt + one answer)" if (s.get("preference") or {}).get("pairs")
            else "sequence (prompt + answer)" if s.get("preference") else "example")
    out.write(
        f"tokens per {what}: min {L['min']}, median {L['p50']}, p90 {L['p90']}, max {L['max']}, mean {L['mean']}\n"
        f"over max_length {s['max_length']}: {s['over_max_length']} of {s['examples']}\n"
        f"tokens: {s['tokens']:,} in all, {s['trainable_tokens']:,} trained\n"
    )
    pref = s.get("preference")
    if pref:
        for part in ("prompt", "chosen", "rejected", "completion"):
            if part in pref:
                P = pref[part]
                limit = pref.get("max_prompt_length" if part == "prompt" else "max_completion_length")
                out.write(f"  {part + ' tokens:':18s} min {P['min']}, median {P['p50']}, p90 {P['p90']}, max {P['max']}"
                          + (f" (limit {limit})" if limit else "") + "\n")
    counts = s["histogram"]["counts"]
    edges = s["histogram"]["edges"]
    peak = max(counts) or 1
    # merge bins so the text histogram stays short
    step = max(1, len(counts) // 16)
    for k in range(0, len(counts), step):
        c = sum(counts[k : k + step])
        lo, hi = edges[k], edges[min(len(edges) - 1, k + step)]
        cut = " <- max_length" if lo <= s["max_length"] < hi else ""
        out.write(f"  {lo:>6}-{hi:<6} {'#' * max(0, round(40 * c / (peak * step)))} {c}{cut}\n")


# --- render --------------------------------------------------------------------------------------


def cmd_render(args) -> int:
    from engine.data.render import render_row, row_example

    _, _, max_length, mode = _settings(args)
    objective, limits = _preference_settings(args)
    row_example(args.file, args.row, split=args.split, objective=objective)  # a bad row fails before the model loads
    tok = _tokenizer(args.model, args.progress)
    out = render_row(args.file, args.row, tok, max_length, split=args.split, special_token_text=mode,
                     objective=objective, **limits)
    if args.json or args.progress:
        _emit(out)
        return 0
    if out["kind"] in ("pair", "labelled"):
        return _print_preference_render(out, max_length)
    import json

    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    for tool in out["tools"]:
        fn = tool["function"]
        params = ", ".join((fn.get("parameters") or {}).get("properties") or {})
        console.print(f"tool {fn['name']}({params})" + (f" — {fn['description']}" if fn.get("description") else ""),
                      style="cyan", markup=False)
    for call in out["tool_calls"]:
        console.print(f"message {call['message']} calls {call['name']}({json.dumps(call['arguments'], ensure_ascii=False)})",
                      style="bold cyan", markup=False)
    if out["tools"] or out["tool_calls"]:
        console.print()
    text = Text()
    for piece, trained in zip(out["tokens"], out["trained"]):
        text.append(piece, style="bold black on green" if trained else "dim")
    console.print(text)
    console.print(
        f"\n{out['length']} tokens, {out['trained_tokens']} trained (highlighted)"
        + (f"; cut from {out['full_length']} at max_length {max_length}" if out["truncated"] else "")
    )
    for w in out["warnings"]:
        console.print(f"warning: {w}", markup=False)
    return 0


def _print_preference_render(out: dict, max_length: int) -> int:
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    sides = ([("CHOSEN", out["chosen"]), ("REJECTED", out["rejected"])] if out["kind"] == "pair"
             else [(f"LABELLED {'GOOD' if out['label'] else 'BAD'}", out)])
    for title, side in sides:
        console.print(title, style="bold", markup=False)
        text = Text()
        for piece, trained in zip(side["tokens"], side["trained"]):
            text.append(piece, style="bold black on green" if trained else "dim")
        console.print(text)
        console.print(f"{side['length']} tokens: prompt {side['prompt_tokens']}, {side['trained_tokens']} trained "
                      "(highlighted)" + (f"; cut from {side['full_length']}" if side["truncated"] else "") + "\n",
                      markup=False)
    for w in out["warnings"]:
        console.print(f"warning: {w}", markup=False)
    return 0


# --- stats ---------------------------------------------------------------------------------------


def cmd_stats(args) -> int:
    from engine.data.hub import open_source
    from engine.data.stats import token_stats

    _, _, max_length, mode = _settings(args)
    objective, limits = _preference_settings(args)
    source = open_source(args.file, split=args.split)  # a missing file fails before the model loads
    tok = _tokenizer(args.model, args.progress)
    partial = (lambda s: _emit({"event": "partial", **s})) if args.progress else None
    stats = token_stats(
        source, tok, max_length, progress=_progress_printer("tokens", args.progress),
        workers=args.workers, partial=partial, special_token_text=mode, objective=objective, **limits,
    )
    stats["model"] = args.model
    warnings: list[str] = []
    _stats_warnings(stats, warnings, source.unit)
    stats["warnings"] = warnings
    if args.json or args.progress:
        if args.progress:
            stats["event"] = "stats"
        _emit(stats)
        return 0
    _print_stats(stats)
    for w in warnings:
        sys.stdout.write(f"warning: {w}\n")
    return 0


# --- serve ---------------------------------------------------------------------------------------


def cmd_serve(args) -> int:
    """A server speaking engine/ipc.py's framing. Requests, one JSON object a line on stdin:
    {"id": 1, "op": "render", "example": {...}, "max_length": 1024, "special_token_text"?: "literal"}
    {"id": 2, "op": "render_row", "file": "data.jsonl", "row": 3, "max_length": 1024, "objective"?: "dpo"}
    (render and render_row also take max_prompt_length / max_completion_length for preference rows)
    {"id": 3, "op": "try_rewards", "model": "demo", "data": "demo", "rewards": "json_valid, json_keys:category",
     "reward_file": null, "prompts": 4, "generations": 4, "max_completion_length": 64, "temperature": 1.0}:
    GRPO's "try the rewards" (engine.commands.rewards.try_rewards: the model's sampled answers, scored), with
    progress lines
    {"id": 3, "event": "progress", "phase", "message", "fraction"} before its answer.
    Each answer: {"id": 1, "ok": true, ...render...} or {"id": 1, "ok": false, "error": "one sentence"}.
    The first line is {"id": null, "ok": true, "event": "ready", "model": ...} once the tokenizer is loaded."""
    out = ipc.Output()  # before loading anything that might print
    tok = _tokenizer(args.model, False)
    out.ready(event="ready", model=args.model)
    for req in ipc.requests(out):
        if req.get("op") == "quit":
            break
        ipc.answer(out, req.get("id"), lambda: _serve_one(tok, req, out))
    return 0


def _serve_one(tok, req: dict, out: ipc.Output | None = None) -> dict:
    from engine.data.render import render_example, render_row

    if req.get("op") == "try_rewards":
        from engine.commands.rewards import try_rewards

        rid = req.get("id")
        emit = (lambda event: out.emit({"id": rid, "event": "progress", **event})) if out is not None else None
        return try_rewards(req, emit)

    op, max_length, mode = req.get("op"), req.get("max_length"), req.get("special_token_text", "literal")
    limits = {k: req.get(k) for k in ("max_prompt_length", "max_completion_length")}
    if op == "render":
        return render_example(tok, req["example"], max_length, special_token_text=mode, **limits)
    if op == "render_row":
        return render_row(req["file"], int(req["row"]), tok, max_length, split=req.get("split", "train"),
                          special_token_text=mode, objective=req.get("objective"), **limits)
    raise TunedeckError(f"unknown request {op!r}")
