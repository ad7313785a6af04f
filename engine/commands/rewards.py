"""`tunedeck rewards [--config RUN.yaml | --data D --model M --rewards R] [--json] [--progress]`: try the rewards.

Before any GRPO training: the base model samples a few answers to a few prompts of the data, the way
GRPO will (the run's temperature, 1 by default, and ``max_completion_length`` tokens), and the rewards score them, so you see
whether they separate good answers from bad. ``spread`` is the mean within-prompt standard deviation
of the total: 0 means every answer to a prompt scores the same and GRPO would learn nothing.

``try_rewards`` is the one implementation: this command and the data server's ``try_rewards`` op
(engine/commands/data.py, what the Data screen calls) both use it. Its result::

    {"rewards": [names], "weights": {name: w}, "rows": [{"prompt", "reference", "samples": [{"completion",
     "scores": {name: score}, "reward"}]}], "summary": {"mean": {name: m, "total": t}, "full_marks", "spread"},
     "verdict": sentence}

A reward_file (the user's Python) is loaded only when named, with one sentence for each way it can fail.
"""

from __future__ import annotations

import json
import sys
from typing import Callable

_MODELS: dict = {}  # model reference -> (model, tokenizer): the data server stays warm between requests


def register(sub) -> None:
    p = sub.add_parser("rewards", help="try GRPO reward functions on the base model's sampled answers, before training",
                       description="Sample a few answers of the base model to a few prompts of the data and score "
                       "them with the reward functions, to see whether they separate good answers from bad.")
    p.add_argument("--config", default=None, metavar="RUN.yaml", help="take model, data, rewards and reward_file from it")
    p.add_argument("--data", default=None, help="prompts: a file, folder, hub id or demo")
    p.add_argument("--model", default=None, help="the model whose answers to score (default demo)")
    p.add_argument("--rewards", default=None, help='e.g. "json_valid, json_keys:category|priority"')
    p.add_argument("--reward-file", default=None, help="your Python file of reward functions (it runs your code)")
    p.add_argument("--prompts", type=int, default=4, help="prompts to try (default 4)")
    p.add_argument("--generations", type=int, default=4, help="answers sampled per prompt (default 4)")
    p.add_argument("--max-completion-length", type=int, default=None, help="tokens per answer (default 64)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default 1, as GRPO's)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--progress", action="store_true", help="print JSON-lines progress events first")
    p.set_defaults(func=run)


def _params(args) -> dict:
    from engine.errors import ConfigError

    params = {"model": args.model, "data": args.data, "rewards": args.rewards, "reward_file": args.reward_file,
              "max_completion_length": args.max_completion_length, "temperature": args.temperature}
    if args.config:
        from pathlib import Path

        from engine.commands.train import _resolve_relative
        from engine.config import RunConfig
        from engine.data.dataset import with_refs

        cfg = RunConfig.load(args.config)
        base = Path(args.config).expanduser().parent
        defaults = {"model": _resolve_relative(cfg.model, base),
                    "data": with_refs(cfg.data, lambda ref: _resolve_relative(ref, base)),
                    "rewards": cfg.rewards,
                    "reward_file": _resolve_relative(cfg.reward_file, base) if cfg.reward_file else None,
                    "max_completion_length": cfg.max_completion_length if cfg.is_grpo else None,
                    "temperature": cfg.temperature if cfg.is_grpo else None}
        params = {k: v if v is not None else defaults[k] for k, v in params.items()}
    if not params["rewards"]:
        raise ConfigError("No rewards to try: give --rewards \"json_valid, json_keys:category|priority\" (or --config "
                          "with a rewards: list).")
    params["model"] = params["model"] or "demo"
    params["data"] = params["data"] or "demo"
    for key in ("prompts", "generations"):
        value = getattr(args, key)
        if value < 1 or (key == "generations" and value < 2):
            raise ConfigError(f"--{key} must be at least {2 if key == 'generations' else 1}, got {value}.")
        params[key] = value
    return params


def run(args) -> int:
    params = _params(args)
    if args.progress:
        def progress(event: dict) -> None:
            print(json.dumps({"event": "progress", **event}), flush=True)
    elif args.json:
        progress = None
    else:
        def progress(event: dict) -> None:
            if event.get("message"):
                print(event["message"], file=sys.stderr, flush=True)
    result = try_rewards(params, progress)
    if args.json or args.progress:
        print(json.dumps({**({"event": "result"} if args.progress else {}), **result}, ensure_ascii=False), flush=True)
        return 0
    print(format_result(result))
    return 0


def format_result(result: dict) -> str:
    names = result["rewards"]
    out = []
    for k, row in enumerate(result["rows"], 1):
        out.append(f"[{k}] {row['prompt'][:160]}")
        for sample in row["samples"]:
            scores = ", ".join(f"{n} {_score(sample['scores'].get(n))}" for n in names)
            text = " ".join(sample["completion"].split())
            out.append(f"    {sample['reward']:6.2f}  ({scores})  {text[:110]}")
        out.append("")
    s = result["summary"]
    means = ", ".join(f"{n} {_score(s['mean'].get(n))}" for n in names)
    out.append(f"mean: {means}; total {_score(s['mean'].get('total'))}; full marks {s['full_marks']:.0%}; "
               f"spread within a prompt {s['spread']:.2f}")
    out.append(result["verdict"])
    return "\n".join(out)


def _score(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def _pick(examples: list[dict], n: int) -> list[dict]:
    """``n`` examples spread evenly over the data (the first rows are often alike)."""
    if len(examples) <= n:
        return examples
    return [examples[round(k * (len(examples) - 1) / max(1, n - 1))] for k in range(n)]


def _model(ref: str, progress: Callable[[dict], None]):
    if ref not in _MODELS:
        import torch

        from engine import models
        from engine.data.encode import ensure_chat_template

        progress({"phase": "model", "message": f"Loading the model {ref}…", "fraction": None})
        model, tok = models.load_model(ref, dtype=torch.float32,
                                       progress=lambda m, f: progress({"phase": "model", "message": m, "fraction": f}))
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        ensure_chat_template(tok)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        _MODELS[ref] = (model.to(device).eval(), tok)
    return _MODELS[ref]


GENERATION_BATCH = 8  # answers sampled in one generate call: progress after each batch, memory bounded


def sample_answers(model, tok, prompts: list[list[dict]], generations: int, max_new_tokens: int, *,
                   temperature: float = 1.0, seed: int = 0, batch: int = GENERATION_BATCH,
                   progress: Callable[[int, int], None] | None = None) -> list[list[str]]:
    """``generations`` answers to each chat prompt, sampled as GRPO samples them (at ``temperature``): a prompt's
    answers, and as many whole prompts as fit ``batch`` answers, in one left-padded ``generate`` call with
    the KV cache; ``progress(done, total)`` (prompts) after each call."""
    import torch
    from transformers import GenerationConfig

    from engine.evaluate import _stop_ids

    stop = _stop_ids(tok)
    gen = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_p=1.0, top_k=0,
                           eos_token_id=stop or None, pad_token_id=tok.pad_token_id, use_cache=True)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    per_call = max(1, batch // max(1, generations))
    out_rows: list[list[str]] = []
    for start in range(0, len(prompts), per_call):
        chunk = prompts[start:start + per_call]
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in chunk]
        encoded = [tok(t, add_special_tokens=False)["input_ids"] for t in texts for _ in range(generations)]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), tok.pad_token_id, dtype=torch.long)
        att = torch.zeros_like(ids)
        for row, e in enumerate(encoded):
            ids[row, width - len(e):] = torch.tensor(e)
            att[row, width - len(e):] = 1
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(device), attention_mask=att.to(device), generation_config=gen)
        answers = []
        for row in range(len(encoded)):
            new = out[row, width:].tolist()
            cut = next((j for j, t in enumerate(new) if t in stop), len(new))
            answers.append(tok.decode(new[:cut], skip_special_tokens=True).strip())
        out_rows += [answers[k * generations:(k + 1) * generations] for k in range(len(chunk))]
        if progress is not None:
            progress(len(out_rows), len(prompts))
    return out_rows


def _temperature(value) -> float:
    """The sampling temperature asked for (None: GRPO's default), checked as the run config checks it."""
    from engine.config import FIELD

    field = FIELD["temperature"]
    return field.default_for("lora", "grpo") if value is None else field.parse(value, "rewards")


def try_rewards(params: dict, progress: Callable[[dict], None] | None = None) -> dict:
    """The contract's "try the rewards": sample the base model's answers to a few prompts, score them."""
    from engine.rewards import build, parse_rewards, prompt_text, reward_names, score_table, summary, verdict
    from engine.worker import load_examples

    emit = progress or (lambda event: None)
    specs = parse_rewards(params.get("rewards"), "rewards")
    if not specs:
        from engine.errors import ConfigError

        raise ConfigError("No rewards to try: give a list such as [json_valid] or \"json_valid, json_keys:category\".")
    rewards = build(specs, params.get("reward_file"))  # the reward_file runs here, only because it is named
    emit({"phase": "data", "message": "Reading the prompts…", "fraction": None})
    examples = _pick(load_examples(params.get("data") or "demo", objective="grpo"), int(params.get("prompts") or 4))
    model, tok = _model(params.get("model") or "demo", emit)
    generations = int(params.get("generations") or 4)
    max_new = int(params.get("max_completion_length") or 64)
    temperature = _temperature(params.get("temperature"))
    emit({"phase": "generate", "message": f"Sampling {generations} answers to each of {len(examples)} prompts…",
          "fraction": 0.0})
    def sampled(done: int, total: int) -> None:
        emit({"phase": "generate", "message": f"Sampled the answers to {done} of {total} prompts…",
              "fraction": round(0.9 * done / max(1, total), 3)})

    answers = sample_answers(model, tok, [e["prompt"] for e in examples], generations, max_new,
                             temperature=temperature, progress=sampled)
    emit({"phase": "score", "message": "Scoring the answers…", "fraction": 0.9})
    rows, groups = [], []
    for example, texts in zip(examples, answers):
        question = prompt_text(example["prompt"])
        scored = score_table(rewards, texts, [question] * len(texts), [example.get("reference")] * len(texts))
        groups.append(scored)
        rows.append({"prompt": question, "reference": example.get("reference"),
                     "samples": [{"completion": t, "scores": s["scores"], "reward": s["reward"]}
                                 for t, s in zip(texts, scored)]})
    names = reward_names(specs)
    result = {"rewards": names, "weights": {r.__name__: r.weight for r in rewards}, "rows": rows,
              "summary": summary(rewards, groups)}
    result["verdict"] = verdict(result)
    emit({"phase": "score", "message": "Done.", "fraction": 1.0})
    return result
