"""One example -> token ids and the trained-token mask. The single code path for both uses:
the Data screen shows this mask and the worker trains with it (TRL's SFTTrainer accepts a
pre-tokenised dataset with ``input_ids`` + ``completion_mask`` and ``completion_only_loss``).

An example is a dict with either ``messages`` (chat; each message may carry ``weight`` 0/1; tools
in ``tools``, see ``engine.data.formats``) or ``text`` (continued pre-training: every token trained).
For chat data only the assistant turns are trained (their answers and their tool calls), with their
end-of-turn token, never the prompt, the tool results or the template's scaffolding. Tools are
rendered by the model's own chat template (``apply_chat_template(..., tools=...)``); a template that
leaves tools or calls out is refused with one sentence (``tool_support_problem``), never trained
without them.

Special-token text inside the data (a completion holding the characters ``<|endoftext|>``): by
default (``special_token_text="literal"``) it stays text, tokenised as ordinary characters, and only
the tokens the chat template writes are special; ``"token"`` lets the tokenizer read it as the
special token. This is transformers' ``apply_chat_template(..., sanitize_control_tokens=True)``,
done here with character offsets, which the mask needs and that path does not return.

How the mask is found: the conversation is rendered once through the chat template and tokenised
with character offsets; each assistant turn's character span is located by rendering the
conversation up to that turn with and without it (prefix rendering), and every token whose
characters fall in a trained span is marked.

Preference examples (``engine.data.formats``: a prompt with a chosen and a rejected answer, or a
prompt with one answer labelled good or bad) go through the same path: ``encode_pair`` encodes
prompt + chosen and prompt + rejected as two conversations (earlier assistant turns of the prompt
untrained), ``encode_labelled`` prompt + answer; the mask marks each answer and its end-of-turn
token. TRL's ``DPOTrainer``/``KTOTrainer`` score exactly the tokens of this mask (the worker hands
them these ids and masks, see ``engine.worker``), so what the Data screen shows as trained for the
chosen and the rejected answer is what preference tuning compares. Cuts: ``max_prompt_length`` keeps
the prompt's last tokens (the chosen and rejected sequences are cut alike), ``max_completion_length``
cuts the answer's end, and ``max_length`` the whole sequence.
"""

from __future__ import annotations

import bisect
import json
import operator
import re
import weakref
from dataclasses import dataclass, field

from ..config import FIELD
from ..errors import DataError
from .formats import conversations, is_labelled, is_pair, uses_tools

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

    @property
    def prompt_length(self) -> int:
        """Tokens before the first trained one (the prompt, with the template's scaffolding)."""
        return next((k for k, t in enumerate(self.trained) if t), len(self.trained))

    def as_training_row(self) -> dict:
        return {"input_ids": self.input_ids, "completion_mask": [int(t) for t in self.trained]}


@dataclass
class EncodedPair:
    """A preference pair: prompt + chosen and prompt + rejected, each with its mask."""

    chosen: Encoded
    rejected: Encoded

    @property
    def truncated(self) -> bool:
        return self.chosen.truncated or self.rejected.truncated

    def as_training_row(self) -> dict:
        """The columns the worker gives TRL's DPOTrainer (engine.worker.PAIR_COLUMNS)."""
        return {"chosen_input_ids": self.chosen.input_ids,
                "chosen_completion_mask": [int(t) for t in self.chosen.trained],
                "rejected_input_ids": self.rejected.input_ids,
                "rejected_completion_mask": [int(t) for t in self.rejected.trained]}


def ensure_chat_template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _apply(tokenizer, messages, *, add_generation_prompt: bool, tools=None) -> str:
    clean = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
    return tokenizer.apply_chat_template(clean, tools=tools or None, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def _render(tokenizer, messages, *, add_generation_prompt: bool, tools=None) -> str:
    try:
        return _apply(tokenizer, messages, add_generation_prompt=add_generation_prompt, tools=tools)
    except Exception as exc:  # a template raises what it likes (jinja's raise_exception, a TypeError)
        raise DataError(f"The chat template of this model cannot render a conversation of this data "
                        f"({_first_line(exc)}); change the data to what the template accepts, or use another model.") from None


# --- tools -----------------------------------------------------------------------------------------

_PROBE_NAME, _PROBE_VALUE, _PROBE_RESULT = "tunedeck_probe_tool", "tunedeck-probe-value", "tunedeck-probe-result"
_PROBE_TOOLS = [{"type": "function", "function": {
    "name": _PROBE_NAME, "description": "Looks something up.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]
_PROBE = [
    {"role": "user", "content": "Look it up."},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "a1b2c3d4e",  # Mistral wants 9 characters
        "type": "function", "function": {"name": _PROBE_NAME, "arguments": {"query": _PROBE_VALUE}}}]},
    {"role": "tool", "tool_call_id": "a1b2c3d4e", "name": _PROBE_NAME, "content": _PROBE_RESULT},
    {"role": "assistant", "content": "Found it."},
]
_TOOL_SUPPORT: dict[str, str | None] = {}  # chat template -> problem (None: it renders tools)


def tool_support_problem(tokenizer) -> str | None:
    """Why this chat template cannot train tool calling (one sentence), or None. Found by rendering a
    probe conversation: the tools, the call's name and arguments and the result must all appear."""
    ensure_chat_template(tokenizer)
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else json.dumps(tokenizer.chat_template)
    if template in _TOOL_SUPPORT:
        return _TOOL_SUPPORT[template]
    advice = ("use a model whose chat template renders tools (Qwen2.5, Llama 3.1 and later instruct models do), "
              "or data without tool calls.")
    try:
        declared = _apply(tokenizer, _PROBE[:1], add_generation_prompt=True, tools=_PROBE_TOOLS)
        full = _apply(tokenizer, _PROBE, add_generation_prompt=False, tools=_PROBE_TOOLS)
    except Exception as exc:  # as in _render
        problem = f"The chat template of this model cannot render tool calls ({_first_line(exc)}); " + advice
    else:
        missing = [what for what, ok in (
            ("the tool definitions", _PROBE_NAME in declared),
            ("the tool calls", _PROBE_VALUE in full and full.count(_PROBE_NAME) > declared.count(_PROBE_NAME)),
            ("the tool results", _PROBE_RESULT in full)) if not ok]
        problem = (f"The chat template of this model has no tool support: it leaves out {' and '.join(missing)}, so "
                   f"the model would be trained on conversations without them; {advice}") if missing else None
    _TOOL_SUPPORT[template] = problem
    return problem


def _require_tool_support(tokenizer, example: dict) -> None:
    if "messages" in example and uses_tools(example):
        problem = tool_support_problem(tokenizer)
        if problem:
            raise DataError(problem)


def _end_of_turn(tokenizer) -> str | None:
    return tokenizer.eos_token


def trained_spans(tokenizer, messages: list[dict], tools=None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of the assistant turns to train."""
    ensure_chat_template(tokenizer)
    full = _render(tokenizer, messages, add_generation_prompt=False, tools=tools)
    eot = _end_of_turn(tokenizer)
    spans: list[tuple[int, int]] = []
    search_from = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if message.get("weight", 1) == 0:
            search_from = _advance(full, message["content"], search_from)
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True, tools=tools) if i else ""
        # the conversation through the last turn is the whole conversation: no second render
        through = full if i == len(messages) - 1 else _render(tokenizer, messages[: i + 1], add_generation_prompt=False, tools=tools)
        if full.startswith(through) and through.startswith(before):
            start, end = len(before), len(through)
        elif message.get("tool_calls"):
            raise DataError(f"The chat template of this model rewrites earlier turns, so the tool call of message "
                            f"{i + 1} cannot be located to train it; use a model whose chat template renders "
                            "conversations turn by turn (Qwen2.5, Llama 3.1).")
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
    if "messages" not in example and "text" not in example:
        raise DataError("This is a preference example (a prompt with judged answers); encode it with encode_pair "
                        "or encode_labelled.")
    if "text" in example and "messages" not in example:
        text = example["text"]
        if tokenizer.eos_token:
            text += tokenizer.eos_token
        return text, [(0, len(text))]
    _require_tool_support(tokenizer, example)
    return trained_spans(tokenizer, example["messages"], example.get("tools"))


# --- special-token text in the data ----------------------------------------------------------------

_CONTROL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> (template, pattern)
_SENTINEL = "\ue000"  # a private-use character: stands in for special-token text while rendering


def control_pattern(tokenizer) -> re.Pattern | None:
    """A regex for the text of the tokenizer's control tokens (its special tokens, and the added
    tokens its chat template writes, as transformers' sanitize_control_tokens counts them), longest
    first; None when there are none."""
    template = str(getattr(tokenizer, "chat_template", "") or "")
    cached = _CONTROL.get(tokenizer)
    if cached and cached[0] == template:
        return cached[1]
    tokens = {t for t in tokenizer.all_special_tokens if t}
    tokens |= {t.content for t in tokenizer.added_tokens_decoder.values()
               if t.content and (t.special or (t.content in template and not t.content.isspace()))}
    pattern = re.compile("|".join(map(re.escape, sorted(tokens, key=len, reverse=True)))) if tokens else None
    _CONTROL[tokenizer] = (template, pattern)
    return pattern


def _map_strings(value, fn):
    """``value`` with ``fn`` applied to every string inside it (dict keys untouched)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (dict, list)):
        for v in value.values() if isinstance(value, dict) else value:
            yield from _strings(v)


def _places(example: dict):
    """(where, string) for every string the data holds: "the text", "message 2 (assistant)", "the tools",
    "prompt message 1 (user)", "the chosen answer"."""
    if "text" in example and "messages" not in example:
        yield "the text", example["text"]
    for n, m in enumerate(example.get("messages", ()), 1):
        yield from ((f"message {n} ({m['role']})", s) for s in _strings({k: v for k, v in m.items() if k != "role"}))
    if "messages" not in example:
        for n, m in enumerate(example.get("prompt") or (), 1):
            yield from ((f"prompt message {n} ({m['role']})", s)
                        for s in _strings({k: v for k, v in m.items() if k != "role"}))
        for side in ("chosen", "rejected", "completion"):
            for m in example.get(side) or ():
                yield from ((f"the {side} answer", s) for s in _strings({k: v for k, v in m.items() if k != "role"}))
    yield from (("the tools", s) for s in _strings(example.get("tools")))


def special_token_text(tokenizer, example: dict) -> list[dict]:
    """Each place where the data holds the text of a special token: [{"place", "token"}]."""
    pattern = control_pattern(tokenizer)
    if pattern is None:
        return []
    out = []
    for place, s in _places(example):
        for token in dict.fromkeys(pattern.findall(s)):
            out.append({"place": place, "token": token})
    return out


def _encode_literal(tokenizer, example: dict, pattern: re.Pattern):
    """(text, spans, ids, offsets) with the data's special-token text tokenised as ordinary text, or
    None when the rendering shows none of it. The example is rendered once more with each such text
    replaced by as many sentinel characters, which tells where the data's (not the template's)
    special-token text lies in the real rendering; that is then tokenised in pieces split there, as
    transformers' ``encode_marked_chat`` does (same ids, checked by the tests)."""
    masked = _map_strings(example, lambda s: pattern.sub(lambda m: _SENTINEL * len(m.group()), s))
    masked_text, spans = text_and_spans(tokenizer, masked)
    if "messages" in example:
        text = _render(tokenizer, example["messages"], add_generation_prompt=False, tools=example.get("tools"))
    else:
        text, _ = text_and_spans(tokenizer, example)
    if len(text) != len(masked_text):
        raise DataError("The chat template of this model changes the text around special-token text in the data, "
                        "so it cannot be kept as literal text; set special_token_text: token, or remove that text.")
    literal = [m for m in pattern.finditer(text) if masked_text[m.start():m.end()] == _SENTINEL * len(m.group())]
    if not literal:  # e.g. it was in a tool declaration the template does not show
        return None
    newline = tokenizer.encode("\n", add_special_tokens=False)
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []

    def piece(start: int, end: int, as_text: bool) -> None:
        if start == end:
            return
        kwargs = dict(add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=as_text)
        if start or as_text:  # after a newline, so a SentencePiece tokenizer adds no prefix space mid-text
            enc = tokenizer("\n" + text[start:end], **kwargs)
            if enc["input_ids"][: len(newline)] == newline:
                ids.extend(enc["input_ids"][len(newline):])
                offsets.extend((start + a - 1, start + b - 1) for a, b in enc["offset_mapping"][len(newline):])
                return
        enc = tokenizer(text[start:end], **kwargs)
        ids.extend(enc["input_ids"])
        offsets.extend((start + a, start + b) for a, b in enc["offset_mapping"])

    at = 0
    for m in literal:
        piece(at, m.start(), False)
        piece(m.start(), m.end(), True)
        at = m.end()
    piece(at, len(text), False)
    return text, spans, ids, offsets


def _literal_needed(tokenizer, example: dict, special_token_text: str) -> re.Pattern | None:
    if special_token_text not in FIELD["special_token_text"].choices:
        raise DataError(f"special_token_text must be literal or token, not {special_token_text!r}.")
    pattern = control_pattern(tokenizer) if special_token_text == "literal" else None
    if pattern is not None and any(pattern.search(s) for _, s in _places(example)):
        return pattern
    return None


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


def encode(tokenizer, example: dict, max_length: int | None = None, *, with_pieces: bool = False,
           special_token_text: str = "literal") -> Encoded:
    """Tokenise one normalised example and mark the tokens that will be trained."""
    pattern = _literal_needed(tokenizer, example, special_token_text)
    literal = _encode_literal(tokenizer, example, pattern) if pattern is not None else None
    if literal is not None:
        text, spans, ids, offsets = literal
        return _finish(tokenizer, text, ids, _mask(offsets, spans), max_length, with_pieces)
    text, spans = text_and_spans(tokenizer, example)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    return _finish(tokenizer, text, ids, _mask(enc["offset_mapping"], spans), max_length, with_pieces)


def encode_many(tokenizer, examples: list[dict], max_length: int | None = None, *,
                special_token_text: str = "literal") -> list[Encoded]:
    """``encode`` for many examples at once (one batched tokeniser call); same result, faster."""
    out: list[Encoded | None] = [None] * len(examples)
    plain = []
    for k, ex in enumerate(examples):
        if _literal_needed(tokenizer, ex, special_token_text) is not None:
            out[k] = encode(tokenizer, ex, max_length, special_token_text=special_token_text)
        else:
            plain.append(k)
    prepared = [text_and_spans(tokenizer, examples[k]) for k in plain]
    if prepared:
        enc = tokenizer([t for t, _ in prepared], add_special_tokens=False, return_offsets_mapping=True)
        for k, (text, spans), ids, offsets in zip(plain, prepared, enc["input_ids"], enc["offset_mapping"]):
            out[k] = _finish(tokenizer, text, list(ids), _mask(offsets, spans), max_length, False)
    return out


# --- preference examples ---------------------------------------------------------------------------

def _sides(example: dict) -> list[dict]:
    """The conversations (as SFT examples) a preference example is scored on: chosen and rejected, or
    the labelled answer."""
    tools = {"tools": example["tools"]} if example.get("tools") else {}
    return [{"messages": conv, **tools} for conv in conversations(example)]


def cut(tokenizer, enc: Encoded, max_length: int | None, *, max_prompt_length: int | None = None,
        max_completion_length: int | None = None, with_pieces: bool = False) -> Encoded:
    """``enc`` (encoded whole) within the limits: the prompt keeps its last ``max_prompt_length`` tokens,
    the answer its first ``max_completion_length``, the sequence its first ``max_length``."""
    ids, trained = enc.input_ids, enc.trained
    full, first = len(ids), enc.prompt_length
    if max_prompt_length and first > max_prompt_length:
        drop = first - max_prompt_length
        ids, trained, first = ids[drop:], trained[drop:], max_prompt_length
    if max_completion_length and len(ids) - first > max_completion_length:
        ids, trained = ids[:first + max_completion_length], trained[:first + max_completion_length]
    if max_length and len(ids) > max_length:
        ids, trained = ids[:max_length], trained[:max_length]
    pieces = [tokenizer.decode([i]) for i in ids] if with_pieces else []
    return Encoded(list(ids), list(trained), enc.text, len(ids) < full, full, pieces)


def encode_sides(tokenizer, example: dict, max_length: int | None = None, *, max_prompt_length: int | None = None,
                 max_completion_length: int | None = None, with_pieces: bool = False,
                 special_token_text: str = "literal") -> list[Encoded]:
    """Every sequence an example trains: [the conversation] for SFT, [chosen, rejected] for a pair,
    [the answer] for a labelled answer; each through ``encode`` (the one mask) and ``cut``."""
    if not (is_pair(example) or is_labelled(example)):
        return [encode(tokenizer, example, max_length, with_pieces=with_pieces, special_token_text=special_token_text)]
    return [cut(tokenizer, encode(tokenizer, side, None, special_token_text=special_token_text), max_length,
                max_prompt_length=max_prompt_length, max_completion_length=max_completion_length,
                with_pieces=with_pieces) for side in _sides(example)]


def encode_pair(tokenizer, example: dict, max_length: int | None = None, **kw) -> EncodedPair:
    """A preference pair through the one mask: prompt + chosen and prompt + rejected (``encode_sides``)."""
    if not is_pair(example):
        raise DataError("This example is not a pair of a chosen and a rejected answer.")
    chosen, rejected = encode_sides(tokenizer, example, max_length, **kw)
    return EncodedPair(chosen, rejected)


def encode_labelled(tokenizer, example: dict, max_length: int | None = None, **kw) -> Encoded:
    """An answer labelled good or bad through the one mask: prompt + answer (``encode_sides``)."""
    if not is_labelled(example):
        raise DataError("This example is not an answer labelled good or bad.")
    return encode_sides(tokenizer, example, max_length, **kw)[0]


def encode_sides_many(tokenizer, examples: list[dict], max_length: int | None = None, *,
                      max_prompt_length: int | None = None, max_completion_length: int | None = None,
                      special_token_text: str = "literal") -> list[list[Encoded]]:
    """``encode_sides`` for many examples at once (one batched tokeniser call); same result, faster."""
    flat, owner = [], []
    for k, ex in enumerate(examples):
        sides = _sides(ex) if (is_pair(ex) or is_labelled(ex)) else [ex]
        flat += sides
        owner += [(k, is_pair(ex) or is_labelled(ex))] * len(sides)
    encoded = encode_many(tokenizer, flat, None, special_token_text=special_token_text)
    out: list[list[Encoded]] = [[] for _ in examples]
    for (k, preference), enc in zip(owner, encoded):
        if preference:
            enc = cut(tokenizer, enc, max_length, max_prompt_length=max_prompt_length,
                      max_completion_length=max_completion_length)
        elif max_length and len(enc.input_ids) > max_length:
            enc = Encoded(enc.input_ids[:max_length], enc.trained[:max_length], enc.text, True, enc.full_length)
        out[k].append(enc)
    return out
