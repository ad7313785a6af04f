"""Was fine-tuning worth it? Scores a run against the prompting alternatives on the user's own data.

On the validation split (the data's own, else the run's eval split) this measures:

* eval loss and perplexity of the base model and of the fine-tuned one, over exactly the tokens
  training scores (``engine.data.encode``: the assistant turns), and
* generation scores — exact match, and for structured (JSON) answers whether the answer parses
  and how many fields match — for four ways of getting answers:

  ``zero-shot``          the base model, prompted with the example as it is
  ``few-shot``           the base model with k fixed training examples shown first as earlier turns
  ``retrieval few-shot`` the base model with the k training examples most similar to the question
                         (BM25 over the user turns), i.e. retrieval-augmented prompting
  ``fine-tuned``         the run's model, prompted exactly as it was trained

The scoring is pure and lives in engine/eval_scores.py (the TUI imports it; re-exported here, so
``engine.evaluate`` is the whole evaluation API); ``evaluate_run`` does the model work and is run in
a child process by ``tunedeck eval``. Heavy libraries are imported inside functions.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import TunedeckError
from .eval_scores import (  # noqa: F401 - re-exported
    CONDITIONS,
    EVAL_FILE,
    LABELS,
    Scores,
    exact_match,
    field_matches,
    format_table,
    headline,
    is_structured,
    json_safe,
    parse_lenient,
    parse_strict,
    saved_result,
    score_answers,
    table_rows,
    values_equal,
    verdict,
)

Progress = Callable[[dict], None]


class EvalError(TunedeckError):
    pass


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------


def split_example(example: dict) -> tuple[list[dict], str] | None:
    """(prompt messages, reference answer): everything before the last assistant turn, and that
    turn's content. None for examples with nothing to answer (plain text, no assistant turn)."""
    messages = example.get("messages")
    if not messages:
        return None
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "assistant":
            if i == 0:
                return None
            prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:i]]
            return prompt, messages[i]["content"]
    return None


def query_text(prompt: list[dict]) -> str:
    """What retrieval compares: the user turns of a prompt."""
    return "\n".join(m["content"] for m in prompt if m["role"] == "user")


def with_shots(prompt: list[dict], shots: list[tuple[list[dict], str]]) -> list[dict]:
    """The prompt with worked examples as earlier turns: the system message(s) first, then each
    shot's question and answer, then the question itself."""
    system = [m for m in prompt if m["role"] == "system"]
    rest = [m for m in prompt if m["role"] != "system"]
    turns: list[dict] = []
    for shot_prompt, answer in shots:
        turns += [m for m in shot_prompt if m["role"] != "system"]
        turns.append({"role": "assistant", "content": answer})
    return system + turns + rest


def fixed_shots(pool: list[tuple[list[dict], str]], k: int, seed: int = 0) -> list[int]:
    """k training examples chosen once (seeded), shown to every question in few-shot prompting."""
    if k <= 0 or not pool:
        return []
    return sorted(random.Random(seed).sample(range(len(pool)), min(k, len(pool))))


# --------------------------------------------------------------------------------------------
# The run's data and weights
# --------------------------------------------------------------------------------------------


def run_config(config: dict, source: str = "config.yaml"):
    """The run's RunConfig, validated (a hand-edited config.yaml gets a clear sentence)."""
    from .config import RunConfig

    return RunConfig.from_dict(config, source=source)


def eval_examples(config: dict, source: str = "config.yaml") -> tuple[list[dict], list[dict], str]:
    """(train examples, evaluation examples, where the evaluation examples come from), split
    exactly as the worker split them, so the fine-tuned model never saw the evaluation rows."""
    from .data import has_validation_split
    from .worker import load_splits

    cfg = run_config(config, source)
    if cfg.eval_data or has_validation_split(cfg.data):
        where = str(cfg.eval_data) if cfg.eval_data else "validation split"
        if cfg.eval_steps == 0:  # the worker skipped evaluation, but these rows were never trained on
            cfg.eval_steps = 1
    else:
        where = f"held-out {cfg.eval_split:.0%} of the training data"
    train, held_out = load_splits(cfg)
    return train, held_out, where


# --------------------------------------------------------------------------------------------
# Model work
# --------------------------------------------------------------------------------------------


@dataclass
class _Models:
    base: Any  # callable model for base conditions (PEFT model with adapter disabled, or plain base)
    tuned: Any
    tokenizer: Any
    peft: bool
    device: Any

    def use(self, which: str):
        import contextlib

        if self.peft:
            return self.tuned, (self.tuned.disable_adapter() if which == "base" else contextlib.nullcontext())
        return (self.base if which == "base" else self.tuned), contextlib.nullcontext()


def cpu_threads(cpus: int | None = None, load: float | None = None) -> int:
    """Threads for CPU inference: the cores not already busy. Generation is thousands of small
    operations, each a sync point between torch's threads; on an oversubscribed machine every sync
    waits for a time slice (measured: 20 demo tokens took 76 s on 2 threads vs 7 s on 1 at load 14)."""
    import os

    cpus = cpus or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):
            load = 0.0
    return max(1, min(cpus, int(cpus - load + 0.5)))


def _load_models(model_ref: str, kind: str, folder: Path, say: Callable[[str], None]) -> _Models:
    import os

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not torch.cuda.is_available() and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(cpu_threads())
    from . import models
    from .data.encode import ensure_chat_template

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    say(f"Loading the base model {model_ref}…")
    base, tokenizer = models.load_model(model_ref, dtype=dtype, progress=lambda m, f: say(m))
    if (folder / "tokenizer_config.json").is_file():  # the run's tokenizer carries its chat template
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ensure_chat_template(tokenizer)
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        say(f"Loading the adapter from {folder.name}/…")
        tuned = PeftModel.from_pretrained(base, str(folder)).to(device).eval()
        return _Models(None, tuned, tokenizer, True, device)
    say(f"Loading the fine-tuned model from {folder.name}/…")
    tuned = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, trust_remote_code=False)
    return _Models(base.to(device).eval(), tuned.to(device).eval(), tokenizer, False, device)


def _context_length(models: _Models) -> int | None:
    config = (models.tuned if models.tuned is not None else models.base).config
    config = getattr(config, "get_text_config", lambda: config)()
    return getattr(config, "max_position_embeddings", None)


def fit_shots(tokenizer, prompt: list[dict], shots: list, budget: int | None) -> list:
    """As many of ``shots`` (the least relevant, i.e. last, dropped first) as fit in ``budget`` tokens."""
    shots = list(shots)
    if budget is None:
        return shots
    while shots:
        text = tokenizer.apply_chat_template(with_shots(prompt, shots), tokenize=False, add_generation_prompt=True)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= budget:
            break
        shots.pop()
    return shots


def masked_loss(models: _Models, which: str, encoded: list, *, batch_size: int, tick: Callable[[int], None]):
    """(mean loss per trained token, number of trained tokens) over pre-encoded examples."""
    import torch

    model, ctx = models.use(which)
    pad = models.tokenizer.pad_token_id
    total, count = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    with ctx, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start:start + batch_size]]
            width = max(len(e.input_ids) for e in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            att = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for row, e in enumerate(batch):
                n = len(e.input_ids)
                ids[row, :n] = torch.tensor(e.input_ids)
                att[row, :n] = 1
                labels[row, :n] = torch.tensor([t if m else -100 for t, m in zip(e.input_ids, e.trained)])
            logits = model(input_ids=ids.to(models.device), attention_mask=att.to(models.device)).logits.float()
            shift_logits = logits[:, :-1].reshape(-1, logits.size(-1))
            shift_labels = labels[:, 1:].reshape(-1).to(models.device)
            nll = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
            total += float(nll)
            count += int((shift_labels != -100).sum())
            tick(len(batch))
    return (total / count if count else float("nan")), count


def _stop_ids(tokenizer) -> list[int]:
    ids = []
    for tok in (tokenizer.eos_token, "<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        if tok:
            tid = tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
                ids.append(tid)
    return ids


def mean_prompt_tokens(tokenizer, prompts: list[list[dict]]) -> float:
    """Average tokens of the rendered prompts: what each question costs the model to read."""
    if not prompts:
        return 0.0
    total = sum(len(tokenizer(tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True),
                              add_special_tokens=False)["input_ids"]) for p in prompts)
    return round(total / len(prompts), 1)


def generate(models: _Models, which: str, prompts: list[list[dict]], *, max_new_tokens: int,
             batch_size: int, tick: Callable[[int], None]) -> list[str]:
    """Greedy answers to chat prompts (left-padded batches, shortest prompts first)."""
    import torch
    from transformers import GenerationConfig

    tok = models.tokenizer
    model, ctx = models.use(which)
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    encoded = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    stop = _stop_ids(tok)
    gen = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop or None, pad_token_id=tok.pad_token_id
    )
    answers: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    with ctx, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
            att = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                n = len(encoded[i])
                ids[row, width - n:] = torch.tensor(encoded[i])
                att[row, width - n:] = 1
            out = model.generate(
                input_ids=ids.to(models.device), attention_mask=att.to(models.device), generation_config=gen
            )
            for row, i in enumerate(idx):
                new = out[row, width:].tolist()
                cut = next((j for j, t in enumerate(new) if t in stop), len(new))
                answers[i] = tok.decode(new[:cut], skip_special_tokens=True).strip()
            tick(len(idx))
    return answers


def evaluate_run(run_ref: str, *, limit: int | None = None, k: int = 3, batch_size: int = 8,
                 max_new_tokens: int | None = None, progress: Progress | None = None, save: bool = True) -> dict:
    """Score a run against the prompting baselines; the result is also saved as ``eval.json``."""
    from .data.encode import encode
    from .retrieval import BM25
    from .runs import get_run, write_json_atomic

    emit = progress or (lambda event: None)
    say = lambda message: emit({"type": "status", "message": message})  # noqa: E731
    started = time.time()
    run = get_run(run_ref)
    config = run.config()
    if not config.get("model"):
        raise EvalError(f"{run.config_path}: the run's config has no 'model'; it cannot be evaluated.")
    weights = run.weights()
    kind, folder = weights.label, weights.path

    say("Reading the data…")
    train, held_out, source = eval_examples(config, str(run.config_path))
    if limit:
        held_out = held_out[:limit]
    if not held_out:
        raise EvalError(
            f"Run {run.id} held no examples out of training (eval_steps or eval_split is 0 in {run.config_path}), "
            "so there is nothing unseen to evaluate on; train with an eval_split or eval_data."
        )
    pool = [p for p in (split_example(e) for e in train) if p is not None]
    tasks = [p for p in (split_example(e) for e in held_out) if p is not None]
    references = [answer for _, answer in tasks]
    structured = is_structured(references)

    timings: dict[str, float] = {}
    mark = time.time()
    models = _load_models(config["model"], kind, folder, say)
    timings["load"] = round(time.time() - mark, 2)
    tok = models.tokenizer
    max_length = run_config(config, str(run.config_path)).max_length

    # Prompts for the three baselines and the fine-tuned model.
    prompts = {c: [] for c in CONDITIONS}
    shots_fixed = [pool[i] for i in fixed_shots(pool, k, seed=0)]
    index = BM25([query_text(p) for p, _ in pool]) if pool and k > 0 else None
    if max_new_tokens is None:
        longest = max((len(tok(r, add_special_tokens=False)["input_ids"]) for r in references), default=32)
        max_new_tokens = min(1024, int(longest * 1.25) + 16)
    context = _context_length(models)
    dropped = 0
    for prompt, _ in tasks:
        prompts["zero-shot"].append(prompt)
        prompts["fine-tuned"].append(prompt)
        near = index.top_k(query_text(prompt), k) if index else []
        for condition, shots in (("few-shot", shots_fixed), ("retrieval few-shot", [pool[i] for i in near])):
            fitted = fit_shots(tok, prompt, shots, context - max_new_tokens if context else None)
            dropped += len(shots) - len(fitted)
            if condition == "retrieval few-shot":
                fitted = fitted[::-1]  # the most similar example last, right before the question
            prompts[condition].append(with_shots(prompt, fitted))
    if dropped:
        say(f"{dropped} few-shot examples were left out of prompts that would not fit the model's "
            f"{context}-token context.")

    encoded = [encode(tok, e, max_length) for e in held_out]
    encoded = [e for e in encoded if e.trained_tokens]
    steps = [("loss", "base", len(encoded)), ("loss", "fine-tuned", len(encoded))]
    steps += [("generate", c, len(tasks)) for c in CONDITIONS] if tasks else []
    grand_total = sum(n for _, _, n in steps)
    done = 0

    def ticker(stage: str):
        def tick(n: int) -> None:
            nonlocal done
            done += n
            emit({"type": "progress", "stage": stage, "done": done, "total": grand_total,
                  "fraction": done / grand_total if grand_total else 1.0})
        return tick

    losses = {}
    for _, which, _ in steps[:2]:
        say(f"Eval loss of the {which} model on {len(encoded)} examples…")
        mark = time.time()
        loss, tokens = masked_loss(models, "base" if which == "base" else "tuned", encoded,
                                   batch_size=batch_size, tick=ticker(f"loss ({which})"))
        timings[f"loss ({which})"] = round(time.time() - mark, 2)
        losses[which] = {"eval_loss": loss, "perplexity": math.exp(loss) if loss < 700 else float("inf"),
                         "tokens": tokens}

    answers: dict[str, list[str]] = {}
    rows: dict[str, dict] = {}
    for condition in CONDITIONS if tasks else ():
        say(f"Generating answers: {LABELS[condition]} ({len(tasks)} questions)…")
        which = "tuned" if condition == "fine-tuned" else "base"
        mark = time.time()
        answers[condition] = generate(models, which, prompts[condition], max_new_tokens=max_new_tokens,
                                      batch_size=batch_size, tick=ticker(condition))
        timings[condition] = round(time.time() - mark, 2)
        rows[condition] = {"label": LABELS[condition],
                           **score_answers(answers[condition], references, structured=structured).to_dict(),
                           "prompt_tokens": mean_prompt_tokens(tok, prompts[condition])}
    for condition, which in (("zero-shot", "base"), ("fine-tuned", "fine-tuned")):
        rows.setdefault(condition, {"label": LABELS[condition], "n": 0})
        rows[condition].update(eval_loss=losses[which]["eval_loss"], perplexity=losses[which]["perplexity"])

    result = {
        "run": run.id,
        "model": config.get("model"),
        "data": config.get("data"),
        "method": config.get("method"),
        "weights": kind,
        "split": source,
        "n": len(held_out),
        "scored": len(tasks),
        "k": k,
        "structured": structured,
        "metric": headline({}, structured)[0],
        "loss": losses,
        "rows": [rows[c] for c in CONDITIONS if c in rows],
        "verdict": verdict(rows, structured, len(tasks)) if tasks else
                   "Only losses were measured: the data has no answers to generate (plain text).",
        "samples": [
            {"question": query_text(prompt), "reference": ref, "answers": {c: answers[c][i] for c in answers}}
            for i, (prompt, ref) in enumerate(tasks)
        ],
        "max_new_tokens": max_new_tokens,
        "shots_dropped": dropped,
        "seconds": round(time.time() - started, 1),
        "timings": timings,
        "created": round(time.time(), 3),
    }
    if save:
        write_json_atomic(run.dir / EVAL_FILE, json_safe(result))
    return result
