"""One example -> token ids and the trained-token mask. The single code path for both uses:
the Data screen shows this mask and the worker trains with it (TRL's SFTTrainer accepts a
pre-tokenised dataset with ``input_ids`` + ``completion_mask`` and ``completion_only_loss``).

An example is a dict with either ``messages`` (chat; each message may carry ``weight`` 0/1) or
``text`` (continued pre-training: every token trained). For chat data only the assistant turns
are trained, with their end-of-turn token, never the prompt or the template's scaffolding.

How the mask is found: the conversation is rendered once through the chat template and tokenised
with character offsets; each assistant turn's character span is located by rendering the
conversation up to that turn with and without it (prefix rendering), and every token whose
characters fall in a trained span is marked.
"""

from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass, field

# Used when a tokenizer has no chat template of its own (base models): ChatML, which is also
# what the demo model speaks. It is saved with the run's adapter so chat uses the same one.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class Encoded:
    input_ids: list[int]
    trained: list[bool]
    text: str = ""
    truncated: bool = False
    full_length: int = 0  # tokens before truncation
    pieces: list[str] = field(default_factory=list)  # decoded text of each token (only when asked)

    @property
    def trained_tokens(self) -> int:
        return sum(self.trained)

    def as_training_row(self) -> dict:
        return {"input_ids": self.input_ids, "completion_mask": [int(t) for t in self.trained]}


def ensure_chat_template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE


def _render(tokenizer, messages, *, add_generation_prompt: bool) -> str:
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    return tokenizer.apply_chat_template(clean, tokenize=False, add_generation_prompt=add_generation_prompt)


def _end_of_turn(tokenizer) -> str | None:
    return tokenizer.eos_token


def trained_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the assistant turns to train."""
    ensure_chat_template(tokenizer)
    full = _render(tokenizer, messages, add_generation_prompt=False)
    eot = _end_of_turn(tokenizer)
    spans: list[tuple[int, int]] = []
    search_from = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if message.get("weight", 1) == 0:
            search_from = _advance(full, message["content"], search_from)
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        # the conversation through the last turn is the whole conversation: no second render
        through = full if i == len(messages) - 1 else _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if full.startswith(through) and through.startswith(before):
            start, end = len(before), len(through)
        else:  # template is not prefix-stable (e.g. it rewrites earlier turns): find the content
            start = full.find(message["content"], search_from)
            if start < 0:
                continue
            end = start + len(message["content"])
            if eot and full.startswith(eot, end):
                end += len(eot)
        # Train the content and its end-of-turn token, not whitespace the template adds after it.
        segment = full[start:end]
        if eot and eot in segment:
            end = start + segment.rindex(eot) + len(eot)
        else:
            end = start + len(segment.rstrip())
        spans.append((start, end))
        search_from = end
    return full, spans


def _advance(full: str, content: str, search_from: int) -> int:
    at = full.find(content, search_from)
    return search_from if at < 0 else at + len(content)


def text_and_spans(tokenizer, example: dict) -> tuple[str, list[tuple[int, int]]]:
    """The text to tokenise for one example and the character spans that are trained."""
    if "text" in example and "messages" not in example:
        text = example["text"]
        if tokenizer.eos_token:
            text += tokenizer.eos_token
        return text, [(0, len(text))]
    return trained_spans(tokenizer, example["messages"])


def _mask(offsets, spans: list[tuple[int, int]]) -> list[bool]:
    """trained[k]: token k's characters overlap a trained span (and it has characters)."""
    n = len(offsets)
    if not n or not spans:
        return [False] * n
    starts = [o[0] for o in offsets]
    ends = [o[1] for o in offsets]
    if not (all(map(operator.le, starts, starts[1:])) and all(map(operator.le, ends, ends[1:]))):
        return _mask_scan(offsets, spans)  # offsets out of order: the plain scan
    trained = [False] * n
    for span_start, span_end in spans:
        a = bisect.bisect_right(ends, span_start)  # first token ending after the span starts
        b = bisect.bisect_left(starts, span_end)  # first token starting at or after its end
        for k in range(a, b):
            if ends[k] > starts[k]:
                trained[k] = True
    return trained


def _mask_scan(offsets, spans: list[tuple[int, int]]) -> list[bool]:
    trained = []
    for start, end in offsets:
        trained.append(end > start and any(start < e and end > s for s, e in spans))
    return trained


def _finish(tokenizer, text, ids, trained, max_length, with_pieces) -> Encoded:
    full_length = len(ids)
    truncated = bool(max_length) and full_length > max_length
    if truncated:
        ids, trained = ids[:max_length], trained[:max_length]
    pieces = [tokenizer.decode([i]) for i in ids] if with_pieces else []
    return Encoded(ids, trained, text, truncated, full_length, pieces)


def encode(tokenizer, example: dict, max_length: int | None = None, *, with_pieces: bool = False) -> Encoded:
    """Tokenise one normalised example and mark the tokens that will be trained."""
    text, spans = text_and_spans(tokenizer, example)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    return _finish(tokenizer, text, ids, _mask(enc["offset_mapping"], spans), max_length, with_pieces)


def encode_many(tokenizer, examples: list[dict], max_length: int | None = None) -> list[Encoded]:
    """``encode`` for many examples at once (one batched tokeniser call); same result, faster."""
    prepared = [text_and_spans(tokenizer, ex) for ex in examples]
    if not prepared:
        return []
    enc = tokenizer([t for t, _ in prepared], add_special_tokens=False, return_offsets_mapping=True)
    return [
        _finish(tokenizer, text, list(ids), _mask(offsets, spans), max_length, False)
        for (text, spans), ids, offsets in zip(prepared, enc["input_ids"], enc["offset_mapping"])
    ]
