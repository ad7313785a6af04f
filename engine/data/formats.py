"""Recognise the common fine-tuning formats and normalise a row to what the trainer eats.

A normalised example is ``{"messages": [{"role", "content", optional "weight"}, ...]}`` (chat) or
``{"text": "..."}`` (continued pre-training). Formats:

  messages           OpenAI fine-tuning JSONL: {"messages": [{"role", "content", "weight"?}]}
  sharegpt           {"conversations": [{"from", "value"}], "system"?}
  alpaca             {"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant]...]}
  prompt_completion  TRL's {"prompt", "completion"}: strings, or lists of messages
  text               {"text": "..."}
  preference         {"prompt"?, "chosen", "rejected"}: recognised, refused (it is for DPO/ORPO, not SFT)

``normalise`` raises ``RowError`` with one sentence (no location: the caller knows the line).
"""

from __future__ import annotations

import json

from .reader import json_limit

FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion", "text", "preference")
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
}
DESCRIPTIONS = {
    "messages": "chat messages (OpenAI fine-tuning format)",
    "sharegpt": "ShareGPT conversations",
    "alpaca": "Alpaca instruction / input / output",
    "prompt_completion": "prompt / completion pairs",
    "text": "plain text (continued pre-training: every token is trained)",
    "preference": "preference pairs (prompt / chosen / rejected)",
}
EXPECTED = (
    "messages, conversations (ShareGPT), instruction + output (Alpaca), prompt + completion, or text"
)
PREFERENCE_SENTENCE = (
    "is preference data (prompt / chosen / rejected): it is for preference tuning such as DPO, "
    "not supervised fine-tuning; pick a file with messages, conversations, instruction/output, "
    "prompt/completion or text"
)


class RowError(ValueError):
    """One row cannot be used; the message is one sentence without the location."""


def detect(record: dict) -> str | None:
    """The format a single row is in, or None if its keys match none."""
    keys = record.keys()
    if "chosen" in keys and "rejected" in keys:
        return "preference"
    if "messages" in keys:
        msgs = record["messages"]
        if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) and "from" in msgs[0] and "role" not in msgs[0]:
            return "sharegpt"
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys and ("output" in keys or "response" in keys):
        return "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    if "text" in keys:
        return "text"
    return None


def describe_keys(record: dict) -> str:
    keys = list(record.keys())
    if not keys:
        return "is an empty object"
    shown = ", ".join(repr(k) for k in keys[:6]) + (", ..." if len(keys) > 6 else "")
    return f"has the keys {shown}"


def missing_columns_sentence(record: dict) -> str:
    return f"{describe_keys(record)}, which match no format; expected {EXPECTED}"


def _as_text(value, what: str) -> str:
    """A message's content as a string: strings, or OpenAI-style lists of text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(p, dict) for p in value):
        texts = []
        for part in value:
            if part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
                raise RowError(f"{what} has a {part.get('type', 'non-text')!s} part; only text content is supported")
            texts.append(part["text"])
        return "".join(texts)
    if value is None:
        raise RowError(f"{what} has no content")
    raise RowError(f"{what} has {_kind(value)} as content; content must be a string")


def _kind(value) -> str:
    return {list: "a list", dict: "an object", int: "a number", float: "a number", bool: "a boolean", str: "a string"}.get(
        type(value), type(value).__name__
    )


def _check_messages(messages: list[dict], *, need_assistant: bool = True) -> list[dict]:
    if not messages:
        raise RowError("has no messages")
    for n, m in enumerate(messages, 1):
        if not m["content"].strip():
            raise RowError(f"message {n} ({m['role']}) has empty content")
    if need_assistant:
        assistants = [m for m in messages if m["role"] == "assistant"]
        if not assistants:
            raise RowError("has no assistant message, so there is nothing to learn from")
        if all(m.get("weight", 1) == 0 for m in assistants):
            raise RowError("has every assistant message at weight 0, so there is nothing to learn from")
    return messages


def _messages(value, *, field: str = "messages", allow_weight: bool = True) -> list[dict]:
    if isinstance(value, str) and value.lstrip().startswith("["):  # a JSON-encoded column (CSV)
        try:
            value = json.loads(value)
        except (RecursionError, ValueError) as exc:
            raise RowError(f"has a '{field}' text that is not valid JSON ({getattr(exc, 'msg', None) or json_limit(exc)})") from None
    if not isinstance(value, list):
        raise RowError(f"has '{field}' as {_kind(value)}; it must be a list of messages")
    out = []
    for n, m in enumerate(value, 1):
        if not isinstance(m, dict):
            raise RowError(f"message {n} is {_kind(m)}, not an object with role and content")
        if "role" not in m:
            raise RowError(f"message {n} has no 'role'")
        role = m["role"]
        if role not in ROLES:
            raise RowError(f"message {n} has role {role!r}; roles must be system, user or assistant")
        if "content" not in m:
            extra = " (tool calls are not supported)" if "tool_calls" in m or "function_call" in m else ""
            raise RowError(f"message {n} ({role}) has no 'content'{extra}")
        if m["content"] is None and ("tool_calls" in m or "function_call" in m):
            raise RowError(f"message {n} ({role}) is a tool call; tool calls are not supported")
        msg = {"role": role, "content": _as_text(m["content"], f"message {n} ({role})")}
        if "weight" in m and m["weight"] is not None:
            w = m["weight"]
            if not allow_weight:
                raise RowError(f"message {n} has a 'weight', which this format does not allow")
            if isinstance(w, bool) or w not in (0, 1):
                raise RowError(f"message {n} has weight {w!r}; weight must be 0 or 1")
            if role != "assistant":
                raise RowError(f"message {n} ({role}) has a weight; only assistant messages may carry one")
            msg["weight"] = int(w)
        out.append(msg)
    return out


def _sharegpt(record: dict) -> list[dict]:
    turns = record.get("conversations", record.get("messages"))
    if isinstance(turns, str) and turns.lstrip().startswith("["):
        try:
            turns = json.loads(turns)
        except (RecursionError, ValueError) as exc:
            raise RowError(f"has a 'conversations' text that is not valid JSON ({getattr(exc, 'msg', None) or json_limit(exc)})") from None
    if not isinstance(turns, list):
        raise RowError(f"has 'conversations' as {_kind(turns)}; it must be a list of turns")
    out = []
    system = record.get("system")
    if system not in (None, ""):
        out.append({"role": "system", "content": _as_text(system, "the system prompt")})
    for n, t in enumerate(turns, 1):
        if not isinstance(t, dict):
            raise RowError(f"turn {n} is {_kind(t)}, not an object with from and value")
        if "from" not in t:
            raise RowError(f"turn {n} has no 'from'")
        who = t["from"]
        role = SHAREGPT_ROLES.get(str(who).lower()) if isinstance(who, str) else None
        if role is None:
            raise RowError(f"turn {n} is from {who!r}; it must be human, gpt or system")
        if "value" not in t:
            raise RowError(f"turn {n} ({who}) has no 'value'")
        out.append({"role": role, "content": _as_text(t["value"], f"turn {n} ({who})")})
    return out


def _str_field(record: dict, key: str, *, required: bool = True) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise RowError(f"has no '{key}'")
        return ""
    if not isinstance(value, str):
        raise RowError(f"has '{key}' as {_kind(value)}; it must be a string")
    return value


def _alpaca(record: dict) -> list[dict]:
    out = []
    system = _str_field(record, "system", required=False)
    if system.strip():
        out.append({"role": "system", "content": system})
    history = record.get("history") or []
    if not isinstance(history, list):
        raise RowError("has 'history' that is not a list of [instruction, response] pairs")
    for n, pair in enumerate(history, 1):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise RowError(f"history item {n} is not an [instruction, response] pair of strings")
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    instruction = _str_field(record, "instruction")
    extra = _str_field(record, "input", required=False)
    output = _str_field(record, "output" if "output" in record else "response")
    if not instruction.strip():
        raise RowError("has an empty 'instruction'")
    if not output.strip():
        raise RowError(f"has an empty '{'output' if 'output' in record else 'response'}'")
    user = instruction if not extra.strip() else f"{instruction}\n\n{extra}"
    out += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return out


def _prompt_completion(record: dict) -> list[dict]:
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, list) or isinstance(completion, list):  # conversational
        p = _messages(prompt, field="prompt", allow_weight=False) if isinstance(prompt, list) else None
        c = _messages(completion, field="completion", allow_weight=False) if isinstance(completion, list) else None
        if p is None or c is None:
            raise RowError("mixes a conversational and a plain prompt/completion; use lists of messages for both or strings for both")
        for n, m in enumerate(c, 1):
            if m["role"] != "assistant":
                raise RowError(f"completion message {n} has role {m['role']!r}; completions must be assistant messages")
        for m in p:
            if m["role"] == "assistant":
                m["weight"] = 0  # earlier assistant turns belong to the prompt
        return p + c
    if prompt is None:
        raise RowError("has no 'prompt'")
    if completion is None:
        raise RowError("has no 'completion'")
    for key, value in (("prompt", prompt), ("completion", completion)):
        if not isinstance(value, str):
            raise RowError(f"has '{key}' as {_kind(value)}; it must be a string or a list of messages")
    if not prompt.strip():
        raise RowError("has an empty 'prompt'")
    if not completion.strip():
        raise RowError("has an empty 'completion'")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]


def normalise(record: dict, fmt: str) -> dict:
    """The training example for one row already known to be in ``fmt``; raises RowError."""
    if fmt == "messages":
        return {"messages": _check_messages(_messages(record.get("messages")))}
    if fmt == "sharegpt":
        return {"messages": _check_messages(_sharegpt(record))}
    if fmt == "alpaca":
        return {"messages": _check_messages(_alpaca(record))}
    if fmt == "prompt_completion":
        return {"messages": _check_messages(_prompt_completion(record))}
    if fmt == "text":
        text = record.get("text")
        if not isinstance(text, str):
            raise RowError("has no 'text'" if text is None else f"has 'text' as {_kind(text)}; it must be a string")
        if not text.strip():
            raise RowError("has an empty 'text'")
        return {"text": text}
    if fmt == "preference":
        raise RowError(PREFERENCE_SENTENCE)
    raise RowError(f"is in an unknown format {fmt!r}")  # pragma: no cover


def check_row(record: dict, file_format: str | None) -> tuple[str | None, dict | None, str | None]:
    """(row format, example or None, problem or None) for one parsed row against the file's format."""
    fmt = detect(record)
    if fmt is None:
        return None, None, missing_columns_sentence(record)
    if file_format and fmt != file_format and fmt != "preference":
        return fmt, None, (
            f"is {fmt} but the file is {file_format}; one format per file (this row {describe_keys(record)})"
        )
    try:
        return fmt, normalise(record, fmt), None
    except RowError as exc:
        return fmt, None, str(exc)


def preview(example: dict | None, record: dict | None = None, width: int = 200) -> str:
    """One line to show in a table: the first user turn (or the text)."""
    if example is not None:
        if "text" in example:
            s = example["text"]
        else:
            msgs = example["messages"]
            first = next((m for m in msgs if m["role"] == "user"), msgs[0] if msgs else None)
            s = first["content"] if first else ""
    elif record is not None:
        s = json.dumps(record, ensure_ascii=False)
    else:
        s = ""
    s = " ".join(s.split())
    return s if len(s) <= width else s[: width - 1] + "…"
