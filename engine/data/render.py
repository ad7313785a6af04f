"""One row through the model's chat template, as token pieces marked trained or not.

The mask comes from ``encode.encode`` — the code path the worker trains with. Imports
transformers (through the tokenizer); the TUI reaches this through a child process
(``tunedeck data render`` or the warm ``tunedeck data serve`` helper).
"""

from __future__ import annotations

from ..errors import DataError
from . import formats
from .dataset import RefusedData, check, detect_file_format
from .hub import open_source
from .encode import encode, special_token_text as find_special_text


def special_text_warnings(found: list[dict], special_token_text: str) -> list[str]:
    """One sentence per place that holds special-token text, naming the token."""
    fate = ("stays literal text (special_token_text: token makes it the special token)"
            if special_token_text == "literal" else "becomes the special token (special_token_text: token)")
    return [f"{f['place']} contains {f['token']}, the text of a special token of this tokenizer; it {fate}."
            for f in found]


def render_example(tokenizer, example: dict, max_length: int | None = None, *,
                   special_token_text: str = "literal") -> dict:
    """The tokens of one example with the mask, plus what a viewer shows beside them: the tools the
    row declares, its tool calls, and warnings about special-token text."""
    enc = encode(tokenizer, example, max_length, with_pieces=True, special_token_text=special_token_text)
    found = find_special_text(tokenizer, example)
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
        "tools": example.get("tools") or [],
        "tool_calls": formats.tool_calls(example),
        "special_token_text": found,
        "warnings": special_text_warnings(found, special_token_text),
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
            if checked.format in formats.REFUSED:  # not a broken row: data of another kind
                raise RefusedData(f"{loc}: {checked.problem}.", checked.format, source.display)
            raise DataError(f"{loc}: {checked.problem}; fix this row to render it.", exit_code=1)
        return checked.example, where
    finally:
        source.close()


def render_row(ref: str, row: int, tokenizer, max_length: int | None = None, *, split: str = "train",
               special_token_text: str = "literal") -> dict:
    example, where = row_example(ref, row, split=split)
    out = render_example(tokenizer, example, max_length, special_token_text=special_token_text)
    out.update(where)
    out["example"] = example
    return out
