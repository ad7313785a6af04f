"""Training data: open any common fine-tuning file lazily, detect its format, point at bad rows,
normalise rows to chat ``messages`` (or ``text``), and compute the trained-token mask.

The contract the trainer relies on (hub dataset ids included):

    load_examples(ref, split="train", seed=42) -> list[dict]   # normalised examples, or DataError;
                                                               # ref may be a list of sources (mixed)
    has_validation_split(ref) -> bool
    encode.encode(tokenizer, example, max_length)      # the one trained-token mask

Data that is not supervised fine-tuning data (preference pairs, KTO labels, prompts only, labelled
text, images) raises ``RefusedData`` whose ``kind`` says what it is (``formats.REFUSED``).

``dataset`` (rows, formats, problems) imports only the standard library (and pyarrow for
Parquet/Arrow): the TUI and the launcher use it directly. ``hub`` is the one module that imports
``datasets``; tokenizer work lives in ``stats``/``render`` and imports transformers lazily.
"""

from __future__ import annotations

from .dataset import (
    Problem,
    RefusedData,
    Report,
    detect_file_format,
    has_validation_split,
    inspect,
    is_local,
)
from .formats import FORMATS
from .hub import load_examples, open_source

__all__ = [
    "FORMATS",
    "Problem",
    "RefusedData",
    "Report",
    "detect_file_format",
    "has_validation_split",
    "inspect",
    "is_local",
    "load_examples",
    "open_source",
]
