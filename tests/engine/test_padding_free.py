"""No compute on padding, proved: the loss of a padding-free batch equals the loss of the same rows
padded (through the worker's own trainer), packing is chosen only where it does less work than
padding (judged on the data's lengths and the model's shape), a model whose attention lets packed rows
see each other is trained padded instead and the log says why, and every run records its estimated
and measured memory."""

import json
import random

import pytest
import torch

from engine import estimate as E
from engine import model_shapes
from engine.batching import model_shape, padding_free_is_exact
from engine.packing import ModelShape, batching_costs, padding_free_pays
from engine.config import RunConfig
from engine.launch import start_run
from engine.worker import build_trainer, device_plan, encode_rows, load_model_for
from waiting import run_ended, wait_run

pytestmark = pytest.mark.timeout(300)


def _rows(tokenizer, n: int = 8) -> list[dict]:
    """Chat rows of very uneven lengths, through the one mask (encode)."""
    examples = [{"messages": [{"role": "user", "content": "word " * (3 + 11 * i)},
                              {"role": "assistant", "content": "answer " * (1 + 5 * (i % 3))}]} for i in range(n)]
    rows, _ = encode_rows(tokenizer, examples, 256)
    return rows


def test_a_padding_free_batch_has_the_loss_of_the_same_rows_padded(tiny_model, tmp_path):
    cfg = RunConfig.from_dict({"model": str(tiny_model), "batch_size": 8, "max_length": 256, "eval_steps": 0,
                               "lora": {"r": 8, "alpha": 16, "dropout": 0.0}})
    plan = device_plan()
    model, tokenizer = load_model_for(cfg, plan)
    rows = _rows(tokenizer)
    assert len({len(r["input_ids"]) for r in rows}) == len(rows)  # really uneven
    losses, shapes = {}, {}
    for padding_free in (False, True):
        trainer = build_trainer(cfg, model, tokenizer, rows, [], tmp_path / str(padding_free), plan,
                                padding_free=padding_free)
        batch = trainer.data_collator(list(trainer.train_dataset))
        shapes[padding_free] = tuple(batch["input_ids"].shape)
        model.eval()
        with torch.no_grad():
            losses[padding_free] = float(trainer.compute_loss(model, batch))
    tokens = sum(len(r["input_ids"]) for r in rows)
    assert shapes[True] == (1, tokens)  # one sequence, not one pad token
    assert shapes[False] == (8, max(len(r["input_ids"]) for r in rows))
    assert losses[True] == pytest.approx(losses[False], rel=1e-5, abs=1e-6)


@pytest.fixture
def uneven_data(tmp_path):
    """Short rows (about 30 tokens) and long ones (about 180): packing pays on them."""
    path = tmp_path / "uneven.jsonl"
    rows = [{"messages": [{"role": "user", "content": "word " * (50 if i % 3 == 0 else 2)},
                          {"role": "assistant", "content": "answer " * (1 + i % 4)}]} for i in range(48)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _spread(seed: int = 0, n: int = 400) -> list[int]:
    rng = random.Random(seed)  # like real chat data: most short, a tail to ~1,000 tokens
    return [max(40, min(1000, int(rng.lognormvariate(5.0, 0.8)))) for _ in range(n)]


def test_packing_is_chosen_only_where_it_does_less_work_than_padding():
    demo = ModelShape.of_architecture(model_shapes.architecture_for("smollm2-135m"), full=False)
    uniform = [112 + (i * 7) % 46 for i in range(340)]  # the demo's spread: 112-157 tokens
    # without a varlen kernel a pack attends across all its rows: on near-uniform rows that costs more
    padded, packed = batching_costs(uniform, 8, demo, varlen=False)
    assert packed > 1.1 * padded
    pays, why = padding_free_pays(uniform, 8, demo, "sdpa")
    assert not pays and "packing would cost more than the padding it saves (attention sdpa" in why
    assert padding_free_pays(uniform, 8, demo, "flash_attention_2")[0]  # a varlen kernel: no cross-row pairs
    # spread lengths: the padding saved outweighs the attention
    pays, why = padding_free_pays(_spread(), 4, demo, "sdpa")
    assert pays and "a batch packed against" in why
    assert batching_costs(_spread(), 4, demo, varlen=False)[0] > 1.5 * batching_costs(_spread(), 4, demo,
                                                                                      varlen=False)[1]
    # length-grouped batches pad less, so packing gains less; one row a batch has nothing to save
    grouped = batching_costs(_spread(), 4, demo, varlen=False, group_by_length=True)
    assert grouped[0] < batching_costs(_spread(), 4, demo, varlen=False)[0]
    assert padding_free_pays(_spread(), 1, demo, "sdpa") == (False, "one row a batch has no padding to save")


def test_estimates_pack_by_the_same_rule_as_the_worker():
    arch = model_shapes.architecture_for("smollm2-135m")
    cfg = RunConfig.from_dict({"model": "demo", "batch_size": 4, "max_length": 1024})
    uniform = [112 + (i * 7) % 46 for i in range(340)]
    assert not E.plan_for(cfg, device="cpu", lengths=uniform, arch=arch).packed
    plan = E.plan_for(cfg, device="cpu", lengths=_spread(), arch=arch)
    assert plan.packed and plan.seq_len == sum(sorted(_spread(), reverse=True)[:4])
    assert not E.plan_for(cfg, device="cpu", lengths=None, arch=arch).packed  # rows all max_length: no padding
    assert not E.plan_for(cfg.override(padding_free=False), device="cpu", lengths=_spread(), arch=arch).packed
    # what data stats hands the estimates: the longest rows and an even sample of the rest
    stats = {"longest": sorted(_spread(), reverse=True)[:256], "spread": sorted(_spread())}
    assert E.longest_batch(cfg, E.TokenLengths.from_stats(stats), arch=arch)[:3] == (1, plan.seq_len, True)


def test_the_check_finds_attention_that_lets_packed_rows_see_each_other():
    from transformers import AutoConfig, AutoModelForCausalLM

    rows = [{"input_ids": list(range(3, 30))}, {"input_ids": list(range(40, 60))}]
    llama = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=128))
    opt = AutoModelForCausalLM.from_config(AutoConfig.for_model(  # learned positions from the mask, no packing
        "opt", hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=128,
        word_embed_proj_dim=32))
    assert padding_free_is_exact(llama, rows)[0]
    # a model the estimate does not know is weighed on its loaded layers: the same shape
    assert model_shape(llama, full=True) == ModelShape.of_architecture(
        model_shapes.inspect_model(llama.config.to_dict()), full=True)
    exact, why = padding_free_is_exact(opt, rows)
    assert not exact and "does not keep packed rows apart" in why


def test_a_model_that_cannot_pack_trains_padded_and_says_why(tiny_model, uneven_data, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path / "tiny-opt"
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "opt", hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=len(tokenizer),
        word_embed_proj_dim=32, max_position_embeddings=256)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    run = start_run(RunConfig.from_dict({"model": str(folder), "data": str(uneven_data), "max_steps": 3,
                                         "batch_size": 2, "max_length": 256, "eval_steps": 0}))
    wait_run(run, run_ended)
    assert run.info().state == "completed", run.info().message
    log = run.log_path.read_text()
    assert "Padding each batch (not padding-free): a row's logits change" in log
    start = next(e for e in run.events() if e["type"] == "start")
    assert start["batching"] == "padded"


def test_a_run_records_its_estimate_and_its_measured_peak(tiny_model, uneven_data):
    run = start_run(RunConfig.from_dict({"model": str(tiny_model), "data": str(uneven_data), "max_steps": 3,
                                         "batch_size": 2, "max_length": 256, "eval_steps": 0}))
    wait_run(run, run_ended)
    events = run.events()
    start = next(e for e in events if e["type"] == "start")
    assert start["batching"] == "padding-free" and start["estimated_memory"] > 0
    assert "Padding-free batching: rows packed together do not see each other" in run.log_path.read_text()
    assert "a batch packed against" in run.log_path.read_text()
    logs = [e for e in events if e["type"] == "log"]
    assert all(e["peak_memory"] > 0 and e["peak_memory_kind"] == "ram" for e in logs)
    status = json.loads(run.status_path.read_text())
    assert status["peak_memory"] == logs[-1]["peak_memory"] and status["estimated_memory"] == start["estimated_memory"]
