"""The trainer trains exactly the encode() mask: the labels TRL's collator hands the model are the
token ids where encode() marks a token trained, and -100 everywhere else (prompt, template, padding)."""

from engine.config import RunConfig
from engine.data import load_examples
from engine.data.encode import encode
from engine.worker import build_trainer, device_plan, encode_rows, load_model_for


def test_collator_labels_equal_the_encode_mask(tiny_model, tmp_path):
    cfg = RunConfig.from_dict({"model": str(tiny_model), "data": "demo", "max_steps": 1, "batch_size": 4,
                               "eval_steps": 0, "max_length": 512})
    model, tokenizer = load_model_for(cfg, device_plan())
    examples = load_examples("demo", split="train")[:8]
    examples.append({"messages": [  # two assistant turns, the first one not trained (weight 0)
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there", "weight": 0},
        {"role": "user", "content": "Status?"}, {"role": "assistant", "content": "All good"}]})
    rows, counts = encode_rows(tokenizer, examples, cfg.max_length)
    assert len(rows) == len(examples) and counts == {"truncated": 0, "skipped": 0}
    expected = {}
    for ex in examples:
        enc = encode(tokenizer, ex, cfg.max_length)
        assert 0 < enc.trained_tokens < len(enc.input_ids)  # a real mask: some trained, some not
        expected[tuple(enc.input_ids)] = [t if m else -100 for t, m in zip(enc.input_ids, enc.trained)]

    trainer = build_trainer(cfg, model, tokenizer, rows, [], tmp_path / "checkpoints")
    seen = 0
    for batch in trainer.get_train_dataloader():  # the very loader and collator training uses
        for ids, labels, attention in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
            n = int(attention.sum())
            key = tuple(ids[:n].tolist())
            assert labels[:n].tolist() == expected[key]
            assert (labels[n:] == -100).all()  # padding is never trained
            seen += 1
    assert seen == len(examples)


def test_truncated_rows_keep_the_mask_and_untrainable_rows_are_dropped(tiny_model):
    cfg = RunConfig.from_dict({"model": str(tiny_model), "max_length": 16})
    model, tokenizer = load_model_for(cfg, device_plan())
    examples = load_examples("demo", split="train")[:3]
    # 16 tokens hold only the system prompt: nothing of the assistant reply is left to train
    rows, counts = encode_rows(tokenizer, examples, 16)
    assert rows == [] and counts == {"truncated": 3, "skipped": 3}
    text_rows, counts = encode_rows(tokenizer, [{"text": "plain text trains every token"}], 16)
    assert counts["skipped"] == 0 and all(text_rows[0]["completion_mask"])
