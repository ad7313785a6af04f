"""Preference tuning (issue 16): DPO on chosen/rejected pairs and KTO on answers labelled good or
bad, through the same detached worker as SFT.

Pure parts first (config keys and their sentences, TRL's loss list, every preference layout
normalised to one form, bad pairs by line, what each objective accepts, the estimate), then real
training on the tiny model: the DPO batch TRL scores is the encode() mask (the one mask), the LoRA
reference is the adapter-disabled base with no second copy of the weights, real detached DPO and
KTO runs carry the reward metrics in their events, stop and resume, start from an SFT run's
adapter, fail with one sentence, evaluate and export for `trl dpo`."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import DPO_LOSS_TYPES, KTO_LOSS_TYPES, RunConfig
from engine.data import dataset, formats
from engine.data.dataset import RefusedData
from engine.errors import ConfigError, DataError
from waiting import logged_step, run_ended, wait_run

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
pytestmark = pytest.mark.timeout(600)

WORDS = ["apple", "river", "cloud", "stone", "green", "seven", "tiger", "lemon"]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def pairs_file(tmp_path) -> Path:
    """A learnable preference for the tiny model: repeating a word three times beats saying it once."""
    return _write(tmp_path / "pairs.jsonl", [{"prompt": f"Repeat: {w}", "chosen": f"{w} {w} {w}", "rejected": w}
                                             for w in WORDS * 4])


@pytest.fixture
def labels_file(tmp_path) -> Path:
    rows = []
    for w in WORDS * 4:
        rows.append({"prompt": f"Repeat: {w}", "completion": f"{w} {w} {w}", "label": True})
        rows.append({"prompt": f"Repeat: {w}", "completion": f"no {w}", "label": False})
    return _write(tmp_path / "labels.jsonl", rows)


def _cli(*args, ok=(0,)):
    proc = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode in ok, proc.stderr
    return proc


def _config(model, data, **extra) -> RunConfig:
    settings = {"model": str(model), "data": str(data), "objective": "dpo", "max_steps": 8, "batch_size": 4,
                "learning_rate": 5e-3, "eval_steps": 4, "eval_split": 0.25, "save_steps": 4, "max_length": 64,
                "logging_steps": 1, "lora": {"r": 8, "alpha": 16}}
    settings.update(extra)
    return RunConfig.from_dict(settings)


# --- config -------------------------------------------------------------------------------------


def test_objective_and_its_settings_in_the_one_schema():
    sft = RunConfig.from_dict({})
    assert sft.objective == "sft" and sft.loss is None and sft.learning_rate == 2e-4
    dpo = RunConfig.from_dict({"objective": "dpo"})
    assert dpo.loss == "sigmoid" and dpo.beta == 0.1 and dpo.learning_rate == 5e-5  # the objective's own defaults
    assert RunConfig.from_dict({"objective": "dpo", "method": "full"}).learning_rate == 5e-7
    kto = RunConfig.from_dict({"objective": "kto", "loss_type": "apo_zero_unpaired", "beta": "0.2"})
    assert kto.loss == "apo_zero_unpaired" and kto.beta == 0.2
    again = RunConfig.from_yaml(dpo.to_yaml())
    assert again == dpo  # YAML round trip

    cases = [
        ({"loss_type": "ipo"}, "loss_type applies to preference tuning (objective: dpo or kto), but objective is sft"),
        ({"objective": "dpo", "loss_type": "kto"}, "loss_type kto is a KTO loss, not a DPO one"),
        ({"objective": "kto", "loss_type": "ipo"}, "loss_type ipo is a DPO loss, not a KTO one"),
        ({"objective": "dpo", "loss_type": "exo_pair"}, "exo_pair needs label smoothing"),
        ({"objective": "kto", "batch_size": 1}, "batch_size must be at least 2"),
        ({"objective": "dpo", "group_by_length": True}, "group_by_length works with objective: sft only"),
        ({"objective": "dpo", "max_prompt_length": 1024}, "max_prompt_length (1024) must be below max_length (1024)"),
        ({"objective": "dpo", "method": "full", "init_from": "latest"}, "method must be lora or qlora"),
        ({"objective": "ppo"}, "objective must be one of sft, dpo, kto"),
        ({"objective": "dpo", "beta": 0}, "beta must be above 0 for DPO"),  # 0 is GRPO's default, not DPO's
    ]
    for settings, words in cases:
        with pytest.raises(ConfigError) as err:
            RunConfig.from_dict(settings)
        assert words in str(err.value) and "\n" not in str(err.value), (settings, str(err.value))
    with pytest.raises(ConfigError, match=r"run\.yaml:3: loss_type kto is a KTO loss"):
        RunConfig.from_yaml("objective: dpo\nbeta: 0.1\nloss_type: kto\n", source="run.yaml")


def test_loss_types_are_the_installed_trls():
    from trl import DPOConfig, KTOConfig

    dpo = {f.name: f for f in dataclasses.fields(DPOConfig)}["loss_type"]
    assert tuple(re.findall(r"`'(\w+)'`", dpo.metadata["help"])) == DPO_LOSS_TYPES
    kto = {f.name: f for f in dataclasses.fields(KTOConfig)}["loss_type"]
    assert tuple(kto.metadata["choices"]) == KTO_LOSS_TYPES
    assert DPOConfig(output_dir="x", loss_type=["ipo"], use_cpu=True).loss_type == ["ipo"]


def test_train_offers_the_new_settings_as_flags():
    text = _cli("train", "--help").stdout
    for flag in ("--objective", "--beta", "--loss-type", "--max-prompt-length", "--max-completion-length",
                 "--init-from"):
        assert flag in text


# --- data -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["preference.jsonl", "preference_implicit.jsonl", "preference_messages.jsonl"])
def test_every_pair_layout_normalises_to_one_form(name):
    examples = dataset.load_examples(str(FIX / name), objective="dpo")
    for ex in examples:
        assert set(ex) <= {"prompt", "chosen", "rejected", "tools"}
        assert ex["prompt"][-1]["role"] == "user" and all(m["role"] == "assistant" for m in ex["chosen"] + ex["rejected"])
        assert formats.normalise(ex, formats.detect(ex)) == ex  # a mix re-reads normalised examples
    if name == "preference_messages.jsonl":  # UltraFeedback's columns; the shared system + user turns are the prompt
        ex = examples[0]
        assert [m["role"] for m in ex["prompt"]] == ["system", "user"]
        assert ex["chosen"][0]["content"] == "G7007 arrives tomorrow." and ex["rejected"][0]["content"] == "Somewhere."


def test_openai_and_labelled_layouts_and_unpairing():
    openai = {"input": {"messages": [{"role": "user", "content": "Where is A1?"}]},
              "preferred_output": [{"role": "assistant", "content": "Arriving Friday."}],
              "non_preferred_output": [{"role": "assistant", "content": "No idea."}]}
    fmt, ex, problem = formats.check_row(openai, "preference", "dpo")
    assert problem is None and ex["prompt"] == [{"role": "user", "content": "Where is A1?"}]
    labelled = dataset.load_examples(str(FIX / "kto_messages.jsonl"), objective="kto")
    assert [e["label"] for e in labelled] == [True, False]
    assert labelled[0]["completion"] == [{"role": "assistant", "content": "Yes, within 30 days."}]
    assert [m["role"] for m in labelled[0]["prompt"]] == ["system", "user"]
    assert formats.normalise(labelled[0], formats.detect(labelled[0])) == labelled[0]
    good, bad = formats.unpair(ex)
    assert (good["label"], bad["label"]) == (True, False) and bad["completion"] == ex["rejected"]
    # KTO reads pairs too (split in two); "false"/0 labels read as bad
    assert dataset.load_examples(str(FIX / "preference.jsonl"), objective="kto")[0]["chosen"]
    assert formats.check_row({"prompt": "q", "completion": "a", "label": "false"}, "kto", "kto")[1]["label"] is False


def test_bad_pairs_are_listed_by_line(tmp_path):
    rows = [
        {"prompt": "Where is my order A100?", "chosen": "It arrives Friday.", "rejected": "Dunno."},
        {"prompt": "Where is my order A101?", "chosen": "It arrives Friday.", "rejected": "It arrives Friday."},
        {"prompt": "Where is my order A102?", "chosen": "It arrives Monday.", "rejected": "  "},
        {"prompt": "Where is my order A103?", "chosen": "Where is my order A103? It arrives Friday.", "rejected": "No."},
        {"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "x"}],
         "rejected": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "y"}]},
        {"prompt": "", "chosen": "x", "rejected": "y"},
    ]
    path = _write(tmp_path / "bad.jsonl", rows)
    report = dataset.inspect(str(path))
    got = {p.where: p.message for p in report.errors}
    assert report.format == "preference" and report.valid_rows == 1 and sorted(got) == [2, 3, 4, 5, 6]
    assert got[2] == "has the same chosen and rejected answer, so there is no preference to learn"
    assert got[3] == "has an empty rejected answer"
    assert got[4].startswith("has the prompt repeated in the chosen answer ('Where is my order A103?')")
    assert "different prompts (message 1 differs)" in got[5]
    assert "empty" in got[6]
    with pytest.raises(DataError, match=r"bad\.jsonl:2: has the same chosen and rejected answer, .*5 bad rows in all"):
        dataset.load_examples(str(path), objective="dpo")
    # the CLI lists them the same way, in JSON
    out = json.loads(_cli("data", "inspect", path, "--json", ok=(1,)).stdout)
    assert out["bad_rows"] == 5 and out["errors"][0] == {"line": 2, "row": 2, "message": got[2]}


def test_the_objective_decides_what_data_is_accepted(toy_data, pairs_file, labels_file):
    with pytest.raises(RefusedData) as err:
        dataset.load_examples(str(toy_data), objective="dpo")
    assert "is supervised fine-tuning data (chat messages (role / content)): DPO learns from a prompt with a chosen " \
           "and a rejected answer" in str(err.value) and "use objective: sft" in str(err.value)
    with pytest.raises(RefusedData, match="use objective: kto for labelled answers"):
        dataset.load_examples(str(labels_file), objective="dpo")
    with pytest.raises(RefusedData, match=r"preference tuning such as DPO \(objective: dpo\)"):
        dataset.load_examples(str(pairs_file), objective="sft")
    assert len(dataset.load_examples(str(pairs_file), objective="kto")) == 32  # KTO takes pairs
    assert len(dataset.load_examples(str(pairs_file))) == 32  # without an objective the data decides
    assert formats.detect(dataset.load_examples("demo-preference", split="validation")[0]) == "preference"


def test_inspect_reports_pairs_labels_balance_and_lengths(tiny_model, pairs_file, tmp_path):
    out = json.loads(_cli("data", "inspect", pairs_file, "--model", tiny_model, "--max-prompt-length", "4",
                          "--json").stdout)
    assert out["format"] == "preference" and out["preference"]["pairs"] == 32
    pref = out["stats"]["preference"]
    assert pref["pairs"] == 32 and pref["over_max_prompt_length"] == 32
    assert set(pref) >= {"prompt", "chosen", "rejected"} and pref["chosen"]["max"] > pref["rejected"]["max"]
    assert out["stats"]["examples"] == 32 and out["stats"]["sequences"] == 64
    assert any("max_prompt_length 4" in w for w in out["warnings"])

    rows = ([{"prompt": f"q{i}", "completion": "good", "label": True} for i in range(3)]
            + [{"prompt": f"q{i}", "completion": "bad", "label": False} for i in range(12)])
    skewed = _write(tmp_path / "skewed.jsonl", rows)
    out = json.loads(_cli("data", "inspect", skewed, "--json").stdout)
    assert out["preference"]["labelled"] == {"good": 3, "bad": 12} and out["preference"]["good_fraction"] == 0.2
    assert out["preference"]["kto_weights"] == {"desirable_weight": 4.0, "undesirable_weight": 1.0}
    assert any("3 good and 12 bad answers (20% good)" in w for w in out["warnings"])
    text = _cli("data", "inspect", skewed).stdout
    assert "3 answers labelled good and 12 bad (20% good)" in text


def test_render_shows_both_sides_of_a_pair_with_their_masks(tiny_model):
    from transformers import AutoTokenizer

    from engine.data.render import render_row

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    out = render_row(str(FIX / "preference.jsonl"), 1, tok, 64)
    assert out["kind"] == "pair" and out["format"] == "preference"
    for side, answer in (("chosen", "It arrives Friday."), ("rejected", "Dunno.")):
        r = out[side]
        trained = "".join(p for p, t in zip(r["tokens"], r["trained"]) if t)
        assert trained == answer + "<|im_end|>"  # the answer and its end of turn, never the prompt
        assert r["prompt_tokens"] == out["prompt_tokens"] == r["trained"].index(True)
    text = _cli("data", "render", FIX / "preference.jsonl", "--row", "1", "--model", tiny_model).stdout
    assert "CHOSEN" in text and "REJECTED" in text and "prompt 21" in text


# --- the one mask, the reference, in process ---------------------------------------------------------


def _trainer(tiny_model, data, tmp_path, **extra):
    from engine.worker import build_trainer, device_plan, encode_preference_rows, load_model_for

    cfg = _config(tiny_model, data, **extra)
    plan = device_plan()
    model, tok = load_model_for(cfg, plan)
    examples = dataset.load_examples(str(data), objective=cfg.objective)
    rows, counts = encode_preference_rows(tok, examples, cfg)
    return cfg, build_trainer(cfg, model, tok, rows, [], tmp_path / "out", plan), rows, examples, tok


def _sum_logps(model, ids, mask):
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits.float()
    logps = torch.log_softmax(logits[0, :-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    return float((logps * torch.tensor(mask[1:], dtype=torch.float)).sum())


def test_dpo_scores_exactly_the_encode_mask(tiny_model, pairs_file, tmp_path):
    """The batch TRL's DPOTrainer scores is the encode() mask of each side, and the log-probabilities it
    logs are sums over exactly those tokens."""
    import torch

    from engine.data.encode import encode_pair

    cfg, trainer, rows, examples, tok = _trainer(tiny_model, pairs_file, tmp_path)
    pair = encode_pair(tok, examples[0], cfg.max_length)
    assert rows[0]["chosen_input_ids"] == pair.chosen.input_ids
    assert rows[0]["rejected_completion_mask"] == [int(t) for t in pair.rejected.trained]
    batch = trainer.data_collator(rows[:2])
    assert batch["input_ids"].shape[0] == 4  # chosen, chosen, rejected, rejected
    for k, side in enumerate([rows[0]["chosen_completion_mask"], rows[1]["chosen_completion_mask"],
                              rows[0]["rejected_completion_mask"], rows[1]["rejected_completion_mask"]]):
        assert batch["completion_mask"][k, :len(side)].tolist() == side and not batch["completion_mask"][k, len(side):].any()

    model = trainer.model
    expected_c = [_sum_logps(model, r["chosen_input_ids"], r["chosen_completion_mask"]) for r in rows[:2]]
    expected_r = [_sum_logps(model, r["rejected_input_ids"], r["rejected_completion_mask"]) for r in rows[:2]]
    trainer.model.eval()
    with torch.no_grad():
        trainer.compute_loss(model, trainer._prepare_inputs(batch))
    logged = trainer._metrics["eval"]
    assert logged["logps/chosen"][-1] == pytest.approx(sum(expected_c) / 2, rel=1e-4)
    assert logged["logps/rejected"][-1] == pytest.approx(sum(expected_r) / 2, rel=1e-4)


def test_the_lora_reference_is_the_base_with_the_adapter_disabled_not_a_copy(tiny_model, pairs_file, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    base_bytes = sum(p.numel() * p.element_size() for p in
                     AutoModelForCausalLM.from_pretrained(str(tiny_model)).parameters())
    cfg, trainer, rows, _, _ = _trainer(tiny_model, pairs_file, tmp_path)
    model = trainer.model
    assert trainer.ref_model is None and list(model.peft_config) == ["default"]  # no reference model, no ref adapter
    storages = {}  # every distinct storage the trained model holds (a tied embedding counts once)
    for t in [*model.parameters(), *model.buffers()]:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    held = sum(storages.values())
    adapter_bytes = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "lora_" in n)
    # the base once, the adapter, and small buffers; never a second base
    assert base_bytes <= held < base_bytes + adapter_bytes + 0.5 * base_bytes, (held, base_bytes, adapter_bytes)

    # with a trained-looking adapter, TRL's reference log-probabilities are those of the plain base model
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    batch = trainer._prepare_inputs(trainer.data_collator(rows[:2]))
    ref_chosen, _ = trainer.compute_ref_log_probs(model, batch)
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    expected = [_sum_logps(plain, r["chosen_input_ids"], r["chosen_completion_mask"]) for r in rows[:2]]
    assert ref_chosen.tolist() == pytest.approx(expected, rel=1e-4)
    tuned = [_sum_logps(model, r["chosen_input_ids"], r["chosen_completion_mask"]) for r in rows[:2]]
    assert tuned != pytest.approx(expected, rel=1e-3)  # the adapter does change the policy

    # full fine-tuning: the reference is a second, frozen model of its own
    _, full, _, _, _ = _trainer(tiny_model, pairs_file, tmp_path / "full", method="full", learning_rate=1e-5)
    assert full.ref_model is not None
    ours = {p.data_ptr() for p in full.model.parameters()}
    assert not ours & {p.data_ptr() for p in full.ref_model.parameters()}  # its own weights: a second copy


# --- the estimate --------------------------------------------------------------------------------------


def test_estimate_for_dpo_and_kto():
    from engine import estimate as E
    from engine import model_shapes

    arch = model_shapes.architecture_for("demo")
    sft = E.estimate(arch, E.Plan(method="lora", batch_size=8, seq_len=256, device="cpu", lora_dropout=0.0))
    dpo = E.estimate(arch, E.Plan(method="lora", batch_size=8, seq_len=256, device="cpu", lora_dropout=0.0,
                                  objective="dpo"))
    sft16 = E.estimate(arch, E.Plan(method="lora", batch_size=16, seq_len=256, device="cpu", lora_dropout=0.0))
    assert dpo.trainable_params == sft.trainable_params and dpo.memory.weights == sft.memory.weights
    # chosen and rejected in one forward: the activations of 16 sequences, plus one layer for the reference pass
    assert sft16.memory.activations < dpo.memory.activations < sft16.memory.activations * 1.1
    assert any("no second copy" in n for n in dpo.notes) and any("16 sequences" in n for n in dpo.notes)
    kto = E.estimate(arch, E.Plan(method="lora", batch_size=8, seq_len=256, device="cpu", lora_dropout=0.0,
                                  objective="kto"))
    assert sft.memory.activations < kto.memory.activations < dpo.memory.activations
    full_sft = E.estimate(arch, E.Plan(method="full", batch_size=2, seq_len=128, device="cpu"))
    full_dpo = E.estimate(arch, E.Plan(method="full", batch_size=1, seq_len=128, device="cpu", objective="dpo"))
    assert full_dpo.memory.weights == full_sft.memory.weights + arch.total_params * 4  # the reference copy, fp32
    again = E.estimate(arch, E.Plan(method="lora", batch_size=8, seq_len=256, device="cpu", lora_dropout=0.0,
                                    objective="dpo", reference_adapter=True))
    assert again.memory.weights == dpo.memory.weights + dpo.trainable_params * 4  # TRL's frozen adapter copy
    with pytest.raises(ConfigError, match="objective must be one of"):
        E.Plan(objective="ppo").resolved()
    # a RunConfig's plan: DPO batches are padded, dropout off (TRL turns it off), init_from keeps the adapter copy
    cfg = RunConfig.from_dict({"objective": "dpo", "batch_size": 4, "max_length": 128, "init_from": "x"})
    plan = E.plan_for(cfg, device="cpu", lengths=[100, 90, 120, 80, 70])
    assert (plan.batch_size, plan.seq_len, plan.packed, plan.lora_dropout, plan.reference_adapter) == (4, 120, False, 0.0, True)
    assert E.calibration_method("lora", "dpo") == "dpo-lora" and E.calibration_method("lora") == "lora"


def test_estimate_cli_for_dpo():
    out = json.loads(_cli("estimate", "--model", "demo", "--objective", "dpo", "--batch-size", "4", "--seq-len", "256",
                          "--device", "cpu", "--json").stdout)
    assert out["objective"] == "dpo" and out["settings"]["objective"] == "dpo" and not out["settings"]["packed"]
    assert out["trainable_params"] > 0 and any("8 sequences" in n for n in out["notes"])
    text = _cli("estimate", "--model", "demo", "--objective", "dpo", "--batch-size", "4", "--seq-len", "256",
                "--device", "cpu").stdout
    assert "4 pairs = 8 sequences x 256 tokens" in text and "Objective: DPO" in text


# --- real runs through the detached worker ------------------------------------------------------------


def test_a_dpo_run_logs_rewards_evaluates_and_leaves_a_loadable_adapter(tiny_model, pairs_file, tmp_path):
    from engine.launch import start_run
    from engine.run_state import RunHistory

    run = start_run(_config(tiny_model, pairs_file))
    wait_run(run, run_ended, timeout=300)
    info = run.info()
    assert info.state == "completed", (info.message, run.log_tail(30))
    events = run.events()
    start = next(e for e in events if e["type"] == "start")
    assert start["objective"] == "dpo" and start["loss_type"] == "sigmoid" and start["beta"] == 0.1
    assert start["num_examples"] == start["pairs"] == 24 and start["num_eval_examples"] == 8
    assert "the same base with the adapter disabled (no second copy)" in start["reference"]
    assert "Training LoRA with DPO on 24 pairs" in start["message"] and start["batching"] == "padded"
    assert 0 < start["trainable_params"] < start["total_params"] and start["estimated_memory"] > 0
    logs = [e for e in events if e["type"] == "log"]
    assert [e["step"] for e in logs] == list(range(1, 9))
    keys = {"rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen",
            "logps/rejected"}
    assert all(keys <= set(e) for e in logs) and logs[0]["rewards/margins"] == 0.0  # policy = reference at first
    assert logs[-1]["rewards/margins"] > 0 and logs[-1]["loss"] < logs[0]["loss"]  # it learns the preference
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [4, 8] and all({f"eval_{k}" for k in keys} <= set(e) for e in evals)
    assert evals[-1]["eval_rewards/accuracies"] >= 0.75
    status = run.read_status()
    assert status["reward_accuracy"] == logs[-1]["rewards/accuracies"] and status["peak_memory"] > 0
    history = RunHistory().extend(events)
    assert history.objective == "dpo" and len(history.points("rewards/accuracies")) == 8
    assert len(history.points("eval_rewards/margins")) == 2
    log = "\n".join(run.log_tail(200))
    assert "Padding each batch (not padding-free): TRL 1.16's DPO trainer" in log

    # the adapter is a plain PEFT adapter (TRL's reference copy is not left in it) and loads on the base
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert (run.adapter_dir / "adapter_config.json").is_file() and not (run.adapter_dir / "ref").exists()
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)), str(run.adapter_dir))
    assert tuned.active_adapter == "default"

    # tunedeck eval: held-out pairs, base against tuned, saved for the TUI
    from engine.eval_scores import saved_result, table_rows

    proc = _cli("eval", run.id, "--json", "--samples", "2", "--batch-size", "4")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["kind"] == "preference" and result["objective"] == "dpo" and result["scored"] == 8
    rows = {r["condition"]: r for r in result["rows"]}
    assert set(rows) == {"base", "fine-tuned"} and rows["fine-tuned"]["reward_accuracy"] >= 0.75
    assert result["reward_accuracy"] == rows["fine-tuned"]["reward_accuracy"] and "reward_accuracy" not in rows["base"]
    assert rows["fine-tuned"]["mean_margin"] > rows["base"]["mean_margin"]
    assert result["reward_margin"] == pytest.approx(
        0.1 * (rows["fine-tuned"]["mean_margin"] - rows["base"]["mean_margin"]), rel=1e-6)
    assert len(result["samples"]) == 2 and set(result["samples"][0]["answers"]) == {"base", "fine-tuned"}
    assert result["verdict"].startswith("DPO moved the model toward the chosen answers")
    saved = saved_result(run.dir)
    assert saved["reward_accuracy"] == result["reward_accuracy"]
    header, cells = table_rows(saved, short=True)
    assert len(cells) == 2 and all(len(c) == len(header) for c in cells)
    text = _cli("eval", run.id, "--samples", "0").stdout
    assert "reward accuracy" in text and "prefers chosen" in text

    # export: a config `trl dpo` parses with TRL's own parser, and the pairs beside it
    from trl import DatasetMixtureConfig, DPOConfig, ModelConfig, ScriptArguments, TrlParser

    path = tmp_path / "dpo.yaml"
    out = json.loads(_cli("export", run.id, "--trl-config", path, "--json").stdout)["trl_config"]
    assert out["command"] == "trl dpo" and out["train_rows"] == 24 and out["eval_rows"] == 8
    assert "trl dpo --config dpo.yaml" in path.read_text()
    script, dpo, model, _ = TrlParser((ScriptArguments, DPOConfig, ModelConfig, DatasetMixtureConfig)
                                      ).parse_args_and_config(["--config", str(path)])
    assert dpo.beta == 0.1 and dpo.loss_type == ["sigmoid"] and dpo.max_length == 64 and dpo.learning_rate == 5e-3
    assert dpo.per_device_train_batch_size == 4 and dpo.max_steps == 8 and dpo.gradient_checkpointing is False
    assert model.use_peft and model.lora_r == 8 and model.model_name_or_path == str(tiny_model)
    first = json.loads((tmp_path / "dpo-data" / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"prompt", "chosen", "rejected"} and first["chosen"][0]["role"] == "assistant"


def test_trl_dpo_trains_from_the_exported_config(tiny_model, pairs_file, tmp_path):
    """Not only parsed: the real `trl dpo --config FILE` trains from what export wrote."""
    import os

    from tiny_run import adapter_run

    from engine.runs import Run

    run = adapter_run(tiny_model, data=str(pairs_file))
    config = run.config()
    config.update(objective="dpo", learning_rate=1e-3, max_length=64, batch_size=4)
    Run(run.dir).config_path.write_text(RunConfig.from_dict(config).to_yaml())
    path = tmp_path / "dpo.yaml"
    _cli("export", run.id, "--trl-config", path)
    trl = Path(sys.executable).parent / "trl"
    proc = subprocess.run([str(trl), "dpo", "--config", str(path), "--max_steps", "2", "--eval_steps", "2",
                           "--save_strategy", "no"], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rewards/accuracies" in proc.stdout + proc.stderr
    assert (tmp_path / "dpo-output" / "adapter_model.safetensors").is_file()


def test_dpo_stop_leaves_a_checkpoint_and_resume_continues(tiny_model, pairs_file):
    from engine.launch import resume_run, stop_run
    from engine.launch import start_run
    from engine.run_state import effective_events

    run = start_run(_config(tiny_model, pairs_file, max_steps=400, eval_steps=0, save_steps=100))
    wait_run(run, lambda r: logged_step(r) >= 3, timeout=300)
    message = stop_run(run.id, grace=120)
    info = run.info()
    assert info.state == "stopped" and f"Stopped at step {info.step} of 400" in message
    step = info.step
    assert run.latest_checkpoint().name == f"checkpoint-{step}"
    resume_run(run.id)
    wait_run(run, lambda r: logged_step(r) >= step + 2 and r.info().state == "running", timeout=300)
    stop_run(run.id, grace=120)
    events = run.events()
    starts = [e for e in events if e["type"] == "start"]
    assert starts[-1]["resumed_from"] == f"checkpoint-{step}" and starts[-1]["objective"] == "dpo"
    logs = [e for e in effective_events(events) if e["type"] == "log"]
    assert [e["step"] for e in logs] == list(range(1, run.info().step + 1))
    assert all("rewards/accuracies" in e for e in logs)


def test_a_kto_run_on_labelled_answers(tiny_model, labels_file):
    from engine.launch import start_run

    run = start_run(_config(tiny_model, labels_file, objective="kto", max_steps=6, eval_steps=3, save_steps=6))
    wait_run(run, run_ended, timeout=300)
    assert run.info().state == "completed", (run.info().message, run.log_tail(30))
    events = run.events()
    start = next(e for e in events if e["type"] == "start")
    assert start["objective"] == "kto" and start["loss_type"] == "kto" and start["good"] + start["bad"] == 48
    assert "with KTO on 48 answers labelled good or bad" in start["message"]
    logs = [e for e in events if e["type"] == "log"]
    assert all({"kl", "rewards/chosen", "rewards/rejected", "logps/chosen"} <= set(e) for e in logs)
    evals = [e for e in events if e["type"] == "eval"]
    assert evals and all("eval_kl" in e and "eval_rewards/margins" in e for e in evals)
    result = json.loads(_cli("eval", run.id, "--json", "--samples", "1").stdout.strip().splitlines()[-1])
    assert result["kind"] == "preference" and not result["pairs"] and result["scored"] == 16
    assert "label_accuracy" in result and result["verdict"].startswith("On 16 held-out labelled answers")


def test_kto_on_pairs_splits_them_and_batches_the_kl_term_from_the_same_tokens(tiny_model, pairs_file, tmp_path):
    cfg, trainer, rows, examples, _ = _trainer(tiny_model, pairs_file, tmp_path, objective="kto")
    assert len(rows) == 2 * len(examples) and sum(r["label"] for r in rows) == len(examples)
    some = rows[:3]
    batch = trainer.data_collator(some)
    # KL sequence k: the prompt of row k with the answer of row k-1 of the batch (the first with the last)
    for k in range(3):
        prompt = some[k]["completion_mask"].index(1)
        other = some[k - 1]
        cut = other["completion_mask"].index(1)
        want = some[k]["input_ids"][:prompt] + other["input_ids"][cut:]
        assert batch["KL_input_ids"][k, :len(want)].tolist() == want
        assert batch["KL_completion_mask"][k, :len(want)].tolist() == [0] * prompt + other["completion_mask"][cut:]
    assert batch["label"].tolist() == [r["label"] for r in some]
    assert trainer.ref_model is None and trainer.args.train_sampling_strategy == "sequential"


def test_dpo_from_an_sft_runs_adapter(tiny_model, pairs_file):
    """SFT, then DPO: init_from loads the SFT adapter trainable; the reference is that adapter, frozen, so the
    rewards start at exactly zero (with the base as reference they would not: the SFT adapter moved it)."""
    from tiny_run import adapter_run

    from engine.launch import start_run

    sft = adapter_run(tiny_model)
    run = start_run(_config(tiny_model, pairs_file, init_from=sft.id, max_steps=3, eval_steps=3, save_steps=3,
                            lora={"r": 4, "alpha": 8}))
    wait_run(run, run_ended, timeout=300)
    assert run.info().state == "completed", (run.info().message, run.log_tail(30))
    events = run.events()
    start = next(e for e in events if e["type"] == "start")
    assert start["init_from"]["run"] == sft.id and start["init_from"]["weights"] == "adapter"
    assert "the init_from adapter, frozen" in start["reference"]
    logs = [e for e in events if e["type"] == "log"]
    assert logs[0]["rewards/chosen"] == 0.0 and logs[0]["rewards/rejected"] == 0.0
    assert not (run.adapter_dir / "ref").exists()
    from safetensors.torch import load_file

    a = load_file(str(run.adapter_dir / "adapter_model.safetensors"))
    b = load_file(str(sft.adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and any(not (a[k] == b[k]).all() for k in a)  # trained on from the SFT adapter

    # eval compares base, the start (the SFT adapter) and the tuned model; rewards are against the start
    result = json.loads(_cli("eval", run.id, "--json", "--samples", "0").stdout.strip().splitlines()[-1])
    assert [r["condition"] for r in result["rows"]] == ["base", "start", "fine-tuned"]
    assert result["reference"] == "start" and result["init_from"] == sft.id
    assert [("reward_accuracy" in r) for r in result["rows"]] == [False, False, True]
    assert "against the model it started from" in result["verdict"]


def test_mistakes_end_in_one_sentence(tiny_model, toy_data, pairs_file, tmp_path):
    from engine.launch import start_run

    # DPO on SFT data: refused by the pre-flight with the sentence, before any run folder or training
    from engine.errors import TunedeckError
    from engine.runs import list_runs

    before = len(list_runs())
    with pytest.raises(TunedeckError) as refused:
        start_run(_config(tiny_model, toy_data, max_steps=2))
    message = str(refused.value)
    assert "is supervised fine-tuning data" in message and "use objective: sft" in message and "\n" not in message
    assert len(list_runs()) == before

    # init_from a fully fine-tuned run, and a run that does not exist
    from engine.runs import create_run

    full = create_run("model: x\nmethod: full\n", model="x", method="full")
    (full.model_dir).mkdir(parents=True)
    (full.model_dir / "config.json").write_text("{}")
    for ref, words in ((full.id, "was fully fine-tuned"), ("no-such-run", "init_from: ")):
        run = start_run(_config(tiny_model, pairs_file, max_steps=2, init_from=ref))
        wait_run(run, run_ended, timeout=300)
        assert run.info().state == "failed" and words in run.info().message, run.info().message

    # a diverging DPO run fails with the NaN sentence
    run = start_run(_config(tiny_model, pairs_file, learning_rate=1e30, max_steps=6, eval_steps=0))
    wait_run(run, run_ended, timeout=300)
    info = run.info()
    assert info.state == "failed" and "training diverged; lower learning_rate (now 1e+30" in info.message


def test_dpo_with_two_processes_on_the_cpu(tiny_model, pairs_file):
    """The same several-process path as SFT (accelerate launch, torchrun, gloo): each event once, the
    reward metrics gathered over both processes."""
    from engine.launch import start_run

    run = start_run(_config(tiny_model, pairs_file, processes=2, max_steps=4, eval_steps=0, save_steps=4))
    wait_run(run, run_ended, timeout=300)
    assert run.info().state == "completed", (run.info().message, run.log_tail(40))
    events = run.events()
    start = next(e for e in events if e["type"] == "start")
    assert start["processes"] == 2 and start["backend"] == "gloo" and start["objective"] == "dpo"
    logs = [e for e in events if e["type"] == "log"]
    assert [e["step"] for e in logs] == [1, 2, 3, 4] and all("rewards/accuracies" in e for e in logs)
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()


def test_a_qlora_dpo_run_on_the_cpu(tiny_model, pairs_file):
    """QLoRA too: the 4-bit base with the adapter disabled is the reference."""
    pytest.importorskip("bitsandbytes")
    from engine.launch import start_run

    run = start_run(_config(tiny_model, pairs_file, method="qlora", max_steps=6, eval_steps=0, save_steps=6))
    wait_run(run, run_ended, timeout=300)
    assert run.info().state == "completed", (run.info().message, run.log_tail(30))
    events = run.events()
    start = next(e for e in events if e["type"] == "start")
    assert start["method"] == "qlora" and "adapter disabled" in start["reference"]
    logs = [e for e in events if e["type"] == "log"]
    assert logs[0]["rewards/margins"] == 0.0 and logs[-1]["rewards/margins"] > 0
