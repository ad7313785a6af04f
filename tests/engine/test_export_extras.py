"""The rest of issue 18 that needs no GGUF converter: the Modelfile's TEMPLATE renders like the chat
template (its Go template through our renderer), the model card, trackers (TensorBoard event files
with the loss in a real tiny run's folder; a missing tracker package is one pre-flight sentence)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from engine.data.encode import FALLBACK_CHAT_TEMPLATE
from engine.modelfile import (TemplateShapeError, go_template, modelfile_text, ollama_values, read_modelfile,
                              render_go_template, role_blocks)
from tiny_model import TOOL_CHAT_TEMPLATE
from tiny_run import adapter_run, trained_run

SMOL = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
        "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
GEMMA = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{% set sys = message['content'] %}"
         "{% else %}{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\n' + "
         "(sys + '\n\n' if sys is defined and loop.index0 == 1 else '') + message['content'] + '<end_of_turn>\n' }}"
         "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "My order A12345 never arrived."}],
    [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Where is my refund?"},
     {"role": "assistant", "content": '{"category": "billing"}'}, {"role": "user", "content": "And now?\nStill nothing."}],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}],
]


def _jinja(template: str):
    from transformers.utils.chat_template_utils import render_jinja_template

    def render(messages, gen):
        rendered, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                            add_generation_prompt=gen, bos_token="<|begin_of_text|>")
        return rendered[0]
    return render


@pytest.mark.parametrize("template", [FALLBACK_CHAT_TEMPLATE, SMOL, LLAMA3, TOOL_CHAT_TEMPLATE],
                         ids=["chatml", "smollm2", "llama3", "qwen-tools"])
def test_modelfile_template_renders_like_the_chat_template(template):
    render = _jinja(template)
    blocks = role_blocks(render)
    go = go_template(blocks)
    text = modelfile_text("m.gguf", go, ["<|im_end|>"], blocks.default_system)
    parsed = read_modelfile(text)
    assert parsed["template"] == go and parsed["from"] == "./m.gguf" and parsed["stops"] == ["<|im_end|>"]
    for conv in CONVERSATIONS:
        # what Ollama hands the template: the system messages as .System, or the Modelfile's SYSTEM
        assert render_go_template(parsed["template"], ollama_values(conv, parsed["system"])) == render(conv, True)


def test_a_template_of_another_shape_is_not_guessed():
    with pytest.raises(TemplateShapeError):
        role_blocks(_jinja(GEMMA))
    # a default system prompt written differently from the system turns: not one block per message
    with pytest.raises(TemplateShapeError):
        role_blocks(_jinja(SMOL.replace("message['role'] + '\n'", "message['role'] + ' '")))
    # a consistent template translates as itself: its TEMPLATE differs from the original's rendering
    other = FALLBACK_CHAT_TEMPLATE.replace("message['role'] + '\n'", "message['role'] + ' '")
    conv = CONVERSATIONS[1]
    go = go_template(role_blocks(_jinja(other)))
    assert render_go_template(go, ollama_values(conv)) == _jinja(other)(conv, True) != _jinja(FALLBACK_CHAT_TEMPLATE)(conv, True)


def test_go_renderer_subset():
    values = {"System": "", "Messages": [{"Role": "user", "Content": "a"}, {"Role": "assistant", "Content": "b"}]}
    t = ('{{ if .System }}S{{ else }}none{{ end }}|{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice '
         '$.Messages $i)) 1 }}{{ .Role }}={{ .Content }}{{ if not $last }},{{ end }}{{ end }}|{{ "{{x}}" }}')
    assert render_go_template(t, values) == "none|user=a,assistant=b|{{x}}"
    assert render_go_template("a  {{- .System -}}  b", {"System": "X"}) == "aXb"


def _eval_json(run_dir: Path) -> None:
    rows = [{"label": "base, zero-shot", "exact_match": 0.0, "json_valid": 0.4, "field_accuracy": 0.3},
            {"label": "fine-tuned", "exact_match": 0.5, "json_valid": 1.0, "field_accuracy": 0.9}]
    (run_dir / "eval.json").write_text(json.dumps({
        "run": run_dir.name, "weights": "adapter", "split": "validation split", "scored": 60, "k": 3,
        "structured": True, "rows": rows, "verdict": "Fine-tuning was worth it.",
        "general": {"n_prompts": 24, "passage_words": 300, "seconds": 3.0, "verdict": "General ability kept.",
                    "rows": [{"label": "base", "perplexity": 12.5, "correct": 0.5, "n_correct": 6, "n_answerable": 12,
                              "follows": 0.75, "n_follows": 9, "n_checked": 12, "mean_words": 20.0},
                             {"label": "fine-tuned", "perplexity": 13.1, "correct": 0.5, "n_correct": 6,
                              "n_answerable": 12, "follows": 0.7, "n_follows": 8, "n_checked": 12, "mean_words": 18.0}]}}))


def test_model_card_is_written_with_every_export(tiny_model, tmp_path):
    from engine.export import export_run

    run = adapter_run(tiny_model)
    export_run(run.id, tmp_path / "plain")
    card = (tmp_path / "plain" / "README.md").read_text()
    assert card.startswith("---\nbase_model: ") and "library_name: peft" in card
    assert "340 trained, 60 held out" in card and "| lora.r | 4 |" in card and "Not evaluated yet" in card
    assert "PeftModel.from_pretrained(base, '.')" in card
    _eval_json(run.dir)
    export_run(run.id, tmp_path / "merged", merged=True)
    card = (tmp_path / "merged" / "README.md").read_text()
    assert "| fine-tuned | 50% | 100% | 90% |" in card and "Fine-tuning was worth it." in card
    assert "### Forgetting probe" in card and "General ability kept." in card and "24 everyday prompts" in card
    assert "library_name: transformers" in card
    assert (run.dir / "model-card.md").read_text() == card


def _scalars(folder: Path) -> dict[str, list[float]]:
    """Every scalar in the TensorBoard event files under ``folder`` (TFRecord framing, Event protos)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[float]] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data, pos = path.read_bytes(), 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append(value.simple_value)
    return out


def test_tensorboard_event_files_in_the_run_folder(tiny_model, toy_data):
    pytest.importorskip("tensorboardX")
    run = trained_run(tiny_model, data=str(toy_data), max_steps=4, logging_steps=1, eval_steps=0, save_steps=4,
                      report_to=["tensorboard"])
    assert list((run.dir / "tensorboard").glob("events.out.tfevents.*"))
    scalars = _scalars(run.dir / "tensorboard")
    assert len(scalars.get("train/loss", [])) >= 3
    assert all(v > 0 for v in scalars["train/loss"])


def test_a_missing_tracker_is_one_preflight_sentence(monkeypatch):
    import importlib.util

    from engine.errors import TunedeckError
    from engine.preflight import trackers

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(TunedeckError) as exc:
        trackers(["tensorboard", "wandb"])
    assert str(exc.value) == ("report_to: wandb is not installed; run: pip install wandb "
                              "(or remove it from report_to).")


def test_train_with_a_tracker_that_is_not_installed_starts_nothing(tiny_model, toy_data, tunedeck_home):
    """Plain `tunedeck train` (not only --check) refuses a missing tracker in one sentence, before a run folder
    is made (before the fix the worker started and crashed importing it)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    proc = subprocess.run([sys.executable, "-m", "engine", "train", "--model", str(tiny_model), "--data", str(toy_data),
                           "--max-steps", "1", "--report-to", "wandb"], capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert "report_to: wandb is not installed; run: pip install wandb" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tunedeck_home / "runs").exists() or not any((tunedeck_home / "runs").iterdir())


def test_trackers_get_offline_friendly_places_in_the_run_folder(monkeypatch, tmp_path):
    import os

    from engine.config import RunConfig
    from engine.worker import tracker_setup

    names = ("WANDB_MODE", "WANDB_DIR", "WANDB_NAME", "TENSORBOARD_LOGGING_DIR", "MLFLOW_TRACKING_URI",
             "MLFLOW_RUN_NAME", "TRACKIO_DIR")
    for name in names:  # restored (absent) after the test
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    cfg = RunConfig.from_dict({"report_to": "tensorboard, wandb,mlflow"})
    run_dir = tmp_path / "run"
    assert tracker_setup(cfg, run_dir / "checkpoints") == ["tensorboard", "wandb", "mlflow"]
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(run_dir / "tensorboard")
    assert os.environ["WANDB_MODE"] == "offline"  # HF_HUB_OFFLINE is set for every test: no network
    assert os.environ["WANDB_DIR"] == str(run_dir) and os.environ["MLFLOW_TRACKING_URI"] == (run_dir / "mlruns").as_uri()
    assert tracker_setup(RunConfig(), run_dir / "checkpoints") == []
