"""`tunedeck chat RUN`: ask a run's fine-tuned model (and its base) something from the terminal.

    tunedeck chat latest --prompt "My order A123 never came"            one answer, streamed
    tunedeck chat RUN --compare --prompt TEXT --json                     {"base": "...", "tuned": "..."}
    tunedeck chat RUN --checkpoint 40                                    interactive, multi-turn
    tunedeck chat --base-model demo                                      the base model alone, no run

The model runs in this process (engine.chat.ChatEngine), with the chat template the run trained with.
In the interactive chat: /compare, /tuned, /base switch who answers; /clear forgets the conversation;
/system TEXT sets the system prompt; /quit leaves; Ctrl-C stops an answer.
"""

from __future__ import annotations

from ._args import number

import argparse
import json
import sys
import threading


def register(sub) -> None:
    p = sub.add_parser("chat", help="chat with a run's fine-tuned model, beside its base model",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", default=None,
                   help="run id, unique prefix, folder or 'latest' (default: latest; none with --base-model)")
    p.add_argument("--checkpoint", type=int, default=None, metavar="N", help="use checkpoints/checkpoint-N")
    p.add_argument("--prompt", default=None, help="ask this once and exit (default: interactive chat)")
    p.add_argument("--compare", action="store_true", help="answer with the base model and the fine-tuned one")
    p.add_argument("--base-only", action="store_true", help="answer with the run's base model only")
    p.add_argument("--base-model", default=None, metavar="REF", help="chat with this model alone, no run")
    p.add_argument("--system", default=None, help="system prompt (default: the one in the run's training data)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=number, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=number, default=1.0)
    p.add_argument("--json", action="store_true", help="print one JSON object (with --prompt)")
    p.set_defaults(func=run_chat)


def _mode(args, engine) -> str:
    if args.compare:
        return "compare"
    if args.base_only or not engine.has_tuned:
        return "base"
    return "tuned"


def run_chat(args) -> int:
    from ..chat import ChatEngine, ChatError, Settings
    from ..chat_targets import training_system_prompt
    from ..runs import RunNotFound, get_run

    run_ref = None if args.base_model else (args.run or "latest")
    if args.base_model and args.run:
        raise ChatError("Give either a run or --base-model, not both.")
    if args.compare and args.base_model:
        raise ChatError("--compare needs a run with an adapter; --base-model chats with the base model alone.")
    try:
        run_id = get_run(run_ref).id if run_ref else None
    except RunNotFound as exc:
        if run_ref != "latest":
            raise
        raise RunNotFound(
            "There are no runs yet; train one first, or chat with the base model: tunedeck chat --base-model demo."
        ) from exc
    system = args.system if args.system is not None else training_system_prompt(run_id)
    settings = Settings.from_request({
        "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
        "system": system,
    })
    quiet = args.json or args.prompt is not None
    engine = ChatEngine()
    info = engine.load(run=run_id, checkpoint=args.checkpoint, model=args.base_model,
                       progress=None if quiet else (lambda m, f=None: print(m, file=sys.stderr)))
    mode = _mode(args, engine)
    if mode == "compare" and not engine.has_tuned:
        raise ChatError(f"Run {run_id} has no adapter to compare with.")
    if args.prompt is not None:
        return _one_shot(engine, info, args, mode, settings)
    return _interactive(engine, info, mode, settings, threading.Event)


def _one_shot(engine, info, args, mode, settings) -> int:
    messages = [{"role": "user", "content": args.prompt}]
    stream = not args.json and mode != "compare"
    result = engine.generate(
        messages, mode=mode, settings=settings,
        on_token=(lambda side, text: (sys.stdout.write(text), sys.stdout.flush())) if stream else None,
    )
    answers = {side: r["text"] for side, r in result["sides"].items()}
    if args.json:
        out = {**answers, "run": info["run"], "checkpoint": info["checkpoint"], "model": info["model"],
               "tokens_per_second": result["tokens_per_second"]}
        print(json.dumps(out, ensure_ascii=False))
    elif mode == "compare":
        for side in ("base", "tuned"):
            print(f"── {'base' if side == 'base' else 'fine-tuned'} ──")
            print(answers[side])
    else:
        print()
    return 0


def _interactive(engine, info, mode, settings, make_cancel) -> int:
    who = info["model"] + (f" + {info['run']} ({info['checkpoint']})" if info["run"] else "")
    print(f"Chatting with {who}; template: {info['template']}. "
          "/compare /tuned /base /clear /system TEXT /quit; Ctrl-C stops an answer.", file=sys.stderr)
    history: dict[str, list[dict]] = {"base": [], "tuned": []}
    while True:
        try:
            line = input(f"[{mode}] you> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit", "/q"):
            return 0
        if text in ("/compare", "/tuned", "/base"):
            wanted = text[1:]
            if wanted != "base" and not engine.has_tuned:
                print("No adapter is loaded; only /base is available.", file=sys.stderr)
            else:
                mode = wanted
            continue
        if text == "/clear":
            history = {"base": [], "tuned": []}
            print("(conversation cleared)", file=sys.stderr)
            continue
        if text.startswith("/system"):
            settings.system = text[len("/system"):].strip() or None
            print(f"(system prompt {'set' if settings.system else 'removed'})", file=sys.stderr)
            continue
        sides = ["base", "tuned"] if mode == "compare" else [mode]
        for side in sides:
            history[side].append({"role": "user", "content": text})
        result = _answer(engine, {s: history[s] for s in sides}, mode, settings, make_cancel)
        if result is None:
            for side in sides:
                history[side].pop()
            continue
        for side in sides:
            history[side].append({"role": "assistant", "content": result["sides"][side]["text"]})


def _answer(engine, messages, mode, settings, make_cancel):
    """Generate in a thread so Ctrl-C in the main thread can cancel it; the tuned side streams live,
    the base side (in compare mode) is printed when done."""
    cancel = make_cancel()
    box: dict = {}
    live = "tuned" if mode == "compare" else mode
    if mode == "compare":
        print("── fine-tuned ──")

    def on_token(side, text):
        if side == live:
            sys.stdout.write(text)
            sys.stdout.flush()

    def work():
        try:
            box["result"] = engine.generate(messages, mode=mode, settings=settings, on_token=on_token, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - shown to the user below
            box["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while thread.is_alive():
        try:
            thread.join(0.1)
        except KeyboardInterrupt:
            cancel.set()
    print()
    if "error" in box:
        from ..chat import describe_error

        print(f"tunedeck: {describe_error(box['error'])}", file=sys.stderr)
        return None
    result = box["result"]
    if mode == "compare":
        print("── base ──")
        print(result["sides"]["base"]["text"])
    note = " (stopped)" if result["stopped"] == "cancelled" else ""
    print(f"[{result['tokens']} tokens, {result['tokens_per_second']:.1f} tok/s{note}]", file=sys.stderr)
    return result
