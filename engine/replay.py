"""Replay against forgetting: general examples answered by the base model itself, mixed into training.

``replay: 0.1`` in a run's config makes 10 % of the training rows general examples: prompts from
Tunedeck's own set (``builtin/general_prompts.json``, never the probe's, so the probe stays honest)
with the *base model's* greedy answers, so training keeps pulling the model toward what it did before
while it learns the task. The answers are generated once, before training, by the worker with the
model it is about to train (adapter off), and cached in the run folder as ``replay.jsonl``: a resumed
run reuses them rather than asking again. SFT only (RunConfig refuses it for DPO/KTO).
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Callable

from .general_probe import replay_prompts

REPLAY_FILE = "replay.jsonl"
REPLAY_MAX_NEW_TOKENS = 80
REPLAY_BATCH = 64  # on a CPU one wide batch costs little more than a narrow one; on a GPU it is nothing


def replay_count(task_rows: int, share: float, available: int | None = None) -> tuple[int, int]:
    """(rows asked for, rows there will be): ``share`` of the training rows once mixed, i.e.
    share / (1 - share) x the task rows (0.1 with 900 task rows: 100), at most ``available``."""
    if share <= 0 or task_rows <= 0:
        return 0, 0
    wanted = max(1, round(task_rows * share / (1 - share)))
    available = len(replay_prompts()) if available is None else available
    return wanted, min(wanted, available)


def chosen_prompts(n: int, seed: int) -> list[str]:
    """``n`` of the replay prompts, picked by ``seed`` (all of them, shuffled, when n is large)."""
    prompts = list(replay_prompts())
    random.Random(seed).shuffle(prompts)
    return prompts[:n]


def finished(answer: str, cut: bool) -> str:
    """An answer the length cap cut off, back to its last whole sentence (as it is when it has none):
    training on half a sentence that ends with the end-of-turn token would teach the model to stop
    mid-thought."""
    answer = answer.strip()
    if not cut:
        return answer
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", answer)]
    return answer[:ends[-1]].strip() if ends else answer


def read_cache(run_dir: Path) -> list[dict] | None:
    """The cached replay examples of a run, or None when there are none (or the file is unreadable)."""
    path = Path(run_dir) / REPLAY_FILE
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    ok = all(isinstance(r, dict) and isinstance(r.get("messages"), list) for r in rows)
    return rows if rows and ok else None


def write_cache(run_dir: Path, examples: list[dict]) -> Path:
    path = Path(run_dir) / REPLAY_FILE
    tmp = path.with_name(f".{REPLAY_FILE}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples), encoding="utf-8")
    os.replace(tmp, path)
    return path


def generate_examples(model, tokenizer, prompts: list[str], *, batch_size: int = REPLAY_BATCH,
                      max_new_tokens: int = REPLAY_MAX_NEW_TOKENS,
                      tick: Callable[[int], None] = lambda n: None) -> list[dict]:
    """The base model's greedy answers to ``prompts`` as chat examples (the adapter, if ``model`` has
    one, is off), through engine.evaluate's generation; empty answers are left out."""
    import torch

    from .evaluate import _Models, generate

    peft = hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
    device = next(model.parameters()).device
    models = _Models(base=None if peft else model, tuned=model if peft else None, tokenizer=tokenizer,
                     peft=peft, device=device)
    pad = tokenizer.pad_token
    if pad is None:
        tokenizer.pad_token = tokenizer.eos_token
    was_training = model.training
    model.eval()
    try:
        messages = [[{"role": "user", "content": p}] for p in prompts]
        lengths: list[int] = []
        with torch.no_grad():
            answers = generate(models, "base", messages, max_new_tokens=max_new_tokens, batch_size=batch_size,
                               tick=tick, lengths=lengths)
    finally:
        model.train(was_training)
        if pad is None:
            tokenizer.pad_token = None
    out = []
    for prompt, answer, n in zip(prompts, answers, lengths):
        answer = finished(answer, cut=n >= max_new_tokens)
        if answer:
            out.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
    return out


def replay_examples(run_dir: Path, model, tokenizer, *, task_rows: int, share: float, seed: int,
                    say: Callable[[str], None] = lambda m: None, batch_size: int = REPLAY_BATCH,
                    write: bool = True) -> tuple[list[dict], dict]:
    """The replay examples for a run with ``task_rows`` training rows: read from ``replay.jsonl`` in the
    run folder when an earlier start wrote it, else generated now by the base model and cached there
    (``write``: False for the other processes of a multi-process run, which only read it).
    Returns (examples, info): info has share, wanted, asked (prompts asked), rows (examples), cached
    (True: read from the file); ``describe`` words it once the rows are tokenised."""
    wanted, n = replay_count(task_rows, share)
    info = {"share": share, "wanted": wanted, "asked": n, "rows": 0, "cached": False, "task_rows": task_rows}
    if n == 0:
        return [], info
    cached = read_cache(run_dir)
    if cached is not None:
        examples, info["cached"] = cached[:wanted], True
    else:
        say(f"Replay: the base model answers {n} general prompts (once; cached in {REPLAY_FILE})…")
        examples = generate_examples(model, tokenizer, chosen_prompts(n, seed), batch_size=batch_size)
        if write:
            write_cache(run_dir, examples)
    info["rows"] = len(examples)
    return examples, info


def describe(info: dict, mixed: int) -> str:
    """The log line for the replay of a run: ``mixed`` rows went into training (tokenised, with a
    token to train), out of ``info`` from ``replay_examples``."""
    task_rows = info["task_rows"]
    message = (f"Replay: {mixed} general examples answered by the base model (cached in {REPLAY_FILE}"
               + ("; reused, not generated again" if info["cached"] else "") + f"), "
               f"{mixed / max(task_rows + mixed, 1):.0%} of the {task_rows + mixed} training rows")
    if info["asked"] < info["wanted"]:
        message += (f"; replay {info['share']:g} asked for {info['wanted']}, but Tunedeck has "
                    f"{len(replay_prompts())} general prompts")
    if info["rows"] < info["asked"] and not info["cached"]:
        message += f"; {info['asked'] - info['rows']} answers were empty and were left out"
    if mixed < info["rows"]:
        message += f"; {info['rows'] - mixed} kept no answer token within max_length and were left out"
    return message + "."
