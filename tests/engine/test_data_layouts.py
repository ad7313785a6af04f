"""Data as people bring it (issue 14): every layout is either trained correctly, with what is trained
visible first, or refused with one sentence naming what the file is. Tool calling end to end (read,
check, render through the model's own template, the mask token by token), labelled / preference /
prompt-only / multimodal data refused by name, special-token text kept literal, several sources
mixed, and `--json` always answering in JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import models
from engine.config import RunConfig
from engine.data import dataset, formats, inspect, load_examples
from engine.data.dataset import RefusedData
from engine.data.encode import encode, tool_support_problem
from engine.data.render import render_example, render_row
from engine.data.stats import token_stats
from engine.errors import ConfigError, DataError
from engine.worker import encode_rows, load_splits

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, ok=(0,)):
    proc = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode in ok, proc.stderr
    return proc


def _one_json(proc) -> dict:
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def tool_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with a chat template that renders tools the way Qwen2.5's does."""
    from tiny_model import build_tool_model

    return build_tool_model(tiny_model, tmp_path_factory.mktemp("tool-model") / "model")


@pytest.fixture(scope="module")
def tool_tok(tool_model):
    return models.load_tokenizer(str(tool_model))


@pytest.fixture(scope="module")
def tok(tiny_model):
    return models.load_tokenizer(str(tiny_model))


# --- layouts that train ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, fmt, rows", [
    ("tools_openai.jsonl", "messages", 3),
    ("tools_sharegpt.json", "sharegpt", 2),
    ("content_parts.jsonl", "messages", 1),
    ("conversations_roles.json", "messages", 2),
    ("dialog_pairs.jsonl", "pairs", 1),
    ("special_tokens.jsonl", "prompt_completion", 3),
])
def test_chat_layouts_are_found_by_their_turns(name, fmt, rows):
    report = inspect(str(FIX / name))
    assert (report.format, report.rows, report.valid_rows, report.error_count) == (fmt, rows, rows, 0)
    assert len(load_examples(str(FIX / name))) == rows


def test_turns_under_any_name_and_text_parts_under_either_key():
    roles = load_examples(str(FIX / "conversations_roles.json"))  # role/content under `conversations`
    assert [m["role"] for m in roles[0]["messages"]] == ["user", "assistant"]
    assert [m["role"] for m in roles[1]["messages"]] == ["system", "user", "assistant"]  # under `conversation`
    parts = load_examples(str(FIX / "content_parts.jsonl"))[0]["messages"]
    assert [m["content"] for m in parts] == ["Do you ship to Iceland?", "Yes, in about ten days."]
    pairs = load_examples(str(FIX / "dialog_pairs.jsonl"))[0]["messages"]
    assert [(m["role"], m["content"]) for m in pairs][2:] == [("user", "Where is J9009?"), ("assistant", "J9009 arrives on Monday.")]


def test_messages_name_the_real_cause():
    def problem(record):
        return formats.check_row(record, None)[2]

    assert problem({"messages": [{"speaker": "a", "text": "hi"}]}) == "message 1 has no 'role' (the keys 'speaker', 'text')"
    assert problem({"messages": [{"role": "user", "content": [{"type": "table", "rows": []}]},
                                 {"role": "assistant", "content": "x"}]}) == (
        "message 1 (user) has a part of type 'table'; only text parts are supported")
    assert "no 'from'" in problem({"conversations": [{"speaker": "human", "text": "hi"}]})
    # a separate system column is kept, not dropped
    ex = formats.normalise({"system": "Be brief.", "messages": [{"role": "user", "content": "hi"},
                                                                 {"role": "assistant", "content": "hello"}]}, "messages")
    assert ex["messages"][0] == {"role": "system", "content": "Be brief."}


# --- tool calling ---------------------------------------------------------------------------------


def test_both_tool_layouts_normalise_to_openai_messages_and_tools():
    openai = load_examples(str(FIX / "tools_openai.jsonl"))
    share = load_examples(str(FIX / "tools_sharegpt.json"))
    for ex in (openai[0], share[0]):
        assert [t["function"]["name"] for t in ex["tools"]] == ["get_order_status", "refund_order"]
        assert all(t["type"] == "function" for t in ex["tools"])
        call = next(m for m in ex["messages"] if m.get("tool_calls"))
        assert call["role"] == "assistant" and call["content"] == ""
        assert call["tool_calls"][0]["function"]["arguments"] == {"order_id": "A1001" if ex is openai[0] else "D4004"}
        assert [m["role"] for m in ex["messages"]][-2:] == ["tool", "assistant"]
    assert openai[0]["messages"][3]["tool_call_id"] == "call_1"
    assert [c["name"] for c in formats.tool_calls(openai[1])] == ["refund_order", "get_order_status"]
    report = inspect(str(FIX / "tools_openai.jsonl"))
    assert report.tool_rows == 3 and report.tool_calls == {"get_order_status": 2, "refund_order": 1}
    assert report.as_json()["messages_by_role"]["tool"] == 3


def test_tool_rows_are_checked():
    report = inspect(str(FIX / "tools_bad.jsonl"))
    got = {p.where: p.message for p in report.errors}
    assert report.valid_rows == 1 and sorted(got) == [2, 3, 4, 5, 6]
    assert got[2].startswith("message 2 (assistant) calls get_order_status with arguments that are not valid JSON (")
    assert got[3] == ("message 2 (assistant) calls track_parcel, which is not among the declared tools "
                      "(get_order_status, refund_order)")
    assert got[4] == "message 2 (tool) is a tool result that follows no tool call"
    assert got[5].startswith("message 2 (assistant) calls get_order_status, but the row declares no tools")
    assert got[6].endswith("arguments must be a JSON object")
    wrong_id = {"tools": [{"name": "f"}], "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "b", "content": "ok"}, {"role": "assistant", "content": "done"}]}
    assert "answers the call 'b'" in formats.check_row(wrong_id, None)[2]


def _assistant_turns(text: str) -> list[tuple[int, int]]:
    """The character spans the mask should train, found independently: each assistant turn's body
    from after its header to the end of its end-of-turn marker."""
    spans, at = [], 0
    while (start := text.find("<|im_start|>assistant\n", at)) >= 0:
        start += len("<|im_start|>assistant\n")
        end = text.index("<|im_end|>", start) + len("<|im_end|>")
        spans.append((start, end))
        at = end
    return spans


@pytest.mark.parametrize("name, row", [("tools_openai.jsonl", 0), ("tools_openai.jsonl", 1), ("tools_sharegpt.json", 1)])
def test_tool_calls_and_answers_are_trained_token_by_token(tool_tok, name, row):
    example = load_examples(str(FIX / name))[row]
    enc = encode(tool_tok, example, None, with_pieces=True)
    assert "".join(enc.pieces) == enc.text  # ASCII text: each token's characters follow the previous ones
    spans = _assistant_turns(enc.text)
    assert len(spans) == sum(m["role"] == "assistant" for m in example["messages"])
    at, expected = 0, []
    for piece in enc.pieces:
        expected.append(any(at < e and at + len(piece) > s for s, e in spans))
        at += len(piece)
    assert enc.trained == expected
    trained = "".join(p for p, t in zip(enc.pieces, enc.trained) if t)
    call = example["messages"][2 if name == "tools_openai.jsonl" and row == 0 else 1]
    for c in call["tool_calls"]:
        assert f'{{"name": "{c["function"]["name"]}", "arguments": {json.dumps(c["function"]["arguments"])}}}' in trained
    assert "<tool_call>" in trained and "<tools>" not in trained and "<tool_response>" not in trained
    for m in example["messages"]:
        if m["role"] in ("user", "tool"):
            assert m["content"] not in trained
    assert example["messages"][-1]["content"] + "<|im_end|>" in trained


def test_the_trainer_trains_the_tool_mask(tool_model, tool_tok, tmp_path):
    """Rows from the worker's encode_rows, through TRL's SFTTrainer collator: labels only where the mask says."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    examples = load_examples(str(FIX / "tools_openai.jsonl")) + load_examples(str(FIX / "tools_sharegpt.json"))
    rows, counts = encode_rows(tool_tok, examples, 1024)
    assert len(rows) == 5 and counts == {"truncated": 0, "skipped": 0}
    args = SFTConfig(output_dir=str(tmp_path / "out"), completion_only_loss=True, max_length=1024, report_to=[],
                     per_device_train_batch_size=5, use_cpu=True, dataset_num_proc=None)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(str(tool_model)), args=args,
                         train_dataset=datasets.Dataset.from_list(rows), processing_class=tool_tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(5)])
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        assert batch["input_ids"][i, :n].tolist() == row["input_ids"]
        assert (batch["labels"][i, :n] != -100).tolist() == [bool(m) for m in row["completion_mask"]]


def test_a_template_without_tool_support_is_refused_before_training(tok, tiny_model):
    problem = tool_support_problem(tok)  # the tiny model speaks plain ChatML: tools are not rendered
    assert problem.startswith("The chat template of this model has no tool support: it leaves out the tool "
                              "definitions and the tool calls")
    examples = load_examples(str(FIX / "tools_openai.jsonl"))
    with pytest.raises(DataError, match="no tool support"):
        encode(tok, examples[0])
    with pytest.raises(DataError, match="no tool support"):
        encode_rows(tok, examples, 512)  # what the worker runs before training
    with pytest.raises(DataError, match="no tool support"):
        token_stats(str(FIX / "tools_openai.jsonl"), tok, 512)
    assert encode(tok, {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}).trained_tokens
    out = _one_json(_cli("data", "inspect", FIX / "tools_sharegpt.json", "--model", tiny_model, "--json", ok=(2,)))
    assert out["exit"] == 2 and "no tool support" in out["error"]


def test_render_shows_the_tools_and_the_calls(tool_tok, tool_model):
    out = render_row(str(FIX / "tools_sharegpt.json"), 2, tool_tok, 1024)
    assert [t["function"]["name"] for t in out["tools"]] == ["refund_order"]
    assert out["tool_calls"] == [{"message": 2, "name": "refund_order", "arguments": {"order_id": "E5005", "reason": "broken"}}]
    text = _cli("data", "render", FIX / "tools_sharegpt.json", "--row", "2", "--model", tool_model).stdout
    assert "tool refund_order(order_id, reason) — Refund an order in full." in text
    assert 'message 2 calls refund_order({"order_id": "E5005", "reason": "broken"})' in text


# --- recognised and refused ------------------------------------------------------------------------


@pytest.mark.parametrize("name, kind, words", [
    ("preference.jsonl", "preference", "preference tuning such as DPO"),  # explicit prompt, text
    ("preference_implicit.jsonl", "preference", "preference tuning such as DPO"),  # implicit prompt, conversational
    ("preference_messages.jsonl", "preference", "preference tuning such as DPO"),  # chosen_messages / rejected_messages
    ("kto.jsonl", "kto", "KTO"),
    ("kto_messages.jsonl", "kto", "KTO"),
    ("prompt_only.jsonl", "prompt_only", "such as GRPO"),
    ("classification.jsonl", "classification", "classification data set"),
    ("multimodal_images.jsonl", "multimodal", "an 'images' column"),
    ("multimodal_parts.jsonl", "multimodal", "image parts in 'messages'"),
])
def test_other_kinds_of_data_are_refused_by_name(name, kind, words):
    # for supervised fine-tuning (preference pairs and labels are DPO's and KTO's data: tests/engine/test_preference.py)
    with pytest.raises(RefusedData) as err:
        inspect(str(FIX / name), objective="sft")
    assert err.value.kind == kind and words in str(err.value)
    assert str(err.value).startswith(str(FIX / name)) and "\n" not in str(err.value)
    with pytest.raises(RefusedData):
        dataset.load_examples(str(FIX / name), objective="sft")
    first = json.loads((FIX / name).read_text().splitlines()[0]) if name.endswith("jsonl") else None
    if first:
        assert formats.detect(first) == kind


def test_a_bad_labelled_or_multimodal_row_in_a_chat_file_is_never_trained(tmp_path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    rows = [good, good, {**good, "label": False}, {"messages": [{"role": "user", "content": "<image> what is this?"},
                                                                {"role": "assistant", "content": "A cat."}]}]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = inspect(str(path))
    got = {p.where: p.message for p in report.errors}
    assert report.valid_rows == 2 and sorted(got) == [3, 4]
    assert got[3].startswith("is labelled data") and got[4].startswith("is multimodal data (the <image> placeholder")
    with pytest.raises(DataError, match=":3: is labelled data"):
        load_examples(str(path))


def test_prompt_completion_sft_data_is_not_refused():
    assert inspect(str(FIX / "prompt_completion.jsonl")).format == "prompt_completion"
    assert formats.detect({"prompt": "p", "completion": "c", "label": "shipping"}) == "prompt_completion"  # not a KTO label


# --- special-token text ---------------------------------------------------------------------------


def test_special_token_text_stays_literal_by_default(tok):
    example = load_examples(str(FIX / "special_tokens.jsonl"))[0]  # "Write <|endoftext|> at the end."
    literal = encode(tok, example, None, with_pieces=True)
    assert tok.convert_tokens_to_ids("<|endoftext|>") not in literal.input_ids
    # the same ids as transformers' own sanitize_control_tokens (which gives no offsets, so no mask)
    assert literal.input_ids == tok.apply_chat_template(example["messages"], tokenize=True, return_dict=False,
                                                        sanitize_control_tokens=True)
    as_token = encode(tok, example, None, with_pieces=True, special_token_text="token")
    assert tok.convert_tokens_to_ids("<|endoftext|>") in as_token.input_ids
    for enc in (literal, as_token):
        assert "".join(p for p, t in zip(enc.pieces, enc.trained) if t) == "Write <|endoftext|> at the end.<|im_end|>"
    rows, _ = encode_rows(tok, [example], 512, special_token_text="token")
    assert rows[0]["input_ids"] == as_token.input_ids
    assert RunConfig().special_token_text == "literal"
    assert RunConfig.from_dict({"special_token_text": "token"}).special_token_text == "token"


def test_special_token_text_is_warned_per_row_with_its_name(tok, tiny_model):
    example = load_examples(str(FIX / "special_tokens.jsonl"))[2]
    out = render_example(tok, example)
    assert out["special_token_text"] == [{"place": "message 2 (assistant)", "token": "<|im_end|>"}]
    assert out["warnings"] == ["message 2 (assistant) contains <|im_end|>, the text of a special token of this "
                               "tokenizer; it stays literal text (special_token_text: token makes it the special token)."]
    report = _one_json(_cli("data", "inspect", FIX / "special_tokens.jsonl", "--model", tiny_model, "--json"))
    warned = [w for w in report["warnings"] if "special token" in w]
    assert [w.split(":")[0] for w in warned] == ["line 1", "line 3"]
    assert "<|endoftext|>" in warned[0] and "<|im_end|>" in warned[1]
    assert report["stats"]["special_token_text"] == 2


# --- several sources -------------------------------------------------------------------------------


def test_data_may_be_a_list_of_sources_with_weights_or_fractions():
    cfg = RunConfig.from_yaml("data:\n  - path: a.jsonl\n    weight: 0.9\n  - {path: b.jsonl, weight: 0.1}\n")
    assert cfg.data == [{"path": "a.jsonl", "weight": 0.9}, {"path": "b.jsonl", "weight": 0.1}]
    assert RunConfig.from_yaml(cfg.to_yaml()) == cfg
    assert RunConfig.from_dict({"data": ["a.jsonl", {"path": "b", "fraction": 0.5}]}).data == [
        {"path": "a.jsonl"}, {"path": "b", "fraction": 0.5}]
    assert RunConfig.from_dict({"data": "demo"}).data == "demo"
    for bad, words in [([], "empty list"), ([{"path": "a", "weight": 1}, "b"], "every source a weight"),
                       ([{"path": "a", "fraction": 1.5}], "fraction must be"), ([{"file": "a"}], "unknown key 'file'"),
                       ([{"path": "a", "weight": -1}], "weight must be a positive"), (7, "or a list of them")]:
        with pytest.raises(ConfigError, match=words) as err:
            RunConfig.from_dict({"data": bad})
        assert "\n" not in str(err.value)


def test_sources_are_mixed_by_share_seeded_and_reproducibly(tmp_path):
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    big.write_text("".join(json.dumps({"text": f"general {k}"}) + "\n" for k in range(100)))
    small.write_text("".join(json.dumps({"text": f"narrow {k}"}) + "\n" for k in range(18)))
    data = [{"path": str(small), "weight": 0.9}, {"path": str(big), "weight": 0.1}]
    mixed = load_examples(data, seed=1)
    assert len(mixed) == 20 and sum(ex["text"].startswith("narrow") for ex in mixed) == 18  # the narrow set whole
    assert mixed == load_examples(data, seed=1) and mixed != load_examples(data, seed=2)
    part = load_examples([str(small), {"path": str(big), "fraction": 0.25}])
    assert len(part) == 18 + 25
    cfg = RunConfig.from_dict({"data": data, "seed": 1, "eval_split": 0.1})
    train, held = load_splits(cfg)
    assert len(train) + len(held) == 20 and len(held) == 2
    assert sorted(ex["text"] for ex in train + held) == sorted(ex["text"] for ex in mixed)
    assert not dataset.has_validation_split(data) and dataset.is_local(data)
    with pytest.raises(DataError, match="no 'validation' split"):
        load_examples(data, split="validation")


def test_inspect_shows_each_source_and_the_mix(tmp_path, tok):
    config = tmp_path / "run.yaml"
    config.write_text(f"data:\n  - {{path: {FIX / 'messages.jsonl'}, weight: 3}}\n"
                      f"  - {{path: {FIX / 'alpaca.json'}, weight: 1}}\nseed: 7\n")
    out = _one_json(_cli("data", "inspect", "--config", config, "--json"))
    # shares 3:1 with no row used twice: the messages file runs out first and is used whole
    assert out["format"] == "mix" and out["seed"] == 7 and out["examples"] == 7
    assert [(s["format"], s["examples"], s["taken"], s["share"]) for s in out["sources"]] == [
        ("messages", 5, 5, 0.7143), ("alpaca", 3, 2, 0.2857)]
    text = _cli("data", "inspect", FIX / "text.jsonl", FIX / "alpaca.json").stdout
    assert "in the mix (all of it): 3 examples, 50% of the mix" in text and "mix of" in text
    stats = token_stats([str(FIX / "text.jsonl"), str(FIX / "alpaca.json")], tok, 512)
    assert stats["format"] == "mix" and stats["examples"] == 6


# --- the JSON contract ----------------------------------------------------------------------------


@pytest.mark.parametrize("args, code, words", [
    (["inspect", FIX / "empty.jsonl"], 2, "is empty"),
    (["inspect", FIX / "kto.jsonl", "--objective", "sft"], 2, "KTO"),
    (["inspect", FIX / "nope.jsonl"], 2, "does not exist"),
    (["render", FIX / "bad_rows.jsonl", "--row", "2"], 1, "role 'bot'"),
    (["render", FIX / "preference.jsonl", "--row", "1", "--objective", "sft"], 2, "preference data"),
    (["stats", FIX / "multimodal_parts.jsonl", "--model", "{tiny}"], 2, "multimodal"),
])
def test_every_data_command_answers_json_refusals_included(tiny_model, args, code, words):
    proc = _cli("data", *[str(a).format(tiny=tiny_model) for a in args], "--json", ok=(code,))
    out = _one_json(proc)
    assert out["exit"] == code and words in out["error"] and "\n" not in out["error"]
    assert proc.stderr.strip() == f"tunedeck: {out['error']}"
    if "KTO" in words:
        assert out["kind"] == "kto" and out["file"].endswith("kto.jsonl")


@pytest.mark.parametrize("name", ["tools_openai.jsonl", "tools_sharegpt.json", "dialog_pairs.jsonl",
                                  "prompt_completion_chat.jsonl", "alpaca.json", "messages.jsonl", "text.jsonl"])
def test_a_normalised_example_normalises_to_itself(name):
    """A mix is measured from its normalised examples, so they must read back unchanged."""
    for ex in load_examples(str(FIX / name)):
        assert formats.normalise(ex, formats.detect(ex)) == ex
