"""The GRPO demo's pieces (issue 19): the prompts-only data set demo-prompts (each ticket after one worked
example exchange, no answers; read as GRPO prompts, refused for SFT with a sentence naming GRPO), the
demo config that uses it, and the memory estimate for a GRPO step (sampling's KV cache, then the policy's
pass over prompt + answer). No model is loaded; the training figures are bench/bench_grpo_demo.py's."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine import demo
from engine import estimate as E
from engine import model_shapes
from engine.builtin import make_demo_prompts as M
from engine.config import RunConfig
from engine.data import dataset, formats
from engine.errors import DataError
from engine.rewards import prompt_text


def test_demo_prompts_are_the_demos_tickets_after_one_worked_example_without_answers(tmp_path):
    assert demo.DEMO_PROMPTS in demo.DEMOS and demo.DESCRIPTIONS[demo.DEMO_PROMPTS].startswith("built-in demo prompts")
    for split in ("train", "validation"):
        rows = [json.loads(line) for line in demo.data_file(demo.DEMO_PROMPTS, split).read_text().splitlines()]
        tickets = M.tickets(demo.data_file(demo.DEMO, split))
        assert len(rows) == len(tickets) and all(set(r) == {"prompt"} for r in rows)  # no answer column
        assert formats.detect(rows[0]) == "prompt_only"
        examples = dataset.load_examples(demo.DEMO_PROMPTS, split=split, objective="grpo")
        assert len(examples) == len(tickets)
        for ex, ticket in zip(examples, tickets):
            roles = [m["role"] for m in ex["prompt"]]
            assert roles == ["system", "user", "assistant", "user"] and ex["reference"] is None
            assert prompt_text(ex["prompt"]) == ticket  # what the rewards and the monitor show: the real ticket
            assert json.loads(ex["prompt"][2]["content"]) == M.EXAMPLE_ANSWER
        assert M.EXAMPLE_TICKET not in tickets  # the worked example is not one of the prompts
    # the generator writes exactly the files shipped
    written = M.prompt_row(tickets[0])
    assert written == rows[0]
    with pytest.raises(DataError, match="GRPO"):  # prompts only: not data for supervised fine-tuning
        dataset.load_examples(demo.DEMO_PROMPTS, objective="sft")


def test_the_demo_grpo_config_trains_on_the_prompts_with_the_json_rewards():
    cfg = RunConfig.load(demo.grpo_config_file())
    assert cfg.is_grpo and cfg.data == demo.DEMO_PROMPTS and cfg.keep == "last" and cfg.beta == 0
    assert [r["name"] for r in cfg.rewards] == ["json_valid", "json_keys"] and len(cfg.rewards[1]["keys"]) == 6
    assert cfg.batch_size % cfg.num_generations == 0 and cfg.max_completion_length <= 64
    settings = demo.grpo_settings()
    assert "model" not in settings and "data" not in settings and settings["objective"] == "grpo"
    assert RunConfig.from_dict({"model": "demo", "data": demo.DEMO_PROMPTS, **settings}).rewards == cfg.rewards


def test_the_memory_estimate_of_a_grpo_step_counts_sampling_and_the_policys_pass():
    arch = model_shapes.architecture_for("demo")
    cfg = RunConfig.load(demo.grpo_config_file())
    lengths = [242] * 8  # prompt + max_completion_length, as the worker passes them
    grpo = E.estimate(arch, E.plan_for(cfg, device="cuda", lengths=lengths))
    assert any("KV cache" in n for n in grpo.notes) and any("no reference" in n for n in grpo.notes)
    plan = E.plan_for(cfg, device="cuda", lengths=lengths)
    sft = E.estimate(arch, dataclasses.replace(plan, objective="sft"))
    # the training pass is SFT's for the same rows; sampling comes before it and is freed by then
    assert grpo.memory.activations == sft.memory.activations and grpo.memory.total >= sft.memory.total
    # many long answers at once: sampling's KV cache becomes the peak
    many = E.plan_for(cfg.override(gradient_accumulation_steps=64, max_length=4096), device="cuda",
                      lengths=[4096] * 8)
    assert many.generation_rows == 512 and E.estimate(arch, many).peak_phase == "generation"
    # beta > 0: a reference pass (the adapter disabled), as for DPO
    with_ref = E.estimate(arch, E.plan_for(cfg.override(beta=0.04), device="cuda", lengths=lengths))
    assert with_ref.memory.total > grpo.memory.total and any("reference" in n and "disabled" in n for n in with_ref.notes)
