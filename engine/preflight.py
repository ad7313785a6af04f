"""The full pre-flight check of a run (``tunedeck train ... --check``, and the app before it starts
one): everything the worker would fail on, found before a run folder exists, each in one sentence.

    settings   the config, the environment, the model reference, every data row, the processes
               (``engine.launch.preflight``: ML-free, also run before every start)
    tokenizer  the model's tokenizer loads, and chat data has a chat template to render it with
    tokens     each example keeps a token to train after the cut at max_length
    memory     the memory estimate (from the data's real lengths) fits the GPU, or the RAM

``check(config)`` never raises for what a user can fix: it returns a report whose ``problem`` is the
first failing check's sentence (None when the run can start). It imports transformers (the
tokenizer, the model's shapes), so it runs in the CLI or a helper process, never in the TUI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .config import RunConfig, trackers
from .errors import TunedeckError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str  # what was found, or what would fail (one sentence)
    seconds: float = 0.0


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def problem(self) -> str | None:
        return next((c.detail for c in self.checks if not c.ok), None)

    def to_json(self) -> dict:
        return {"ok": self.problem is None, "problem": self.problem, "warnings": list(self.warnings),
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "seconds": round(c.seconds, 3)}
                           for c in self.checks]}


def check(config: RunConfig) -> Report:
    report = Report()
    state: dict = {}

    def step(name: str, fn) -> bool:
        started = time.perf_counter()
        try:
            detail = fn()
            ok = True
        except TunedeckError as exc:
            detail, ok = str(exc), False
        report.checks.append(Check(name, ok, detail, time.perf_counter() - started))
        return ok

    def settings() -> str:
        from .launch import preflight

        state["config"] = preflight(config)
        from .data.dataset import mix_label

        return f"settings valid; model {config.model}; every row of {mix_label(config.data)} readable"

    def tokenizer() -> str:
        from . import models

        tok = models.load_tokenizer(state["config"].model)
        state["tokenizer"] = tok
        if not getattr(tok, "chat_template", None):
            from .data.hub import load_examples

            if any("messages" in ex for ex in load_examples(state["config"].data)[:64]):
                raise TunedeckError(f"The tokenizer of {config.model} has no chat template, so chat data cannot be "
                                    "rendered the way the model will be prompted; use an instruct/chat model, or "
                                    "plain text data.")
        return f"tokenizer of {config.model} loaded ({len(tok)} tokens)"

    def tokens() -> str:
        from .data.stats import token_stats

        cfg = state["config"]
        stats = token_stats(cfg.data, state["tokenizer"], cfg.max_length, workers=1,
                            special_token_text=cfg.special_token_text, seed=cfg.seed, objective=cfg.objective,
                            max_prompt_length=cfg.max_prompt_length, max_completion_length=cfg.max_completion_length)
        state["stats"] = stats
        examples = stats.get("examples") or 0
        empty = stats.get("nothing_trained") or 0
        if examples and empty >= examples:
            raise TunedeckError(f"None of the {examples} examples of {cfg.data} keeps a token to train after the cut "
                                f"at max_length={cfg.max_length}; raise max_length or shorten the prompts.")
        if empty:
            report.warnings.append(f"{empty} of {examples} examples keep no token to train after the cut at "
                                   f"max_length={cfg.max_length} and will be skipped.")
        if stats.get("over_max_length"):
            report.warnings.append(f"{stats['over_max_length']} examples are longer than max_length="
                                   f"{cfg.max_length} and will be cut.")
        return (f"{examples} examples, {stats.get('trainable_tokens', 0):,} tokens to train; longest "
                f"{stats['length']['max']} tokens")

    def memory() -> str:
        from . import estimate as E
        from . import gpu
        from . import model_shapes

        cfg = state["config"]
        device = "cpu" if gpu.no_gpu_reason() else "cuda"
        lengths = E.TokenLengths.from_stats(state.get("stats", {}))
        arch = model_shapes.architecture_for(cfg.model)
        plan = E.plan_for(cfg, device=device, lengths=lengths, arch=arch)
        total = E.estimate(arch, plan).memory.total
        targets, reason = gpu.memory_targets(device=device)
        fit = E.judge_fit(total, targets, reason)
        if fit.verdict == "no":
            ways = E.ways_to_fit(arch, plan, fit.gpu["memory_free"]) if fit.gpu else []
            hint = (f"; to fit: {ways[0]['change']}" if ways
                    else "; lower batch_size or max_length, or use method qlora")
            raise TunedeckError(f"Training {fit.reason}{hint}.")
        if fit.verdict == "tight":
            report.warnings.append(f"Training {fit.reason}.")
        shape = (f"{plan.seq_len} tokens, {cfg.batch_size} rows back to back" if plan.packed
                 else f"{plan.seq_len} tokens x {plan.batch_size} {'pairs' if cfg.objective == 'dpo' else 'rows'}")
        return f"{fit.reason} (the largest batch: {shape}, {'from the data' if lengths else 'max_length'})"

    if step("settings", settings):
        if step("tokenizer", tokenizer):
            step("tokens", tokens)
        step("memory", memory)
    if getattr(config, "report_to", None):
        step("trackers", lambda: trackers(config.report_to))
    return report


