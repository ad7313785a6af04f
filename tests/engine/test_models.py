import pytest

from engine import models
from engine.errors import ModelNotFound


def test_resolve_demo_finds_the_gguf_without_importing_it():
    src = models.resolve("demo")
    assert src.kind == "demo" and src.location.endswith(".gguf")


def test_resolve_folder_and_errors(tiny_model, tmp_path):
    assert models.resolve(str(tiny_model)).kind == "folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFound, match="no config.json"):
        models.resolve(str(empty))
    with pytest.raises(ModelNotFound, match="does not exist"):
        models.resolve(str(tmp_path / "missing.gguf"))


def test_hub_id_offline_is_one_clear_sentence():
    with pytest.raises(ModelNotFound, match="offline"):
        models.resolve("nobody-here/no-such-model-xyz")


def test_demo_model_answers_a_prompt(demo_model_dir):
    model, tokenizer = models.load_model("demo")
    assert models.materialize("demo") == demo_model_dir  # second call reads the cache
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
