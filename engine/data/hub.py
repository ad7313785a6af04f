"""Hugging Face hub datasets: the one module that imports ``datasets``. ``open_source`` and
``load_examples`` here take any data reference, hub ids included; everything else about rows lives
in ``engine.data.dataset`` (ML-free, shared with the TUI).
"""

from __future__ import annotations

import os

from ..errors import DataError
from . import dataset
from .reader import RecordsSource, Source


def open_source(ref: str, *, split: str = "train") -> Source:
    """A lazy Source for any data reference: a file, a folder, demo, or a hub dataset id."""
    if dataset.is_local(ref):
        return dataset.open_source(ref, split=split)
    return open_hub(ref.strip(), split)


def load_examples(ref, *, split: str = "train", seed: int = dataset.DEFAULT_SEED) -> list[dict]:
    """``dataset.load_examples`` for any reference, hub ids included, or a list of them (mixed)."""
    if isinstance(ref, (list, tuple)):
        return dataset.load_mix(ref, load_examples, split=split, seed=seed)
    if dataset.is_local(ref):
        return dataset.load_examples(ref, split=split)
    return dataset.load_examples(open_hub(ref.strip(), split), split=split)


def open_hub(ref: str, split: str) -> Source:
    offline = any(os.environ.get(k, "0") not in ("", "0", "false", "False") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    try:
        import datasets

        ds = datasets.load_dataset(ref, split=split)
    except Exception as exc:  # datasets raises many types: not found, offline, no such split
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if offline:
            why = "the Hub is offline and it is not in the local datasets cache"
        raise DataError(
            f"Cannot open hub dataset '{ref}' (split {split}): {why}; download it where there is network "
            "and save it with save_to_disk, or pass a local file."
        ) from None
    return RecordsSource(ref, ds)
