"""Recognise the layouts fine-tuning data comes in and normalise a row to what the trainer eats.

A normalised example is chat, ``{"messages": [...], "tools"?: [...]}``, or ``{"text": "..."}``
(continued pre-training). Messages are OpenAI-style, the form transformers'
``apply_chat_template(messages, tools=tools)`` takes: ``{"role": system|user|assistant|tool,
"content": str}``; an assistant message may carry ``weight`` (0/1) and ``tool_calls``
(``[{"type": "function", "function": {"name", "arguments": {...}}, "id"?}]``, arguments parsed), a
tool message ``tool_call_id``/``name``; ``tools`` are function declarations
(``{"type": "function", "function": {"name", "description", "parameters"}}``).

The conversation is found by what its turns look like, whatever its column is called (messages,
conversations, conversation, dialog, ...). Formats (a row's and a file's):

  messages           role/content turns; OpenAI tool calling (tools, tool_calls, tool messages)
  sharegpt           from/value turns (human/gpt/system; function_call/observation with a 'tools'
                     column: the LLaMA-Factory / Glaive layout), optional 'system' column
  pairs              {user, assistant} turn pairs
  alpaca             {instruction, input?, output|response, system?, history?}
  prompt_completion  TRL's {prompt, completion}: strings, or lists of messages
  text               {text}

Recognised by name and refused for supervised fine-tuning (``REFUSED``; TRL's dataset types use the
same column names). The first two are what preference tuning trains on (``OBJECTIVE_FORMATS``: DPO
takes pairs, KTO takes labelled answers and pairs, which it splits into a good and a bad answer):

  preference         prompt?/chosen/rejected (text or conversational), chosen_messages/rejected_messages,
                     OpenAI's preferred_output/non_preferred_output
  kto                an answer or conversation with a true/false label (KTO's unpaired layout)
  prompt_only        prompts without answers (GRPO's layout)
  classification     text + label
  multimodal         images/videos/audios columns, media content parts, <image>-style placeholders

For GRPO (``objective: grpo``, ``OBJECTIVE_FORMATS``) every layout with a question is read as a
prompt (``prompt_example``): ``{"prompt": [messages], "reference": str | None}``, the reference being
the row's answer when it has one (a prompt-only row's answer/reference/solution column).

Preference rows normalise to one form, whatever their layout: ``{"prompt": [messages], "chosen":
[assistant messages], "rejected": [assistant messages], "tools"?}``; labelled rows to ``{"prompt":
[messages], "completion": [assistant messages], "label": bool, "tools"?}``. A pair is bad (by line)
when its chosen and rejected answers are the same, a side is empty, or an answer repeats the prompt
(the usual slip of putting prompt + answer in ``chosen`` beside a ``prompt`` column).

No ML import here (the TUI uses this module). ``normalise`` raises ``RowError`` with one sentence
(no location: the caller knows the line).
"""

from __future__ import annotations

import json

from .reader import json_limit

CHAT_FORMATS = ("messages", "sharegpt", "pairs")
TRAINABLE = (*CHAT_FORMATS, "alpaca", "prompt_completion", "text")
REFUSED = ("preference", "kto", "prompt_only", "classification", "multimodal")  # for supervised fine-tuning
FORMATS = TRAINABLE + REFUSED
PREFERENCE_FORMATS = ("preference", "kto")
# The row formats each objective trains on (engine.config.OBJECTIVES); KTO splits a pair in two.
OBJECTIVE_FORMATS = {"sft": TRAINABLE, "dpo": ("preference",), "kto": ("kto", "preference"),
                     # GRPO needs prompts only: any layout with a question; its answer, if any, is the reference
                     "grpo": ("prompt_only", *CHAT_FORMATS, "alpaca", "prompt_completion", "preference", "kto")}
REFERENCE_COLUMNS = ("answer", "reference", "solution", "ground_truth", "target", "expected")  # prompt-only rows
ROLES = ("system", "user", "assistant", "tool")
ROLE_ALIASES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
                "tool": "tool", "function": "tool", "ipython": "tool"}
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
    "function_call": "call",  # an assistant turn that calls tools: its value is the call as JSON
    "observation": "tool",
    "tool": "tool",
}
CHAT_KEYS = ("messages", "conversations", "conversation", "dialog", "dialogue", "chat", "turns")
USER_KEYS = ("user", "human")
ASSISTANT_KEYS = ("assistant", "gpt", "bot", "model")
NOT_CHAT = {"prompt", "completion", "chosen", "rejected", "chosen_messages", "rejected_messages", "tools",
            "functions", "history"}
MEDIA_COLUMNS = ("images", "image", "videos", "video", "audios", "audio")
MEDIA_PARTS = {"image": "image", "image_url": "image", "input_image": "image", "video": "video",
               "video_url": "video", "audio": "audio", "input_audio": "audio", "audio_url": "audio", "file": "file"}
PLACEHOLDERS = ("<image>", "<video>", "<audio>")
LABEL_COLUMNS = ("label", "kto_tag")
PREFERENCE_PAIRS = ({"chosen", "rejected"}, {"chosen_messages", "rejected_messages"},
                    {"preferred_output", "non_preferred_output"})  # TRL's, UltraFeedback's, OpenAI's
DESCRIPTIONS = {
    "messages": "chat messages (role / content)",
    "sharegpt": "ShareGPT conversations (from / value)",
    "pairs": "chat turns as user / assistant pairs",
    "alpaca": "Alpaca instruction / input / output",
    "prompt_completion": "prompt / completion pairs",
    "text": "plain text (continued pre-training: every token is trained)",
    "preference": "preference pairs (prompt / chosen / rejected)",
    "kto": "answers labelled good or bad (KTO)",
    "prompt_only": "prompts without answers (for GRPO)",
    "classification": "labelled text (text / label)",
    "multimodal": "multimodal data (images, video or audio)",
}
EXPECTED = (
    "messages, conversations (ShareGPT), instruction + output (Alpaca), prompt + completion, or text"
)
_SFT_FILE = "pick a file with messages, conversations, instruction/output, prompt/completion or text"


class RowError(ValueError):
    """One row cannot be used; the message is one sentence without the location."""


# --- detection -------------------------------------------------------------------------------


def _parsed_list(value):
    """A list stored as JSON text (CSV and some Parquet columns) parsed; anything else as it is."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except (RecursionError, ValueError):
            return value
    return value


def _turn_layout(turn) -> str | None:
    if not isinstance(turn, dict):
        return None
    if "role" in turn:
        return "messages"
    if "from" in turn:
        return "sharegpt"
    if any(k in turn for k in USER_KEYS) and any(k in turn for k in ASSISTANT_KEYS):
        return "pairs"
    return None


def _chat(record: dict) -> tuple[str, object, str] | None:
    """(column, turns, format) of the row's conversation, or None. A column with a usual name is
    the conversation even when its turns are broken (normalise then says what is wrong); any other
    column is one when its first item looks like a turn."""
    for key in CHAT_KEYS:
        turns = _parsed_list(record.get(key))
        if isinstance(turns, list) or key in ("messages", "conversations") and key in record:
            layout = _turn_layout(turns[0]) if isinstance(turns, list) and turns else None
            return key, record[key], layout or ("sharegpt" if key == "conversations" else "messages")
    for key, value in record.items():
        if key not in NOT_CHAT and isinstance(value, list) and value:
            layout = _turn_layout(value[0])
            if layout:
                return key, value, layout
    return None


def _contents(record: dict):
    """(column, value) for what people wrote in a row: its top-level values and every value of each turn
    of a list column (content, value, user, ...). Tool declarations and plain text are left out."""
    for key, value in record.items():
        if key in ("tools", "functions", "text"):
            continue
        if isinstance(value, list):
            for turn in value:
                if isinstance(turn, dict):
                    for v in turn.values():
                        yield key, v
        else:
            yield key, value


def _media_part(part) -> str | None:
    """"image", "audio", ... for a media content part, else None."""
    kind = part.get("type") if isinstance(part, dict) else None
    return MEDIA_PARTS.get(kind) if isinstance(kind, str) else None


def media(record: dict) -> str | None:
    """What makes a row multimodal, in words ("an 'images' column"), or None."""
    for key in MEDIA_COLUMNS:
        if record.get(key) not in (None, "", [], {}):
            return f"an '{key}' column" if key[0] in "aeiou" else f"a '{key}' column"
    for key, value in _contents(record):
        if isinstance(value, str):
            tag = next((p for p in PLACEHOLDERS if p in value), None)
            if tag:
                return f"the {tag} placeholder in '{key}'"
        elif isinstance(value, list):
            kind = next(filter(None, map(_media_part, value)), None)
            if kind:
                return f"{kind} parts in '{key}'"
    return None


def _boolish(value) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return True
    return isinstance(value, str) and value.strip().lower() in ("true", "false")


def detect(record: dict) -> str | None:
    """The format (or refused kind) of a single row, or None if it matches none."""
    if media(record):
        return "multimodal"
    keys = record.keys()
    if any(pair <= keys for pair in PREFERENCE_PAIRS):
        return "preference"
    label = next((record[k] for k in LABEL_COLUMNS if k in keys), None)
    if "prompt" in keys and "completion" in keys:
        return "kto" if _boolish(label) else "prompt_completion"
    chat = _chat(record)
    if chat:
        return "kto" if _boolish(label) else chat[2]
    if "instruction" in keys and ("output" in keys or "response" in keys):
        return "alpaca"
    if "prompt" in keys:
        return "prompt_only"
    if "text" in keys:
        return "classification" if "label" in keys else "text"
    return None


def describe_keys(record: dict) -> str:
    keys = list(record.keys())
    if not keys:
        return "is an empty object"
    shown = ", ".join(repr(k) for k in keys[:6]) + (", ..." if len(keys) > 6 else "")
    return f"has the keys {shown}"


def missing_columns_sentence(record: dict) -> str:
    return f"{describe_keys(record)}, which match no format; expected {EXPECTED}"


def accepted(objective: str | None, file_format: str | None = None) -> tuple[str, ...]:
    """The row formats a run with ``objective`` trains on; ``None``: whatever the file is, if some
    objective trains it (a preference file is read as pairs, anything else as SFT data)."""
    if objective is None:
        return (file_format,) if file_format in PREFERENCE_FORMATS else TRAINABLE
    return OBJECTIVE_FORMATS[objective]


def refusal(kind: str, record: dict, objective: str | None = None) -> str:
    """Why a row of ``kind`` is not data for ``objective`` (None or sft: supervised fine-tuning): what it
    is, what it is for."""
    if objective == "grpo":
        what = {"text": "plain text without prompts", "classification": "labelled text (text / label)",
                "multimodal": f"multimodal data ({media(record)})"}.get(kind, DESCRIPTIONS.get(kind, kind))
        return (f"is {what}: GRPO samples answers to prompts, so it needs a prompt in each row (a 'prompt' column, "
                "or a conversation ending with the user's question)")
    if objective in ("dpo", "kto") and kind not in ("prompt_only", "classification", "multimodal"):
        return _preference_refusal(kind, record, objective)
    if kind == "preference":
        return ("is preference data (a prompt with a chosen and a rejected answer): it is for preference tuning "
                f"such as DPO (objective: dpo), not supervised fine-tuning; {_SFT_FILE}")
    if kind == "kto":
        col = next(k for k in LABEL_COLUMNS if k in record)
        return (f"is labelled data (answers marked good or bad in a '{col}' column, the KTO layout): it is for "
                "preference tuning such as KTO (objective: kto), and supervised fine-tuning would train the bad "
                f"answers too; keep only the rows labelled true and drop the '{col}' column to fine-tune on them")
    if kind == "prompt_only":
        return (f"has prompts without answers ({describe_keys(record)[4:]}): it is data for reinforcement "
                "learning with reward functions such as GRPO (objective: grpo), not supervised fine-tuning, which "
                "needs an answer "
                "to learn from; if a column holds the answers, name it 'completion'")
    if kind == "classification":
        return ("is labelled text (text and label, a classification data set): supervised fine-tuning would "
                "train on the text and ignore the labels; to teach the labels, make each row a prompt (the text) "
                "and a completion (the label)")
    if kind == "multimodal":
        return (f"is multimodal data ({media(record)}): the models Tunedeck trains read text only, so what the "
                "images, video or audio show would be lost and the model trained on conversations it cannot see; "
                "use a text-only data set")
    raise AssertionError(kind)  # pragma: no cover


def _preference_refusal(kind: str, record: dict, objective: str) -> str:
    if objective == "dpo" and kind == "kto":
        col = next(k for k in LABEL_COLUMNS if k in record)
        return (f"is labelled data (answers marked good or bad in a '{col}' column, the KTO layout): DPO learns from "
                "a chosen and a rejected answer to the same prompt; use objective: kto for labelled answers")
    wants = ("a prompt with a chosen and a rejected answer (prompt / chosen / rejected)" if objective == "dpo" else
             "answers labelled good or bad (prompt / completion / label) or chosen / rejected pairs")
    return (f"is supervised fine-tuning data ({DESCRIPTIONS.get(kind, kind)}): "
            f"{'DPO' if objective == 'dpo' else 'KTO'} learns from {wants}; use objective: sft for this data")


# --- normalisation ---------------------------------------------------------------------------


def _kind(value) -> str:
    return {list: "a list", dict: "an object", int: "a number", float: "a number", bool: "a boolean", str: "a string"}.get(
        type(value), type(value).__name__
    )


def _json(value: str, what: str):
    try:
        return json.loads(value)
    except (RecursionError, ValueError) as exc:
        raise RowError(f"{what} is not valid JSON ({getattr(exc, 'msg', None) or json_limit(exc)})") from None


def _as_text(value, what: str) -> str:
    """A message's content as a string: a string, or a list of text parts ``{type: text, text|value}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(p, dict) for p in value):
        texts = []
        for part in value:
            kind = part.get("type", "text")
            text = part.get("text", part.get("value"))
            if kind != "text":
                what_kind = _media_part(part)
                if what_kind:
                    raise RowError(f"{what} has {'an' if what_kind[0] in 'aeiou' else 'a'} {what_kind} part; "
                                   "the models Tunedeck trains read text only")
                raise RowError(f"{what} has a part of type {kind!r}; only text parts are supported")
            if not isinstance(text, str):
                raise RowError(f"{what} has a text part with no 'text' string")
            texts.append(text)
        return "".join(texts)
    if value is None:
        raise RowError(f"{what} has no content")
    raise RowError(f"{what} has {_kind(value)} as content; content must be a string")


def _tools(record: dict) -> list[dict] | None:
    """The row's tool declarations ('tools', or the older 'functions'), as OpenAI function tools."""
    key = "tools" if "tools" in record else "functions"
    value = record.get(key)
    if isinstance(value, str):  # LLaMA-Factory / Glaive keep the tools as JSON text
        value = _json(value, f"the '{key}' text") if value.strip() else None
    if value in (None, [], {}):
        return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RowError(f"has '{key}' as {_kind(value)}; it must be a list of function declarations")
    out = []
    for n, tool in enumerate(value, 1):
        fn = tool.get("function") if isinstance(tool, dict) and isinstance(tool.get("function"), dict) else tool
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise RowError(f"tool {n} of '{key}' has no name; a tool is {{name, description, parameters}}")
        out.append({"type": "function", "function": fn})
    return out


def _tool_calls(calls, what: str) -> list[dict]:
    """Tool calls (OpenAI's, a legacy function_call, or ShareGPT's JSON) as [{type, function: {name,
    arguments: dict}, id?}]."""
    if isinstance(calls, str):
        calls = _json(calls, f"the tool call of {what}")
    if isinstance(calls, dict):
        calls = [calls]
    if not isinstance(calls, list) or not calls:
        raise RowError(f"{what} has tool calls that are {_kind(calls)}, not a list of calls")
    out = []
    for k, call in enumerate(calls, 1):
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise RowError(f"{what}: tool call {k} has no function name")
        name = fn["name"]
        args = fn.get("arguments", fn.get("parameters", {}))
        if isinstance(args, str):  # OpenAI sends arguments as JSON text; templates want the object
            try:
                args = json.loads(args) if args.strip() else {}
            except (RecursionError, ValueError) as exc:
                raise RowError(f"{what} calls {name} with arguments that are not valid JSON "
                               f"({getattr(exc, 'msg', None) or json_limit(exc)})") from None
        if not isinstance(args, dict):
            raise RowError(f"{what} calls {name} with {_kind(args)} as arguments; arguments must be a JSON object")
        one = {"type": "function", "function": {"name": name, "arguments": args}}
        if isinstance(call.get("id"), str):
            one["id"] = call["id"]
        out.append(one)
    return out


def _message(m, n: int, allow_weight: bool) -> dict:
    if not isinstance(m, dict):
        raise RowError(f"message {n} is {_kind(m)}, not an object with role and content")
    if "role" not in m:
        raise RowError(f"message {n} has no 'role' ({describe_keys(m)[4:]})")
    role = ROLE_ALIASES.get(m["role"]) if isinstance(m["role"], str) else None
    if role is None:
        raise RowError(f"message {n} has role {m['role']!r}; roles must be system, user, assistant or tool")
    what = f"message {n} ({role})"
    calls = m.get("tool_calls") or m.get("function_call")
    if calls and role != "assistant":
        raise RowError(f"{what} has tool calls; only assistant messages call tools")
    if "content" not in m and not calls:
        raise RowError(f"{what} has no 'content'")
    content = m.get("content")
    msg = {"role": role, "content": "" if content in (None, "") and calls else _as_text(content, what)}
    if calls:
        msg["tool_calls"] = _tool_calls(calls, what)
    if role == "tool":
        msg.update({k: m[k] for k in ("tool_call_id", "name") if isinstance(m.get(k), str)})
    if "weight" in m and m["weight"] is not None:
        w = m["weight"]
        if not allow_weight:
            raise RowError(f"message {n} has a 'weight', which this format does not allow")
        if isinstance(w, bool) or w not in (0, 1):
            raise RowError(f"message {n} has weight {w!r}; weight must be 0 or 1")
        if role != "assistant":
            raise RowError(f"{what} has a weight; only assistant messages may carry one")
        msg["weight"] = int(w)
    return msg


def _messages(value, *, field: str = "messages", allow_weight: bool = True) -> list[dict]:
    if isinstance(value, str) and value.lstrip().startswith("["):  # a JSON-encoded column (CSV)
        value = _json(value, f"the '{field}' text")
    if not isinstance(value, list):
        raise RowError(f"has '{field}' as {_kind(value)}; it must be a list of messages")
    return [_message(m, n, allow_weight) for n, m in enumerate(value, 1)]


def _system_column(record: dict) -> list[dict]:
    system = record.get("system")
    return [] if system in (None, "") else [{"role": "system", "content": _as_text(system, "the system prompt")}]


def _sharegpt(turns, field: str, record: dict) -> list[dict]:
    if isinstance(turns, str) and turns.lstrip().startswith("["):
        turns = _json(turns, f"the '{field}' text")
    if not isinstance(turns, list):
        raise RowError(f"has '{field}' as {_kind(turns)}; it must be a list of turns")
    out = _system_column(record)
    for n, t in enumerate(turns, 1):
        if not isinstance(t, dict):
            raise RowError(f"turn {n} is {_kind(t)}, not an object with from and value")
        if "from" not in t:
            raise RowError(f"turn {n} has no 'from' ({describe_keys(t)[4:]})")
        who = t["from"]
        role = SHAREGPT_ROLES.get(who.lower()) if isinstance(who, str) else None
        if role is None:
            raise RowError(f"turn {n} is from {who!r}; it must be human, gpt, system, function_call or observation")
        if "value" not in t:
            raise RowError(f"turn {n} ({who}) has no 'value'")
        value = t["value"]
        if role == "call":
            out.append({"role": "assistant", "content": "", "tool_calls": _tool_calls(value, f"turn {n} ({who})")})
        elif role == "tool" and isinstance(value, (dict, list)):  # a tool result given as JSON, not text
            out.append({"role": "tool", "content": json.dumps(value, ensure_ascii=False)})
        else:
            out.append({"role": role, "content": _as_text(value, f"turn {n} ({who})")})
    return out


def _pairs(turns: list, record: dict) -> list[dict]:
    out = _system_column(record)
    for n, t in enumerate(turns, 1):
        if not isinstance(t, dict):
            raise RowError(f"turn {n} is {_kind(t)}, not an object with user and assistant")
        user = next((k for k in USER_KEYS if k in t), None)
        if user is None:
            raise RowError(f"turn {n} has no {' or '.join(repr(k) for k in USER_KEYS)}")
        out.append({"role": "user", "content": _as_text(t[user], f"turn {n} ({user})")})
        answer = next((k for k in ASSISTANT_KEYS if t.get(k) is not None), None)
        if answer:
            out.append({"role": "assistant", "content": _as_text(t[answer], f"turn {n} ({answer})")})
    return out


def _conversation(record: dict, fmt: str) -> list[dict]:
    field, turns, _ = _chat(record)
    if fmt == "sharegpt":
        return _sharegpt(turns, field, record)
    if fmt == "pairs":
        return _pairs(_parsed_list(turns), record)
    msgs = _messages(turns, field=field)
    if not any(m["role"] == "system" for m in msgs):
        msgs = _system_column(record) + msgs  # a separate 'system' column is not dropped
    return msgs


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


def _check_messages(messages: list[dict]) -> None:
    if not messages:
        raise RowError("has no messages")
    for n, m in enumerate(messages, 1):
        if not m["content"].strip() and not m.get("tool_calls") and m["role"] != "tool":
            raise RowError(f"message {n} ({m['role']}) has empty content")
    assistants = [m for m in messages if m["role"] == "assistant"]
    if not assistants:
        raise RowError("has no assistant message, so there is nothing to learn from")
    if all(m.get("weight", 1) == 0 for m in assistants):
        raise RowError("has every assistant message at weight 0, so there is nothing to learn from")


def _check_tools(messages: list[dict], tools: list[dict] | None) -> None:
    """A call names a declared tool; a tool result answers a call of the assistant turn before it."""
    declared = sorted(t["function"]["name"] for t in tools or ())
    pending: list = []  # the calls of the last assistant turn not answered yet (their ids, or None)
    for n, m in enumerate(messages, 1):
        if m.get("tool_calls"):
            for call in m["tool_calls"]:
                name = call["function"]["name"]
                if not declared:
                    raise RowError(f"message {n} (assistant) calls {name}, but the row declares no tools; add "
                                   "their definitions in a 'tools' column so the model learns when to call them")
                if name not in declared:
                    raise RowError(f"message {n} (assistant) calls {name}, which is not among the declared tools "
                                   f"({', '.join(declared)})")
            pending = [c.get("id") for c in m["tool_calls"]]
        elif m["role"] == "tool":
            if not pending:
                raise RowError(f"message {n} (tool) is a tool result that follows no tool call")
            answered = m.get("tool_call_id")
            if answered and any(pending):
                if answered not in pending:
                    raise RowError(f"message {n} (tool) answers the call {answered!r}, which the assistant turn "
                                   "before it did not make")
                pending.remove(answered)
            else:
                pending.pop(0)
        else:
            pending = []


def _chat_example(messages: list[dict], record: dict) -> dict:
    tools = _tools(record)
    _check_messages(messages)
    _check_tools(messages, tools)
    return {"messages": messages, "tools": tools} if tools else {"messages": messages}


def normalise(record: dict, fmt: str) -> dict:
    """The training example for one row already known to be in ``fmt``; raises RowError."""
    if fmt in CHAT_FORMATS:
        return _chat_example(_conversation(record, fmt), record)
    if fmt == "alpaca":
        return _chat_example(_alpaca(record), record)
    if fmt == "prompt_completion":
        return _chat_example(_prompt_completion(record), record)
    if fmt == "text":
        text = record.get("text")
        if not isinstance(text, str):
            raise RowError("has no 'text'" if text is None else f"has 'text' as {_kind(text)}; it must be a string")
        if not text.strip():
            raise RowError("has an empty 'text'")
        return {"text": text}
    if fmt == "preference":
        return _preference_example(record)
    if fmt == "kto":
        return _labelled_example(record)
    if fmt in REFUSED:
        raise RowError(refusal(fmt, record))
    raise RowError(f"is in an unknown format {fmt!r}")  # pragma: no cover


def _plain(messages: list[dict]) -> list[dict]:
    """Messages as a GRPO prompt: role and content only (weights and tool calls dropped)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def prompt_example(record: dict, fmt: str) -> dict:
    """A row of any layout with a question as GRPO's example: ``{"prompt": [messages], "reference": str |
    None}``; the prompt is everything before the row's last assistant turns, the reference their text (the
    row's answer, which ``matches_reference`` compares with; None when the row has none)."""
    reference = None
    if fmt == "prompt_only":
        prompt = _prompt(record["prompt"], record)
        value = next((record[k] for k in REFERENCE_COLUMNS if record.get(k) is not None), None)
        if value is not None:
            reference = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    elif fmt == "preference":
        prompt, chosen, _ = _pair_parts(record)
        reference = _answer_text(chosen)
    elif fmt == "kto":
        example = _labelled_example(record)
        prompt = example["prompt"]
        reference = _answer_text(example["completion"]) if example["label"] else None
    else:
        messages = (_conversation(record, fmt) if fmt in CHAT_FORMATS else _alpaca(record) if fmt == "alpaca"
                    else _prompt_completion(record))
        cut = len(messages)
        while cut and messages[cut - 1]["role"] == "assistant":
            cut -= 1
        prompt = messages[:cut]
        if cut < len(messages):
            reference = _answer_text(messages[cut:])
    _check_prompt(prompt)
    if not any(m["role"] == "user" for m in prompt):
        raise RowError("has no user turn to answer")
    return {"prompt": _plain(prompt), "reference": reference}


def check_row(record: dict, file_format: str | None,
              objective: str | None = "sft") -> tuple[str | None, dict | None, str | None]:
    """(row format, example or None, problem or None) for one parsed row against the file's format, for
    a run with ``objective`` (sft, dpo, kto; None: whatever the file is, see ``accepted``)."""
    fmt = detect(record)
    if fmt is None:
        return None, None, missing_columns_sentence(record)
    ok = accepted(objective, file_format)
    if fmt not in ok:
        return fmt, None, refusal(fmt, record, objective)
    if file_format and fmt != file_format and file_format in ok:
        return fmt, None, (
            f"is {fmt} but the file is {file_format}; one format per file (this row {describe_keys(record)})"
        )
    try:
        return fmt, (prompt_example(record, fmt) if objective == "grpo" else normalise(record, fmt)), None
    except RowError as exc:
        return fmt, None, str(exc)


# --- preference rows ---------------------------------------------------------------------------

REPEAT_START = 12  # an answer that starts with the prompt's last user turn of at least this many characters
REPEAT_INSIDE = 32  # ... or holds one at least this long


def _is_text(value) -> bool:
    """A string that is text, not a list of messages stored as JSON (CSV columns keep lists that way)."""
    if not isinstance(value, str):
        return False
    parsed = _parsed_list(value)
    return not (isinstance(parsed, list) and parsed and all(isinstance(m, dict) for m in parsed))


def _answer(value, field: str) -> list[dict]:
    """One side of a pair (or a KTO completion) as assistant messages: a string, or a list of messages."""
    if _is_text(value):
        return [{"role": "assistant", "content": value}]
    msgs = _messages(value, field=field, allow_weight=False)
    for n, m in enumerate(msgs, 1):
        if m["role"] != "assistant":
            raise RowError(f"'{field}' message {n} has role {m['role']!r}; with a separate prompt, '{field}' holds "
                           "only the assistant's answer")
    return msgs


def _prompt(value, record: dict, field: str = "prompt") -> list[dict]:
    if _is_text(value):
        return _system_column(record) + [{"role": "user", "content": value}]
    msgs = _messages(value, field=field, allow_weight=False)
    if not any(m["role"] == "system" for m in msgs):
        msgs = _system_column(record) + msgs
    return msgs


def _split_conversation(value, field: str) -> tuple[list[dict], list[dict]]:
    """(prompt, answer): a conversation's trailing assistant messages are the answer."""
    if _is_text(value):
        raise RowError(f"has '{field}' as text but no 'prompt'; add a 'prompt' column, or give '{field}' as a "
                       "conversation that starts with the prompt")
    msgs = _messages(value, field=field, allow_weight=False)
    cut = len(msgs)
    while cut and msgs[cut - 1]["role"] == "assistant":
        cut -= 1
    if cut == len(msgs):
        raise RowError(f"'{field}' does not end with an assistant answer")
    return msgs[:cut], msgs[cut:]


def _same_turn(a: dict, b: dict) -> bool:
    return a["role"] == b["role"] and a["content"] == b["content"] and a.get("tool_calls") == b.get("tool_calls")


def _answer_text(messages: list[dict]) -> str:
    return "\n".join(m["content"].strip() for m in messages)


def _check_prompt(prompt: list[dict]) -> None:
    if not prompt:
        raise RowError("has an empty prompt; a pair answers a prompt")
    for n, m in enumerate(prompt, 1):
        if not m["content"].strip() and not m.get("tool_calls") and m["role"] != "tool":
            raise RowError(f"prompt message {n} ({m['role']}) has empty content")
    if prompt[-1]["role"] == "assistant":
        raise RowError("has a prompt that ends with an assistant turn; the prompt must end with the question")


def _check_answer(prompt: list[dict], answer: list[dict], side: str) -> None:
    text = _answer_text(answer)
    if not text and not any(m.get("tool_calls") for m in answer):
        raise RowError(f"has an empty {side} answer")
    question = next((m["content"].strip() for m in reversed(prompt) if m["role"] == "user"), "")
    if (len(question) >= REPEAT_START and text.startswith(question)) or (
            len(question) >= REPEAT_INSIDE and question in text):
        shown = question if len(question) <= 40 else question[:39] + "…"
        raise RowError(f"has the prompt repeated in the {side} answer ({shown!r}); the {side} answer should hold "
                       "only the answer")


def _pair_parts(record: dict) -> tuple[list[dict], list[dict], list[dict]]:
    if "preferred_output" in record and "non_preferred_output" in record:  # OpenAI's preference fine-tuning
        given = record.get("input")
        messages = given.get("messages") if isinstance(given, dict) else given
        if messages is None:
            raise RowError("has preferred_output but no 'input' with the prompt's messages")
        return (_prompt(messages, record, "input"), _answer(record["preferred_output"], "preferred_output"),
                _answer(record["non_preferred_output"], "non_preferred_output"))
    chosen_key, rejected_key = (("chosen", "rejected") if "chosen" in record and "rejected" in record
                                else ("chosen_messages", "rejected_messages"))
    chosen, rejected = record[chosen_key], record[rejected_key]
    if record.get("prompt") is not None:
        return _prompt(record["prompt"], record), _answer(chosen, chosen_key), _answer(rejected, rejected_key)
    prompt, chosen_answer = _split_conversation(chosen, chosen_key)
    other, rejected_answer = _split_conversation(rejected, rejected_key)
    if len(prompt) != len(other) or not all(map(_same_turn, prompt, other)):
        n = next((k for k, (a, b) in enumerate(zip(prompt, other), 1) if not _same_turn(a, b)),
                 min(len(prompt), len(other)) + 1)
        raise RowError(f"has chosen and rejected conversations with different prompts (message {n} differs); a pair "
                       "answers the same prompt two ways")
    if not any(m["role"] == "system" for m in prompt):
        prompt = _system_column(record) + prompt
    return prompt, chosen_answer, rejected_answer


def _with_tools(example: dict, record: dict) -> dict:
    given = record.get("input")
    tools = _tools(given if isinstance(given, dict) and "tools" in given else record)
    if tools:
        example["tools"] = tools
    return example


def _preference_example(record: dict) -> dict:
    prompt, chosen, rejected = _pair_parts(record)
    _check_prompt(prompt)
    _check_answer(prompt, chosen, "chosen")
    _check_answer(prompt, rejected, "rejected")
    if len(chosen) == len(rejected) and all(map(_same_turn, chosen, rejected)):
        raise RowError("has the same chosen and rejected answer, so there is no preference to learn")
    example = _with_tools({"prompt": prompt, "chosen": chosen, "rejected": rejected}, record)
    _check_tools(prompt + chosen, example.get("tools"))
    _check_tools(prompt + rejected, example.get("tools"))
    return example


def _label(record: dict) -> bool:
    col = next(k for k in LABEL_COLUMNS if k in record)
    value = record[col]
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _labelled_example(record: dict) -> dict:
    if "prompt" in record and "completion" in record:
        prompt, completion = _prompt(record["prompt"], record), _answer(record["completion"], "completion")
    else:
        field, turns, _ = _chat(record)
        prompt, completion = _split_conversation(turns, field)
        if not any(m["role"] == "system" for m in prompt):
            prompt = _system_column(record) + prompt
    _check_prompt(prompt)
    _check_answer(prompt, completion, "labelled")
    example = _with_tools({"prompt": prompt, "completion": completion, "label": _label(record)}, record)
    _check_tools(prompt + completion, example.get("tools"))
    return example


def is_pair(example: dict) -> bool:
    return "chosen" in example and "rejected" in example


def is_labelled(example: dict) -> bool:
    return "completion" in example and "label" in example and "prompt" in example


def is_prompt(example: dict) -> bool:
    """A GRPO example: a prompt (and the row's answer as ``reference``), no answer to train."""
    return "prompt" in example and "reference" in example and not is_pair(example) and "completion" not in example


def kind_of(example: dict) -> str:
    """What a normalised example is: "pair", "labelled", "prompt" (GRPO) or "sft"."""
    return ("pair" if is_pair(example) else "labelled" if is_labelled(example) else "prompt" if is_prompt(example)
            else "sft")


def as_messages(example: dict) -> dict:
    """A GRPO example as a chat example to show (the reference answer, if any, untrained): others as they are."""
    if not is_prompt(example):
        return example
    answer = [{"role": "assistant", "content": example["reference"], "weight": 0}] if example["reference"] else []
    return {"messages": example["prompt"] + answer}


def unpair(example: dict) -> list[dict]:
    """A pair as two labelled answers (how KTO trains on pairs, as TRL's unpair_preference_dataset)."""
    if not is_pair(example):
        return [example]
    extra = {"tools": example["tools"]} if example.get("tools") else {}
    return [{"prompt": example["prompt"], "completion": example["chosen"], "label": True, **extra},
            {"prompt": example["prompt"], "completion": example["rejected"], "label": False, **extra}]


def kto_weights(good: int, bad: int) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) that balance ``good`` against ``bad`` answers: the KTO paper
    (Ethayarajh et al. 2024, eq. 8) wants desirable_weight x good / (undesirable_weight x bad) in
    [1, 4/3]; the rarer kind is weighed up, the other left at 1."""
    if not good or not bad or 1 <= good / bad <= 4 / 3:
        return 1.0, 1.0
    if good < bad:
        return round(bad / good, 3), 1.0
    return 1.0, round(good / bad, 3)


def conversations(example: dict) -> list[list[dict]]:
    """Every conversation an example trains on, as messages (a pair: prompt + chosen, prompt + rejected;
    earlier assistant turns of a prompt carry weight 0)."""
    if "messages" in example:
        return [example["messages"]]
    if "prompt" not in example:
        return []
    if is_prompt(example):
        return [as_messages(example)["messages"]]
    prompt = [{**m, "weight": 0} if m["role"] == "assistant" else m for m in example["prompt"]]
    answers = [example["chosen"], example["rejected"]] if is_pair(example) else [example["completion"]]
    return [prompt + a for a in answers]


def tool_calls(example: dict) -> list[dict]:
    """The tool calls of an example, in order: [{"message": n, "name", "arguments"}] (for display)."""
    return [{"message": n, "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
            for n, m in enumerate(example.get("messages", ()), 1) for c in m.get("tool_calls", ())]


def uses_tools(example: dict) -> bool:
    return bool(example.get("tools")) or any(m.get("tool_calls") or m["role"] == "tool"
                                             for conv in conversations(example) for m in conv)


def preview(example: dict | None, record: dict | None = None, width: int = 200) -> str:
    """One line to show in a table: the first user turn (or the text)."""
    if example is not None:
        if "text" in example:
            s = example["text"]
        else:
            msgs = example["messages"] if "messages" in example else example["prompt"]
            first = next((m for m in msgs if m["role"] == "user"), msgs[0] if msgs else None)
            s = first["content"] if first else ""
    elif record is not None:
        s = json.dumps(record, ensure_ascii=False)
    else:
        s = ""
    s = " ".join(s.split())
    return s if len(s) <= width else s[: width - 1] + "…"
