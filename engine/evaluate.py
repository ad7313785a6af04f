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

The scoring functions at the top are pure (strings in, numbers out) and tested on hand-made
answers; ``evaluate_run`` does the model work and is run in a child process by ``tunedeck eval``.
Heavy libraries are imported inside functions.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import TunedeckError

CONDITIONS = ("zero-shot", "few-shot", "retrieval few-shot", "fine-tuned")
LABELS = {
    "zero-shot": "base, zero-shot",
    "few-shot": "base, few-shot",
    "retrieval few-shot": "base, retrieval few-shot",
    "fine-tuned": "fine-tuned",
}
EVAL_FILE = "eval.json"

Progress = Callable[[dict], None]


class EvalError(TunedeckError):
    pass


# --------------------------------------------------------------------------------------------
# Pure scoring
# --------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


def parse_strict(text: str) -> Any | None:
    """The answer as JSON if the whole answer (trimmed) is one JSON object or array, else None."""
    try:
        value = json.loads(text.strip())
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, (dict, list)) else None


def parse_lenient(text: str) -> Any | None:
    """The first JSON object or array in the answer: inside a ``` fence, or after some prose."""
    value = parse_strict(text)
    if value is not None:
        return value
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        value = parse_strict(fenced.group(1))
        if value is not None:
            return value
    decoder = json.JSONDecoder()
    for i, ch in enumerate(stripped):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(stripped, i)
            except ValueError:
                continue
            if isinstance(value, (dict, list)):
                return value
    return None


def values_equal(a: Any, b: Any) -> bool:
    """Field equality: strings ignore case and surrounding space, numbers compare by value,
    booleans and null only equal themselves, lists and objects compare element by element."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    return False


def field_matches(answer: Any | None, reference: Any) -> dict[str, bool]:
    """For each field of the reference object: does the answer have it with an equal value?
    A reference that is not an object counts as one field named ``value``."""
    if isinstance(reference, dict):
        ok = isinstance(answer, dict)
        return {k: ok and k in answer and values_equal(answer[k], v) for k, v in reference.items()}
    return {"value": answer is not None and values_equal(answer, reference)}


def exact_match(answer: str, reference: str) -> bool:
    """The answer is the reference, character for character, ignoring surrounding whitespace."""
    return answer.strip() == reference.strip()


def is_structured(references: list[str]) -> bool:
    """A task is structured when every reference answer is a JSON object or array."""
    refs = [r for r in references if r.strip()]
    return bool(refs) and all(parse_strict(r) is not None for r in refs)


@dataclass
class Scores:
    n: int
    exact_match: float
    json_valid: float | None = None  # structured tasks only: the whole answer parses
    field_accuracy: float | None = None  # structured tasks only: matching fields / reference fields
    fields: dict[str, float] = field(default_factory=dict)  # per-field accuracy

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def score_answers(answers: list[str], references: list[str], *, structured: bool | None = None) -> Scores:
    """Aggregate scores of ``answers`` against ``references`` (same order).

    ``field_accuracy`` is micro-averaged: matching fields over all reference fields, so every
    field of every example weighs the same; a field counts when the answer's first JSON object
    (found leniently, e.g. inside a code fence) has it with an equal value. ``json_valid`` is
    strict: the whole answer must be JSON, as the task asks.
    """
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers for {len(references)} references")
    n = len(references)
    if n == 0:
        return Scores(0, 0.0)
    if structured is None:
        structured = is_structured(references)
    exact = sum(exact_match(a, r) for a, r in zip(answers, references)) / n
    if not structured:
        return Scores(n, exact)
    valid = sum(parse_strict(a) is not None for a in answers) / n
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    for answer, reference in zip(answers, references):
        ref = parse_strict(reference)
        if ref is None:
            continue
        for key, ok in field_matches(parse_lenient(answer), ref).items():
            totals[key] = totals.get(key, 0) + 1
            hits[key] = hits.get(key, 0) + int(ok)
    total = sum(totals.values())
    accuracy = sum(hits.values()) / total if total else 0.0
    return Scores(n, exact, valid, accuracy, {k: hits[k] / totals[k] for k in totals})


def headline(row: dict, structured: bool) -> tuple[str, float | None]:
    """The one number a row is judged by: field accuracy for structured tasks, else exact match."""
    key = "field_accuracy" if structured else "exact_match"
    return key, row.get(key)


def verdict(rows: dict[str, dict], structured: bool, n: int) -> str:
    """One or two sentences: did fine-tuning beat the best prompting alternative, by how much."""
    key, ft = headline(rows.get("fine-tuned", {}), structured)
    name = "field accuracy" if structured else "exact match"
    baselines = [(c, headline(rows[c], structured)[1]) for c in CONDITIONS[:3] if c in rows]
    baselines = [(c, v) for c, v in baselines if v is not None]
    if ft is None or not baselines:
        return "Not enough scores to compare fine-tuning with prompting."
    best, best_v = max(baselines, key=lambda cv: (cv[1], -CONDITIONS.index(cv[0])))
    diff = (ft - best_v) * 100
    if max(ft, best_v) < 0.05:
        text = (f"No approach gets the answers right yet ({ft:.0%} {name} fine-tuned, {best_v:.0%} at best "
                "by prompting): train longer or check the data before drawing conclusions.")
    elif diff >= 5:
        text = (f"Fine-tuning was worth it: {ft:.0%} {name} against {best_v:.0%} for the best prompting "
                f"alternative ({best}), {diff:+.0f} points.")
    elif diff <= -5:
        text = (f"Prompting is enough here: {best} reaches {best_v:.0%} {name} against {ft:.0%} "
                f"fine-tuned ({diff:+.0f} points); train longer or on more data, or keep the prompt.")
    else:
        text = f"Fine-tuning and {best} are within 5 points ({ft:.0%} against {best_v:.0%} {name})"
        ft_tokens, best_tokens = rows["fine-tuned"].get("prompt_tokens"), rows[best].get("prompt_tokens")
        if ft_tokens and best_tokens and best_tokens > 1.2 * ft_tokens:
            text += (f": {best} needs no training but sends {best_tokens / ft_tokens:.1f}x longer prompts "
                     f"({best_tokens:.0f} against {ft_tokens:.0f} tokens a question), so fine-tuning pays off "
                     "when there are many requests.")
        else:
            text += f"; {best} needs no training and may be enough."
    if n < 30:
        text += f" Only {n} examples were scored, so differences under ~15 points may be noise."
    return text


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


def weights_of(run) -> tuple[str, Path]:
    """("adapter" | "model" | "checkpoint-N", folder): the newest trained weights of a run."""
    if (run.adapter_dir / "adapter_config.json").is_file():
        return "adapter", run.adapter_dir
    if (run.model_dir / "config.json").is_file():
        return "model", run.model_dir
    latest = run.latest_checkpoint()
    if latest is not None and ((latest / "adapter_config.json").is_file() or (latest / "config.json").is_file()):
        return latest.name, latest
    raise EvalError(
        f"Run {run.id} has no trained weights yet (no adapter/, model/ or complete checkpoint in {run.dir}); "
        "wait for its first checkpoint or for it to finish."
    )


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
    kind, folder = weights_of(run)

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
        write_json_atomic(run.dir / EVAL_FILE, _json_safe(result))
    return result


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def saved_result(run_dir: Path) -> dict | None:
    """The last evaluation saved in a run folder, if any (cheap: no ML import)."""
    try:
        return json.loads((Path(run_dir) / EVAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Text table (CLI)
# --------------------------------------------------------------------------------------------


def _pct(v) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def _num(v, fmt="{:.3f}") -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


SHORT = {"exact match": "exact", "valid JSON": "JSON ok", "field accuracy": "fields", "eval loss": "loss",
         "perplexity": "ppl", "prompt tokens": "prompt"}


def table_rows(result: dict, *, short: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table, as strings (the CLI; the TUI with ``short`` headers)."""
    structured = result.get("structured")
    header = ["approach", "exact match"]
    if structured:
        header += ["valid JSON", "field accuracy"]
    header += ["eval loss", "perplexity", "prompt tokens"]
    if short:
        header = [SHORT.get(h, h) for h in header]
    rows = []
    for row in result.get("rows", []):
        cells = [row.get("label", "?"), _pct(row.get("exact_match"))]
        if structured:
            cells += [_pct(row.get("json_valid")), _pct(row.get("field_accuracy"))]
        cells += [_num(row.get("eval_loss")), _num(row.get("perplexity"), "{:.2f}"),
                  _num(row.get("prompt_tokens"), "{:.0f}")]
        rows.append(cells)
    return header, rows


def format_table(result: dict) -> str:
    header, rows = table_rows(result)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    )
    out = [
        f"Run {result['run']} ({result.get('weights')}) on {result.get('scored')} examples of the "
        f"{result.get('split')}; few-shot k={result.get('k')}",
        "",
        line(header),
        line(["─" * w for w in widths]),
        *(line(r) for r in rows),
        "",
        result.get("verdict", ""),
    ]
    fields = {r["label"]: r.get("fields") for r in result.get("rows", []) if r.get("fields")}
    if fields:
        names = list(next(iter(fields.values())).keys())
        out += ["", "Per-field accuracy:", "  " + "  ".join(["approach".ljust(26)] + [n[:11].rjust(11) for n in names])]
        for label, per in fields.items():
            out.append("  " + "  ".join([label.ljust(26)] + [_pct(per.get(n)).rjust(11) for n in names]))
    return "\n".join(out)
