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

A preference run (objective dpo or kto) is judged differently (``evaluate_preference``): on held-out
pairs, how often the tuned model prefers the chosen answer (log-probability margin over the answer
tokens the one mask marks) against the base model (and the init_from model it started from), its
reward accuracy against its reference as DPO defines it, and side-by-side generations of the base
and the tuned model for a few held-out prompts.

The scoring is pure and lives in engine/eval_scores.py (the TUI imports it; re-exported here, so
``engine.evaluate`` is the whole evaluation API); ``evaluate_run`` does the model work and is run in
a child process by ``tunedeck eval``. Heavy libraries are imported inside functions.
"""

from __future__ import annotations

import json
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
    PREFERENCE,
    PREFERENCE_LABELS,
    Scores,
    exact_match,
    field_matches,
    format_table,
    headline,
    is_structured,
    json_safe,
    label_scores,
    pair_scores,
    parse_lenient,
    preference_verdict,
    reward_scores,
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


def eval_examples(config: dict, source: str = "config.yaml", *, split: str | None = None
                  ) -> tuple[list[dict], list[dict], str]:
    """(train examples, evaluation examples, which split they are), split exactly as the worker split
    them, so the fine-tuned model never saw the evaluation rows. ``split``: "test" or "validation";
    None: the test set when the run kept one apart (no training decision saw it), else validation."""
    from .data import has_validation_split
    from .errors import TunedeckError
    from .worker import split_examples

    cfg = run_config(config, source)
    if split not in (None, "test", "validation"):
        raise TunedeckError(f"--split must be test or validation, got {split!r}.")
    has_test = bool(cfg.test_data) or cfg.test_split > 0
    if split == "test" and not has_test:
        raise TunedeckError("This run kept no test set apart (test_split and test_data are unset in "
                            f"{source}); evaluate on --split validation, or train with test_split: 0.1.")
    if split == "test" or (split is None and has_test):
        train, _, test = split_examples(cfg)
        where = (f"test set {cfg.test_data}" if cfg.test_data
                 else f"test set (held-out {cfg.test_split:.0%} of the data, never trained or chosen on)")
        return train, test, where
    validation_only = bool(cfg.eval_data or has_validation_split(cfg.data))
    if validation_only:
        where = str(cfg.eval_data) if cfg.eval_data else "validation split"
    else:
        where = f"held-out {cfg.eval_split:.0%} of the training data"
    # a separate validation set was never trained on, even if the worker skipped evaluating it
    train, held_out, _ = split_examples(cfg, with_eval=True if validation_only else None)
    if held_out and cfg.keep == "best" and cfg.eval_steps:
        where += " (it also chose the best weights: keep a test_split for an unbiased figure)"
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
            if which == "start":  # the adapter a run started from (init_from), loaded beside its own
                return self.tuned, _active_adapter(self.tuned, "start")
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
             batch_size: int, tick: Callable[[int], None], lengths: list[int] | None = None) -> list[str]:
    """Greedy answers to chat prompts (left-padded batches, shortest prompts first). ``lengths``, when
    given, is filled with each answer's number of generated tokens (max_new_tokens: cut off)."""
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
    counts = [0] * len(prompts)
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
                counts[i] = cut
            tick(len(idx))
    if lengths is not None:
        lengths[:] = counts
    return answers


# --------------------------------------------------------------------------------------------
# General ability (the forgetting probe)
# --------------------------------------------------------------------------------------------


@dataclass
class _Tokens:
    """A stretch of plain text to score every token of (``masked_loss`` reads these two fields)."""

    input_ids: list[int]
    trained: list[bool]


def passage_chunks(tokenizer, text: str, width: int) -> list[_Tokens]:
    """The passage's tokens in pieces of at most ``width`` (each piece's first token is context only)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [_Tokens(ids[i:i + width], [True] * len(ids[i:i + width])) for i in range(0, len(ids), width)
            if len(ids[i:i + width]) > 1]


def probe_steps(models: _Models) -> int:
    """Progress units the probe adds: passage pieces and prompts, for each of the two models."""
    from .general_probe import load_probe

    probe = load_probe()
    chunks = passage_chunks(models.tokenizer, probe["passage"], min(512, _context_length(models) or 512))
    return 2 * (len(chunks) + len(probe["prompts"]))


def _probe_cache_file(models: _Models, model_ref: str, texts: list[str], budget: int, batches: tuple) -> Path:
    """Where the base model's probe results are cached: keyed by everything they depend on (the base
    weights' fingerprint, dtype and device, the rendered prompts and passage, the answer length, the
    batch sizes and the library versions), so a cached entry is only reused for the same computation."""
    import hashlib

    import torch
    import transformers

    from .paths import cache_dir

    base = models.base if not models.peft else models.tuned.get_base_model()
    named = [(n, p) for n, p in base.named_parameters() if "lora_" not in n]
    with torch.no_grad():
        fingerprint = [(n, tuple(p.shape), str(p.dtype), float(p.detach().double().sum()))
                       for n, p in named[:2] + named[-2:]]
    key = json.dumps({"model": model_ref, "weights": fingerprint, "device": models.device.type, "texts": texts,
                      "budget": budget, "batches": batches, "torch": torch.__version__, "transformers": transformers.__version__},
                     sort_keys=True)
    return cache_dir() / "probe" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def general_ability(models: _Models, *, references: list[str], batch_size: int = 8,
                    tick: Callable[[int], None] = lambda n: None, say: Callable[[str], None] = lambda m: None,
                    replay: float = 0.0, max_new_tokens: int | None = None, model_ref: str | None = None) -> dict:
    """The forgetting probe (engine.general_probe): perplexity of the base and of the tuned model on a
    passage of general text, and their greedy answers to the probe's everyday prompts, scored; the
    verdict says whether general ability was kept. ``references``: the task's answers (to recognise
    general answers given in the trained format). With ``model_ref`` the base model's results are
    cached (engine.paths.cache_dir()/probe), so evaluating a second run of the same base costs half."""
    from .eval_scores import is_structured
    from .general_probe import PROBE_MAX_NEW_TOKENS, load_probe, probe_messages, probe_row, probe_verdict, trained_format

    started = time.time()
    probe = load_probe()
    tok = models.tokenizer
    chunks = passage_chunks(tok, probe["passage"], min(512, _context_length(models) or 512))
    prompts = probe_messages(probe)
    looks_trained = trained_format(references)
    format_name = "the task's JSON format" if looks_trained and is_structured(references) else "the trained format"
    max_new_tokens = max_new_tokens or PROBE_MAX_NEW_TOKENS
    cache = None
    if model_ref:
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        cache = _probe_cache_file(models, model_ref, texts + [probe["passage"]], max_new_tokens,
                                  (batch_size, max(batch_size, len(prompts))))
    cached = None
    try:
        cached = json.loads(cache.read_text(encoding="utf-8")) if cache is not None and cache.is_file() else None
    except (OSError, ValueError):
        cached = None
    rows, answers = [], {}
    for which, label in (("base", "base model"), ("tuned", "fine-tuned")):
        if which == "base" and cached and len(cached.get("answers", ())) == len(prompts):
            loss, answers[which] = cached["loss"], cached["answers"]
            tick(len(chunks) + len(prompts))
        else:
            say(f"General ability probe: the {label} on general text and {len(prompts)} everyday prompts…")
            loss, _ = masked_loss(models, which, chunks, batch_size=batch_size, tick=tick)
            # one batch for all the prompts: on a CPU a wide batch costs little more than a narrow one
            # (the prompts, with the chat template's system turn, are most of the cost)
            answers[which] = generate(models, which, prompts, max_new_tokens=max_new_tokens,
                                      batch_size=max(batch_size, len(prompts)), tick=tick)
            if which == "base" and cache is not None:
                try:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    cache.write_text(json.dumps({"loss": loss, "answers": answers[which]}), encoding="utf-8")
                except OSError:
                    pass  # a cache not written costs time next time, nothing else
        rows.append(probe_row(label, loss, answers[which], probe, looks_trained))
    state, verdict_text = probe_verdict(rows[0], rows[1], replay=replay, format_name=format_name)
    return {
        "n_prompts": len(prompts),
        "passage_words": len(probe["passage"].split()),
        "passage_tokens": sum(len(c.input_ids) for c in chunks),
        "max_new_tokens": max_new_tokens,
        "base_cached": bool(cached),
        "rows": rows,
        "state": state,
        "verdict": verdict_text,
        "samples": [{"prompt": p["prompt"], "base": b, "fine-tuned": t}
                    for p, b, t in zip(probe["prompts"], answers["base"], answers["tuned"])],
        "seconds": round(time.time() - started, 2),
    }


def evaluate_run(run_ref: str, *, limit: int | None = None, k: int = 3, batch_size: int = 8,
                 max_new_tokens: int | None = None, progress: Progress | None = None, save: bool = True,
                 samples: int = 5, split: str | None = None, probe: bool = True) -> dict:
    """Score a run against the prompting baselines (a preference run: ``evaluate_preference``, with
    ``samples`` side-by-side generations); with ``probe``, also the general-ability probe, base vs
    tuned (``general_ability``: did the model forget how to do everything else?). The result is also
    saved as ``eval.json``."""
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
    if config.get("objective") == "grpo":
        return evaluate_rewards(run, weights, limit=limit, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                samples=samples, progress=progress, save=save, split=split, probe=probe)
    if config.get("objective") in ("dpo", "kto"):
        return evaluate_preference(run, weights, limit=limit, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                   samples=samples, progress=progress, save=save, split=split, probe=probe)

    say("Reading the data…")
    train, held_out, source = eval_examples(config, str(run.config_path), split=split)
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
    if probe:
        steps.append(("probe", "general ability", probe_steps(models)))
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
    general = None
    if probe:
        general = general_ability(models, references=references, batch_size=batch_size,
                                  tick=ticker("general ability"), say=say, replay=_replay_share(config),
                                  model_ref=config["model"])
        timings["general ability"] = general["seconds"]

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
        "general": general,
        "seconds": round(time.time() - started, 1),
        "timings": timings,
        "created": round(time.time(), 3),
    }
    if save:
        write_json_atomic(run.dir / EVAL_FILE, json_safe(result))
    return result


# --------------------------------------------------------------------------------------------
# Preference runs
# --------------------------------------------------------------------------------------------


def sequence_logps(models: _Models, which: str, encoded: list, *, batch_size: int,
                   tick: Callable[[int], None]) -> list[float]:
    """The summed log-probability of the trained tokens (the one mask) of each encoded sequence, under
    ``which`` model: "base" (adapter disabled), "start" (the init_from adapter) or "tuned"."""
    import torch

    model, ctx = models.use(which if which in ("base", "start") else "tuned")
    pad = models.tokenizer.pad_token_id
    out = [0.0] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    with ctx, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encoded[i].input_ids) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            att = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.bool)
            for row, i in enumerate(idx):
                e = encoded[i]
                ids[row, :len(e.input_ids)] = torch.tensor(e.input_ids)
                att[row, :len(e.input_ids)] = 1
                mask[row, :len(e.trained)] = torch.tensor(e.trained)
            logits = model(input_ids=ids.to(models.device), attention_mask=att.to(models.device)).logits.float()
            logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(models.device))[..., 0]
            sums = (logps * mask[:, 1:].to(models.device)).sum(-1)
            for row, i in enumerate(idx):
                out[i] = float(sums[row])
            tick(len(idx))
    return out


class _active_adapter:
    """Use another adapter of a PEFT model for a while (the init_from adapter loaded as "start")."""

    def __init__(self, model, name: str):
        self.model, self.name = model, name

    def __enter__(self):
        self.previous = self.model.active_adapter
        self.model.set_adapter(self.name)
        return self.model

    def __exit__(self, *exc):
        self.model.set_adapter(self.previous)
        return False


def _start_adapter(run, cfg) -> tuple[Path | None, str | None]:
    """The adapter an init_from run started from (as its start event recorded it), and its run id."""
    if not cfg.init_from:
        return None, None
    for event in run.events():
        info = event.get("init_from") if event.get("type") == "start" else None
        if isinstance(info, dict) and Path(str(info.get("path"))).is_dir():
            return Path(info["path"]), info.get("run")
    from .worker import resolve_init_from

    path, info = resolve_init_from(cfg)
    return path, info["run"]


def evaluate_preference(run, weights, *, limit: int | None = None, batch_size: int = 8,
                        max_new_tokens: int | None = None, samples: int = 5, progress: Progress | None = None,
                        save: bool = True, split: str | None = None, probe: bool = True) -> dict:
    """Score a DPO/KTO run on held-out pairs (or labelled answers): log-probabilities of the chosen and
    the rejected answers under the base model, the model it started from (init_from) and the tuned
    one; DPO's reward accuracy against the reference; greedy answers side by side for ``samples``
    held-out prompts. Saved as ``eval.json`` (``"kind": "preference"``)."""
    from .data import formats
    from .data.encode import encode_sides
    from .runs import write_json_atomic

    emit = progress or (lambda event: None)
    say = lambda message: emit({"type": "status", "message": message})  # noqa: E731
    started = time.time()
    config = run.config()
    cfg = run_config(config, str(run.config_path))
    say("Reading the data…")
    _, held_out, source = eval_examples(config, str(run.config_path), split=split)
    if limit:
        held_out = held_out[:limit]
    if not held_out:
        raise EvalError(
            f"Run {run.id} held no examples out of training (eval_steps or eval_split is 0 in {run.config_path}), "
            "so there is nothing unseen to evaluate on; train with an eval_split or eval_data.")
    pairs = [e for e in held_out if formats.is_pair(e)]
    labelled = [a for e in held_out if not formats.is_pair(e) for a in formats.unpair(e)]

    timings: dict[str, float] = {}
    mark = time.time()
    models = _load_models(config["model"], weights.label, weights.path, say)
    start_path, start_run = _start_adapter(run, cfg) if models.peft else (None, None)
    if start_path is not None:
        say(f"Loading the adapter the run started from ({start_run})…")
        models.tuned.load_adapter(str(start_path), adapter_name="start")
        models.tuned.set_adapter("default")
    timings["load"] = round(time.time() - mark, 2)
    tok = models.tokenizer
    conditions = ["base"] + (["start"] if start_path is not None else []) + ["fine-tuned"]
    reference = "start" if start_path is not None else "base"
    limits = {"max_prompt_length": cfg.max_prompt_length, "max_completion_length": cfg.max_completion_length,
              "special_token_text": cfg.special_token_text}
    if pairs:
        sides = [encode_sides(tok, e, cfg.max_length, **limits) for e in pairs]
        chosen, rejected = [s[0] for s in sides], [s[1] for s in sides]
        sequences = chosen + rejected
    else:
        sequences = [encode_sides(tok, e, cfg.max_length, **limits)[0] for e in labelled]
    shown = (pairs or labelled)[:max(0, samples)]
    total = len(sequences) * len(conditions) + len(shown) * len(conditions) + (probe_steps(models) if probe else 0)
    done = 0

    def tick(stage: str):
        def add(n: int) -> None:
            nonlocal done
            done += n
            emit({"type": "progress", "stage": stage, "done": done, "total": total,
                  "fraction": done / total if total else 1.0})
        return add

    logps: dict[str, list[float]] = {}
    for condition in conditions:
        which = {"fine-tuned": "tuned"}.get(condition, condition)
        say(f"Log-probabilities under the {PREFERENCE_LABELS[condition]} ({len(sequences)} answers)…")
        mark = time.time()
        logps[condition] = sequence_logps(models, which, sequences, batch_size=batch_size,
                                          tick=tick(f"log-probabilities ({condition})"))
        timings[f"logps ({condition})"] = round(time.time() - mark, 2)

    rows = []
    result_scores: dict = {}
    if pairs:
        n = len(pairs)
        ntok_c = [e.trained_tokens for e in chosen]
        ntok_r = [e.trained_tokens for e in rejected]
        for condition in conditions:
            values = logps[condition]
            row = {"condition": condition, "label": PREFERENCE_LABELS[condition],
                   **pair_scores(values[:n], values[n:], ntok_c, ntok_r)}
            if condition == "fine-tuned":  # the rewards of the trained model, against its reference
                ref = logps[reference]
                row.update(reward_scores(values[:n], values[n:], ref[:n], ref[n:], cfg.beta))
            rows.append(row)
        tuned = next(r for r in rows if r["condition"] == "fine-tuned")
        result_scores = {k: tuned.get(k) for k in ("reward_accuracy", "reward_margin", "reward_chosen",
                                                   "reward_rejected")}
    else:
        labels = [a["label"] for a in labelled]
        for condition in conditions:
            row = {"condition": condition, "label": PREFERENCE_LABELS[condition], "n": len(labels),
                   "mean_logp_good": _avg(v for v, g in zip(logps[condition], labels) if g),
                   "mean_logp_bad": _avg(v for v, g in zip(logps[condition], labels) if not g)}
            if condition == "fine-tuned":
                row.update(label_scores(logps[condition], logps[reference], labels, cfg.beta))
            rows.append(row)
        tuned = next(r for r in rows if r["condition"] == "fine-tuned")
        result_scores = {k: tuned.get(k) for k in ("label_accuracy", "reward_good", "reward_bad")}

    # side by side: greedy answers of each model to a few held-out prompts
    prompts = [[{k: v for k, v in m.items() if k != "weight"} for m in e["prompt"]] for e in shown]
    wanted = [(e["chosen"] if formats.is_pair(e) else e["completion"])[-1]["content"] for e in shown]
    if max_new_tokens is None:
        longest = max((len(tok(r, add_special_tokens=False)["input_ids"]) for r in wanted), default=32)
        max_new_tokens = min(512, int(longest * 1.5) + 16)
    answers: dict[str, list[str]] = {}
    for condition in conditions if shown else ():
        which = {"fine-tuned": "tuned"}.get(condition, condition)
        say(f"Generating answers: {PREFERENCE_LABELS[condition]} ({len(shown)} prompts)…")
        mark = time.time()
        answers[condition] = generate(models, which, prompts, max_new_tokens=max_new_tokens,
                                      batch_size=batch_size, tick=tick(f"generate ({condition})"))
        timings[f"generate ({condition})"] = round(time.time() - mark, 2)
    good = [formats.is_pair(e) or e["label"] for e in shown]
    refs = [w for w, g in zip(wanted, good) if g]
    structured = is_structured(refs)
    generation = {"n": len(refs), "structured": structured, "rows": {
        c: score_answers([a for a, g in zip(answers[c], good) if g], refs, structured=structured).to_dict()
        for c in answers}} if refs else {}
    general = None
    if probe:
        task_answers = [(e["chosen"] if formats.is_pair(e) else e["completion"])[-1]["content"]
                        for e in (pairs or [a for a in labelled if a["label"]])]
        general = general_ability(models, references=task_answers, batch_size=batch_size,
                                  tick=tick("general ability"), say=say, model_ref=config["model"])
        timings["general ability"] = general["seconds"]

    result = {
        "kind": PREFERENCE,
        "objective": cfg.objective,
        "run": run.id,
        "model": config.get("model"),
        "data": config.get("data"),
        "method": config.get("method"),
        "weights": weights.label,
        "split": source,
        "n": len(held_out),
        "scored": len(pairs) if pairs else len(labelled),
        "pairs": bool(pairs),
        "k": None,
        "beta": cfg.beta,
        "loss_type": cfg.loss,
        "reference": reference,
        "init_from": start_run,
        "rows": rows,
        **result_scores,
        "generation": generation,
        "general": general,
        "samples": [{"question": query_text(p), "prompt": p,
                     **({"chosen": e["chosen"][-1]["content"], "rejected": e["rejected"][-1]["content"]}
                        if formats.is_pair(e) else {"completion": e["completion"][-1]["content"], "label": e["label"]}),
                     "answers": {c: answers[c][i] for c in answers}}
                    for i, (p, e) in enumerate(zip(prompts, shown))],
        "max_new_tokens": max_new_tokens,
        "seconds": round(time.time() - started, 1),
        "timings": timings,
        "created": round(time.time(), 3),
    }
    result["verdict"] = preference_verdict(result)
    if save:
        write_json_atomic(run.dir / EVAL_FILE, json_safe(result))
    return result


# --------------------------------------------------------------------------------------------
# GRPO runs
# --------------------------------------------------------------------------------------------


def evaluate_rewards(run, weights, *, limit: int | None = None, batch_size: int = 8, max_new_tokens: int | None = None,
                     samples: int = 5, progress: Progress | None = None, save: bool = True, split: str | None = None,
                     probe: bool = True) -> dict:
    """Score a GRPO run with its own reward functions (engine.rewards, the reward_file's too) on greedy
    answers of the base and the tuned model to held-out prompts: each reward's mean, the total and the
    share of answers with full marks, base vs tuned. Saved as ``eval.json`` (``"kind": "rewards"``)."""
    from .eval_scores import REWARD_LABELS, REWARDS, reward_row, rewards_verdict
    from .rewards import build, prompt_text, rewards_text
    from .runs import write_json_atomic

    emit = progress or (lambda event: None)
    say = lambda message: emit({"type": "status", "message": message})  # noqa: E731
    started = time.time()
    config = run.config()
    cfg = run_config(config, str(run.config_path))
    rewards = build(cfg.rewards, cfg.reward_file)
    say("Reading the data…")
    _, held_out, source = eval_examples(config, str(run.config_path), split=split)
    if limit:
        held_out = held_out[:limit]
    if not held_out:
        raise EvalError(
            f"Run {run.id} held no prompts out of training (eval_steps or eval_split is 0 in {run.config_path}), "
            "so there is nothing unseen to evaluate on; train with an eval_split or eval_data.")
    prompts = [e["prompt"] for e in held_out]
    references = [e.get("reference") for e in held_out]
    questions = [prompt_text(p) for p in prompts]
    timings: dict[str, float] = {}
    mark = time.time()
    models = _load_models(config["model"], weights.label, weights.path, say)
    start_path, start_run = _start_adapter(run, cfg) if models.peft else (None, None)
    if start_path is not None:
        say(f"Loading the adapter the run started from ({start_run})…")
        models.tuned.load_adapter(str(start_path), adapter_name="start")
        models.tuned.set_adapter("default")
    timings["load"] = round(time.time() - mark, 2)
    conditions = ["base"] + (["start"] if start_path is not None else []) + ["fine-tuned"]
    max_new_tokens = max_new_tokens or cfg.max_completion_length
    total = len(prompts) * len(conditions) + (probe_steps(models) if probe else 0)
    done = 0

    def tick(stage: str):
        def add(n: int) -> None:
            nonlocal done
            done += n
            emit({"type": "progress", "stage": stage, "done": done, "total": total,
                  "fraction": done / total if total else 1.0})
        return add

    names = [r.__name__ for r in rewards]
    answers: dict[str, list[str]] = {}
    rows = []
    for condition in conditions:
        which = {"fine-tuned": "tuned"}.get(condition, condition)
        say(f"Generating answers: {REWARD_LABELS[condition]} ({len(prompts)} prompts)…")
        mark = time.time()
        answers[condition] = generate(models, which, prompts, max_new_tokens=max_new_tokens,
                                      batch_size=batch_size, tick=tick(f"generate ({condition})"))
        timings[f"generate ({condition})"] = round(time.time() - mark, 2)
        columns = [r.score(answers[condition], questions, references) for r in rewards]
        scores = [[col[i] for col in columns] for i in range(len(prompts))]
        rows.append({"condition": condition, "label": REWARD_LABELS[condition],
                     **reward_row(names, [r.weight for r in rewards], [r.high for r in rewards], scores)})
    general = None
    if probe:
        general = general_ability(models, references=[r for r in references if r] or questions, batch_size=batch_size,
                                  tick=tick("general ability"), say=say, model_ref=config["model"])
        timings["general ability"] = general["seconds"]
    result = {
        "kind": REWARDS,
        "objective": cfg.objective,
        "run": run.id,
        "model": config.get("model"),
        "data": config.get("data"),
        "method": config.get("method"),
        "weights": weights.label,
        "split": source,
        "n": len(held_out),
        "scored": len(prompts),
        "k": None,
        "rewards": names,
        "reward_weights": {r.__name__: r.weight for r in rewards},
        "rewards_text": rewards_text(cfg.rewards),
        "reference": "start" if start_path is not None else "base",
        "init_from": start_run,
        "rows": rows,
        "general": general,
        "samples": [{"question": questions[i], "reference": references[i],
                     "answers": {c: answers[c][i] for c in answers}} for i in range(min(samples, len(prompts)))],
        "max_new_tokens": max_new_tokens,
        "seconds": round(time.time() - started, 1),
        "timings": timings,
        "created": round(time.time(), 3),
    }
    result["verdict"] = rewards_verdict(result)
    if save:
        write_json_atomic(run.dir / EVAL_FILE, json_safe(result))
    return result


def _replay_share(config: dict) -> float:
    try:
        return float(config.get("replay") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _avg(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None
