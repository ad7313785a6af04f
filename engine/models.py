"""Load models: materialize a reference into a folder ``from_pretrained`` reads fast, then load the
tokenizer or the model. Imports transformers (lazily); what a reference means is ``engine.model_refs``.

GGUF files are de-quantised by transformers on every load (about 15 s for the demo), so the first
load converts them once into a safetensors folder under the user cache dir; later loads read that.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .model_refs import (  # noqa: F401 - re-exported: callers that load also resolve
    DEMO,
    DEMO_NAME,
    ModelSource,
    Progress,
    gguf_cache_folder,
    is_materialized,
    resolve,
)


def materialize(src: ModelSource | str, progress: Progress | None = None) -> str:
    """Return something ``from_pretrained`` loads fast: a folder or a hub id.

    GGUF sources are de-quantised once into a safetensors cache. A model loaded from GGUF refuses
    ``save_pretrained``, so it is rebuilt from its config and given the state dict.
    """
    if isinstance(src, str):
        src = resolve(src)
    if src.kind in ("folder", "hub"):
        return src.location
    gguf = src.gguf_file
    target = gguf_cache_folder(gguf)
    if (target / "model.safetensors").is_file():
        return str(target)
    say = progress or (lambda msg, frac: None)
    say(f"Converting {gguf.name} to a safetensors cache (once; about 15 s)", 0.0)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    say("Tokenizer read; de-quantising weights", 0.2)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    say("Weights de-quantised; writing safetensors", 0.8)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "tunedeck-source.json").write_text(json.dumps({"gguf": str(gguf)}) + "\n")
        if target.exists():  # another process won the race
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say("Model cached", 1.0)
    return str(target)


def load_tokenizer(ref: str, progress: Progress | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(materialize(ref, progress), trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(ref: str, *, dtype=None, progress: Progress | None = None, **kwargs):
    """Load (model, tokenizer) for inference or training. ``trust_remote_code`` stays off."""
    import torch
    from transformers import AutoModelForCausalLM

    location = materialize(ref, progress)
    model = AutoModelForCausalLM.from_pretrained(
        location, dtype=dtype or torch.float32, trust_remote_code=False, **kwargs
    )
    return model, load_tokenizer(location)


def config_json(ref: str) -> dict:
    """The model's config.json as a dict, without loading weights (for estimates)."""
    src = resolve(ref)
    if src.kind == "folder":
        return json.loads((Path(src.location) / "config.json").read_text())
    if src.kind in ("demo", "gguf") and is_materialized(src):
        return json.loads((gguf_cache_folder(src.gguf_file) / "config.json").read_text())
    if src.kind == "demo":
        bundled = Path(__file__).parent / "builtin" / "configs" / "smollm2-135m.json"
        if bundled.is_file():
            return json.loads(bundled.read_text())
    from transformers import AutoConfig

    location = materialize(src) if src.kind != "hub" else src.location
    return AutoConfig.from_pretrained(location).to_dict()
