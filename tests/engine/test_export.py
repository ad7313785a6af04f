"""Export: the adapter and the merged model load with plain transformers/peft in a clean process
(Tunedeck's packages blocked), the merged model generates the same greedy tokens as
base + adapter, and the TRL config is accepted by TRL's own parser and data loader."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.errors import TunedeckError
from engine.export import export_run, write_trl_config
from tiny_run import adapter_run

# Tunedeck's own packages are made unimportable, so only transformers/peft can do the loading.
BLOCK = "import sys; sys.modules.update(engine=None, tui=None, themes=None); "
PROMPT = [{"role": "user", "content": "My order A12345 never arrived."}]

GENERATE = BLOCK + """
import json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
{load}
tok = AutoTokenizer.from_pretrained({tok!r})
text = tok.apply_chat_template({prompt!r}, tokenize=False, add_generation_prompt=True)
ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
with torch.no_grad():
    out = model.generate(ids, max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id)
    logits = model(ids).logits[0, -1]
print(json.dumps({{"tokens": out[0, ids.shape[1]:].tolist(), "logits": logits[:50].tolist(),
                  "template": tok.chat_template is not None}}))
"""


def _clean_python(code: str, cwd) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_merged_export_generates_the_same_tokens_as_base_plus_adapter(tiny_model, tmp_path):
    run = adapter_run(tiny_model)
    adapter_out, merged_out = tmp_path / "adapter-export", tmp_path / "merged-export"
    a = export_run(run.id, adapter_out)
    m = export_run(run.id, merged_out, merged=True)
    assert a["export"] == "adapter" and m["export"] == "merged"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(a["files"])
    assert "model.safetensors" in m["files"] and not any(f.endswith(".bin") for f in m["files"])
    assert "adapter_config.json" not in m["files"]
    assert json.loads((adapter_out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model)

    with_adapter = _clean_python(GENERATE.format(
        load=f"from peft import PeftModel\nmodel = PeftModel.from_pretrained("
             f"AutoModelForCausalLM.from_pretrained({str(tiny_model)!r}), {str(adapter_out)!r}).eval()",
        tok=str(adapter_out), prompt=PROMPT), tmp_path)
    merged = _clean_python(GENERATE.format(
        load=f"model = AutoModelForCausalLM.from_pretrained({str(merged_out)!r}).eval()",
        tok=str(merged_out), prompt=PROMPT), tmp_path)
    base = _clean_python(GENERATE.format(
        load=f"model = AutoModelForCausalLM.from_pretrained({str(tiny_model)!r}).eval()",
        tok=str(tiny_model), prompt=PROMPT), tmp_path)
    # transformers' own PEFT integration reads the adapter folder directly, base found from its config
    auto = _clean_python(GENERATE.format(
        load=f"model = AutoModelForCausalLM.from_pretrained({str(adapter_out)!r}).eval()",
        tok=str(adapter_out), prompt=PROMPT), tmp_path)

    assert merged["template"] and with_adapter["template"]
    assert merged["tokens"] == with_adapter["tokens"] == auto["tokens"]
    assert merged["logits"] == pytest.approx(with_adapter["logits"], abs=1e-4)
    assert base["logits"] != pytest.approx(with_adapter["logits"], abs=1e-3)  # the adapter does something


def test_export_from_a_stopped_runs_checkpoint_and_refusals(tiny_model, tmp_path):
    run = adapter_run(tiny_model, where="checkpoint")
    out = export_run(run.id, tmp_path / "from-checkpoint")
    assert out["from"] == "checkpoint-5" and "adapter_model.safetensors" in out["files"]
    assert "trainer_state.json" not in out["files"]

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("user file")
    with pytest.raises(TunedeckError, match="not an empty folder"):
        export_run(run.id, taken)
    assert (taken / "mine.txt").read_text() == "user file"  # nothing of the user's is touched
    with pytest.raises(TunedeckError, match="does not exist"):
        export_run(run.id, tmp_path / "no" / "such" / "dir")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial folder left behind


def test_cli_export_json(tiny_model, tmp_path):
    run = adapter_run(tiny_model)
    proc = subprocess.run([sys.executable, "-m", "engine", "export", run.id, "--to", str(tmp_path / "x"), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["export"] == "adapter"
    again = subprocess.run([sys.executable, "-m", "engine", "export", run.id, "--to", str(tmp_path / "x")],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "Traceback" not in again.stderr
    assert again.stderr.strip().count("\n") == 0 and "not an empty folder" in again.stderr


def test_trl_config_parses_with_trls_own_parser(tiny_model, tmp_path):
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig, TrlParser

    run = adapter_run(tiny_model)
    path = tmp_path / "sft.yaml"
    info = write_trl_config(run.id, path)
    assert info["train_rows"] == 340 and info["eval_rows"] == 60  # the demo's own split
    parser = TrlParser((ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig))
    script, sft, model, _ = parser.parse_args_and_config(["--config", str(path)])
    assert model.model_name_or_path == str(tiny_model)
    assert model.use_peft and model.lora_r == 4 and model.lora_alpha == 8 and model.lora_target_modules in ("all-linear", ["all-linear"])
    assert model.dtype == "float32" and sft.gradient_checkpointing is False  # as the worker trained it
    assert sft.per_device_train_batch_size == 8 and sft.num_train_epochs == 1 and sft.learning_rate == 2e-4
    assert sft.completion_only_loss is True and sft.eval_strategy == "steps" and sft.eval_steps == 25
    assert script.dataset_test_split == "validation"

    from datasets import load_dataset

    data = load_dataset(script.dataset_name)  # exactly what `trl sft` does with these arguments
    assert set(data) == {"train", "validation"} and len(data["train"]) == 340
    row = data["train"][0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["completion"][0]["role"] == "assistant" and row["completion"][0]["content"].startswith("{")
    with pytest.raises(TunedeckError, match="already exists"):
        write_trl_config(run.id, path)


def test_trl_sft_trains_from_the_exported_config(tiny_model, tmp_path):
    """Not only parsed: the real `trl sft --config FILE` trains two steps from it, and writes an adapter."""
    import os
    from pathlib import Path

    run = adapter_run(tiny_model)
    path = tmp_path / "sft.yaml"
    write_trl_config(run.id, path)
    trl = Path(sys.executable).parent / "trl"
    proc = subprocess.run([str(trl), "sft", "--config", str(path), "--max_steps", "2", "--eval_steps", "2",
                           "--save_strategy", "no"], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval_loss" in proc.stdout + proc.stderr
    assert (tmp_path / "sft-output" / "adapter_model.safetensors").is_file()
