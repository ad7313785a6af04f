"""One row through the model's chat template, as token pieces marked trained or not.

The mask comes from ``encode.encode`` — the code path the worker trains with. Imports
transformers (through the tokenizer); the TUI reaches this through a child process
(``tunedeck data render`` or the warm ``tunedeck data serve`` helper).
"""

from __future__ import annotations

from ..errors import DataError
from .dataset import check, detect_file_format
from .hub import open_source
from .encode import encode


def render_example(tokenizer, example: dict, max_length: int | None = None) -> dict:
    enc = encode(tokenizer, example, max_length, with_pieces=True)
    return {
        "tokens": enc.pieces,
        "input_ids": enc.input_ids,
        "trained": enc.trained,
        "text": enc.text,
        "length": len(enc.input_ids),
        "full_length": enc.full_length,
        "truncated": enc.truncated,
        "trained_tokens": enc.trained_tokens,
        "max_length": max_length,
    }


def row_example(ref: str, row: int, *, split: str = "train") -> tuple[dict, dict]:
    """(normalised example, where it is) for the 1-based row number ``row``; DataError if bad."""
    source = open_source(ref, split=split)
    try:
        if row < 1:
            raise DataError(f"Row numbers start at 1; {row} is not a row of {source.display}.")
        file_format = detect_file_format(source)
        try:
            raw = source.get(row - 1)
        except IndexError:
            raise DataError(f"{source.display} has {len(source)} rows; there is no row {row}.") from None
        checked = check(raw, file_format)
        where = {source.unit: raw.where, "row": row, "format": checked.format or file_format}
        if checked.problem is not None:
            loc = f"{source.display}:{raw.where}" if source.unit == "line" else f"{source.display} record {raw.where}"
            raise DataError(f"{loc}: {checked.problem}; fix this row to render it.", exit_code=1)
        return checked.example, where
    finally:
        source.close()


def render_row(ref: str, row: int, tokenizer, max_length: int | None = None, *, split: str = "train") -> dict:
    example, where = row_example(ref, row, split=split)
    out = render_example(tokenizer, example, max_length)
    out.update(where)
    out["example"] = example
    return out
