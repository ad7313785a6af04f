"""No compute on padding, proved: the loss of a padding-free batch equals the loss of the same rows
padded (through the worker's own trainer), a model whose attention lets packed rows see each other
is trained padded instead and the log says why, and every run records its estimated and measured
memory."""

import json

import pytest
import torch

from engine.batching import padding_free_is_exact
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
    exact, why = padding_free_is_exact(opt, rows)
    assert not exact and "does not keep packed rows apart" in why


def test_a_model_that_cannot_pack_trains_padded_and_says_why(tiny_model, toy_data, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path / "tiny-opt"
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "opt", hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=len(tokenizer),
        word_embed_proj_dim=32, max_position_embeddings=256)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    run = start_run(RunConfig.from_dict({"model": str(folder), "data": str(toy_data), "max_steps": 3,
                                         "max_length": 64, "eval_steps": 0}))
    wait_run(run, run_ended)
    assert run.info().state == "completed", run.info().message
    log = run.log_path.read_text()
    assert "Padding each batch (not padding-free): a row's logits change" in log
    start = next(e for e in run.events() if e["type"] == "start")
    assert start["batching"] == "padded"


def test_a_run_records_its_estimate_and_its_measured_peak(tiny_model, toy_data):
    run = start_run(RunConfig.from_dict({"model": str(tiny_model), "data": str(toy_data), "max_steps": 3,
                                         "max_length": 64, "eval_steps": 0}))
    wait_run(run, run_ended)
    events = run.events()
    start = next(e for e in events if e["type"] == "start")
    assert start["batching"] == "padding-free" and start["estimated_memory"] > 0
    logs = [e for e in events if e["type"] == "log"]
    assert all(e["peak_memory"] > 0 and e["peak_memory_kind"] == "ram" for e in logs)
    status = json.loads(run.status_path.read_text())
    assert status["peak_memory"] == logs[-1]["peak_memory"] and status["estimated_memory"] == start["estimated_memory"]
