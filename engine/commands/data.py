"""`tunedeck data inspect|render|stats|serve`: look at training data from the command line.

  inspect FILE [--model REF]       format, rows, every bad row by line/record, warnings (+ token stats)
                                   exit 0 clean, 1 some rows bad, 2 the file is unusable
  render FILE --row N [--model]    one row through the chat template, trained tokens highlighted
  stats FILE --model REF           token length histogram, rows over --max-length, trainable tokens
  serve --model REF                a warm helper for the TUI: JSON requests on stdin, answers on stdout

``--progress`` prints JSON lines ``{"event": "progress", ...}`` while working, then the result.
"""

from __future__ import annotations

import sys

from engine import ipc

DEFAULT_MAX_LENGTH = 1024


def register(sub) -> None:
    parser = sub.add_parser("data", help="inspect, render and measure training data")
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])
    dsub = parser.add_subparsers(dest="data_command", metavar="ACTION")

    p = dsub.add_parser("inspect", help="detect the format, list bad rows by line, warnings (and token stats with --model)")
    _common(p)
    p.add_argument("--model", default=None, help="also compute token statistics with this model's tokenizer")
    p.add_argument("--max-errors", type=int, default=1000, help="list at most this many bad rows (default 1000)")
    p.set_defaults(func=cmd_inspect)

    p = dsub.add_parser("render", help="show one row as tokens, trained tokens highlighted")
    _common(p)
    p.add_argument("--row", type=int, required=True, help="row number, counted from 1")
    p.add_argument("--model", default="demo", help="model whose tokenizer and chat template to use (default demo)")
    p.set_defaults(func=cmd_render)

    p = dsub.add_parser("stats", help="token length histogram, rows over max length, trainable tokens")
    _common(p)
    p.add_argument("--model", default="demo", help="model whose tokenizer to use (default demo)")
    p.add_argument("--workers", type=int, default=None, help="processes for big JSON Lines files (default: CPU count)")
    p.set_defaults(func=cmd_stats)

    p = dsub.add_parser("serve", help="warm helper for the app: JSON lines in, JSON lines out")
    p.add_argument("--model", default="demo")
    p.set_defaults(func=cmd_serve)


def _common(p) -> None:
    p.add_argument("file", metavar="FILE", help="a .jsonl/.json/.csv/.tsv/.parquet file, a save_to_disk folder, or demo")
    p.add_argument("--split", default="train", help="split of a saved dataset folder or of demo (default train)")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, help=f"tokens per example (default {DEFAULT_MAX_LENGTH})")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--progress", action="store_true", help="print JSON-lines progress events while working")


def _emit(obj: dict) -> None:
    ipc.write_line(sys.stdout, obj)


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
    from engine.data.dataset import inspect
    from engine.data.hub import open_source

    source = open_source(args.file, split=args.split)
    report = inspect(source, progress=_progress_printer("rows", args.progress), max_errors=args.max_errors)
    if args.model:
        from engine.data.stats import token_stats

        tok = _tokenizer(args.model, args.progress)
        report.stats = token_stats(
            open_source(args.file, split=args.split), tok, args.max_length, progress=_progress_printer("tokens", args.progress)
        )
        report.stats["model"] = args.model
        _stats_warnings(report.stats, report.warnings, source.unit)
    code = 1 if report.error_count else 0
    if args.json or args.progress:
        out = report.as_json()
        if args.progress:
            out["event"] = "report"
        _emit(out)
        return code
    _print_report(report)
    return code


def _stats_warnings(stats: dict, warnings: list[str], unit: str) -> None:
    if stats.get("over_max_length"):
        n = stats["over_max_length"]
        where = stats["over_max_length_where"].get(unit, [])
        warnings.append(
            f"{n} example{'s are' if n > 1 else ' is'} longer than max_length {stats['max_length']} and will be cut"
            + (f" ({unit} {', '.join(map(str, where[:5]))}{', ...' if n > 5 else ''})" if where else "")
            + "."
        )
    if stats.get("nothing_trained"):
        n = stats["nothing_trained"]
        warnings.append(
            f"{n} example{'s have' if n > 1 else ' has'} no trained token left after the cut at {stats['max_length']}; "
            "raise max_length or shorten the prompts."
        )


def _print_report(report) -> None:
    from engine.data.formats import DESCRIPTIONS

    out = sys.stdout
    fmt = report.format or "unknown"
    out.write(f"{report.display}: {fmt} — {DESCRIPTIONS.get(fmt, 'no known format')}\n")
    out.write(f"{report.rows} rows: {report.valid_rows} usable, {report.error_count} bad\n")
    for problem in report.errors:
        out.write(f"  {report.unit} {problem.where}: {problem.message}\n")
    if report.error_count > len(report.errors):
        out.write(f"  ... and {report.error_count - len(report.errors)} more\n")
    for w in report.warnings:
        out.write(f"warning: {w}\n")
    if report.stats:
        _print_stats(report.stats)


def _print_stats(s: dict) -> None:
    out = sys.stdout
    L = s["length"]
    out.write(
        f"tokens per example: min {L['min']}, median {L['p50']}, p90 {L['p90']}, max {L['max']}, mean {L['mean']}\n"
        f"over max_length {s['max_length']}: {s['over_max_length']} of {s['examples']}\n"
        f"tokens: {s['tokens']:,} in all, {s['trainable_tokens']:,} trained\n"
    )
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

    row_example(args.file, args.row, split=args.split)  # a bad row fails before the model loads
    tok = _tokenizer(args.model, args.progress)
    out = render_row(args.file, args.row, tok, args.max_length, split=args.split)
    if args.json or args.progress:
        _emit(out)
        return 0
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    text = Text()
    for piece, trained in zip(out["tokens"], out["trained"]):
        text.append(piece, style="bold black on green" if trained else "dim")
    console.print(text)
    console.print(
        f"\n{out['length']} tokens, {out['trained_tokens']} trained (highlighted)"
        + (f"; cut from {out['full_length']} at max_length {args.max_length}" if out["truncated"] else "")
    )
    return 0


# --- stats ---------------------------------------------------------------------------------------


def cmd_stats(args) -> int:
    from engine.data.hub import open_source
    from engine.data.stats import token_stats

    source = open_source(args.file, split=args.split)  # a missing file fails before the model loads
    tok = _tokenizer(args.model, args.progress)
    partial = (lambda s: _emit({"event": "partial", **s})) if args.progress else None
    stats = token_stats(
        source, tok, args.max_length, progress=_progress_printer("tokens", args.progress),
        workers=args.workers, partial=partial,
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
    {"id": 1, "op": "render", "example": {...}, "max_length": 1024}
    {"id": 2, "op": "render_row", "file": "data.jsonl", "row": 3, "max_length": 1024}
    Each answer: {"id": 1, "ok": true, ...render...} or {"id": 1, "ok": false, "error": "one sentence"}.
    The first line is {"id": null, "ok": true, "event": "ready", "model": ...} once the tokenizer is loaded."""
    out = ipc.Output()  # before loading anything that might print
    tok = _tokenizer(args.model, False)
    out.ready(event="ready", model=args.model)
    for req in ipc.requests(out):
        if req.get("op") == "quit":
            break
        ipc.answer(out, req.get("id"), lambda: _serve_one(tok, req))
    return 0


def _serve_one(tok, req: dict) -> dict:
    from engine.data.render import render_example, render_row
    from engine.errors import TunedeckError

    op, max_length = req.get("op"), req.get("max_length")
    if op == "render":
        return render_example(tok, req["example"], max_length)
    if op == "render_row":
        return render_row(req["file"], int(req["row"]), tok, max_length, split=req.get("split", "train"))
    raise TunedeckError(f"unknown request {op!r}")
