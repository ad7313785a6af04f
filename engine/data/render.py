"""One row through the model's chat template, as token pieces marked trained or not.

The mask comes from ``encode.encode`` (``encode.encode_sides`` for preference rows) — the code path
the worker trains with. Imports transformers (through the tokenizer); the TUI reaches this through
a child process (``tunedeck data render`` or the warm ``tunedeck data serve`` helper).

A preference pair renders as ``{"kind": "pair", "chosen": {...}, "rejected": {...}, "prompt_tokens"}``
(each side: tokens, trained, lengths), a labelled answer as ``{"kind": "labelled", "label", ...}``;
the top level also carries the chosen (or labelled) side's tokens, so a viewer of one sequence shows
something true.
"""

from __future__ import annotations

from ..errors import DataError
from . import formats
from .dataset import RefusedData, check, detect_file_format
from .hub import open_source
from .encode import Encoded, encode, encode_sides, special_token_text as find_special_text


def special_text_warnings(found: list[dict], special_token_text: str) -> list[str]:
    """One sentence per place that holds special-token text, naming the token."""
    fate = ("stays literal text (special_token_text: token makes it the special token)"
            if special_token_text == "literal" else "becomes the special token (special_token_text: token)")
    return [f"{f['place']} contains {f['token']}, the text of a special token of this tokenizer; it {fate}."
            for f in found]


def _side(enc: Encoded) -> dict:
    return {"tokens": enc.pieces, "input_ids": enc.input_ids, "trained": enc.trained, "text": enc.text,
            "length": len(enc.input_ids), "full_length": enc.full_length, "truncated": enc.truncated,
            "trained_tokens": enc.trained_tokens, "prompt_tokens": enc.prompt_length}


def render_example(tokenizer, example: dict, max_length: int | None = None, *,
                   special_token_text: str = "literal", max_prompt_length: int | None = None,
                   max_completion_length: int | None = None) -> dict:
    """The tokens of one example with the mask, plus what a viewer shows beside them: the tools the
    row declares, its tool calls, and warnings about special-token text. A pair: both sides."""
    kind = formats.kind_of(example)
    if kind in ("sft", "prompt"):  # a GRPO prompt: shown with its reference answer, nothing trained
        sides = [encode(tokenizer, formats.as_messages(example), max_length, with_pieces=True,
                        special_token_text=special_token_text)]
    else:
        sides = encode_sides(tokenizer, example, max_length, max_prompt_length=max_prompt_length,
                             max_completion_length=max_completion_length, with_pieces=True,
                             special_token_text=special_token_text)
    found = find_special_text(tokenizer, example)
    out = {
        **_side(sides[0]),
        "kind": kind,
        "max_length": max_length,
        "tools": example.get("tools") or [],
        "tool_calls": formats.tool_calls(example),
        "special_token_text": found,
        "warnings": special_text_warnings(found, special_token_text),
    }
    if kind == "pair":
        out.update(chosen=_side(sides[0]), rejected=_side(sides[1]), max_prompt_length=max_prompt_length,
                   max_completion_length=max_completion_length)
    elif kind == "prompt":
        out.update(reference=example.get("reference"), max_completion_length=max_completion_length)
    elif kind == "labelled":
        out.update(label=example["label"], max_prompt_length=max_prompt_length,
                   max_completion_length=max_completion_length)
    return out


def row_example(ref: str, row: int, *, split: str = "train", objective: str | None = None) -> tuple[dict, dict]:
    """(normalised example, where it is) for the 1-based row number ``row``, read for ``objective``
    (None: the data decides); DataError if bad, RefusedData if it is data for another objective."""
    source = open_source(ref, split=split)
    try:
        if row < 1:
            raise DataError(f"Row numbers start at 1; {row} is not a row of {source.display}.")
        file_format = detect_file_format(source)
        try:
            raw = source.get(row - 1)
        except IndexError:
            raise DataError(f"{source.display} has {len(source)} rows; there is no row {row}.") from None
        checked = check(raw, file_format, objective)
        where = {source.unit: raw.where, "row": row, "format": checked.format or file_format}
        if checked.problem is not None:
            loc = f"{source.display}:{raw.where}" if source.unit == "line" else f"{source.display} record {raw.where}"
            if checked.format and checked.format not in formats.accepted(objective, file_format):  # data of another kind
                raise RefusedData(f"{loc}: {checked.problem}.", checked.format, source.display)
            raise DataError(f"{loc}: {checked.problem}; fix this row to render it.", exit_code=1)
        return checked.example, where
    finally:
        source.close()


def render_row(ref: str, row: int, tokenizer, max_length: int | None = None, *, split: str = "train",
               special_token_text: str = "literal", objective: str | None = None, **limits) -> dict:
    example, where = row_example(ref, row, split=split, objective=objective)
    out = render_example(tokenizer, example, max_length, special_token_text=special_token_text, **limits)
    out.update(where)
    out["example"] = example
    return out
