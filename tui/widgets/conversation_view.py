"""One training example as a conversation: each turn with its role, and whether it is trained.

Tool calling is drawn apart from ordinary turns: the tools the row declares first (name, parameters,
what it does), each assistant tool call as ``→ name(arg=value)``, each tool result labelled with the
call it answers and as not trained. Warnings about the row (special-token text) come first."""

from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import Static

from .tool_calls import call_text, description, result_text, signature

RAW = 4000  # characters of a bad row's text shown


class ConversationView(Static):
    DEFAULT_CSS = """
    ConversationView { height: auto; padding: 0 1; }
    ConversationView > .conversation-view--meta { color: $text-muted; }
    ConversationView > .conversation-view--system { color: $secondary; text-style: bold; }
    ConversationView > .conversation-view--user { color: $accent; text-style: bold; }
    ConversationView > .conversation-view--assistant { color: $success; text-style: bold; }
    ConversationView > .conversation-view--tool { color: $warning; text-style: bold; }
    ConversationView > .conversation-view--tools { color: $warning; text-style: bold; }
    ConversationView > .conversation-view--call { color: $text; text-style: bold; }
    ConversationView > .conversation-view--result { color: $text-muted; }
    ConversationView > .conversation-view--untrained { color: $text-muted; text-style: italic; }
    ConversationView > .conversation-view--problem { color: $error; text-style: bold; }
    ConversationView > .conversation-view--warning { color: $warning; }
    """
    COMPONENT_CLASSES = {
        "conversation-view--meta", "conversation-view--system", "conversation-view--user",
        "conversation-view--assistant", "conversation-view--tool", "conversation-view--tools",
        "conversation-view--call", "conversation-view--result", "conversation-view--untrained",
        "conversation-view--problem", "conversation-view--warning",
    }

    def show_message(self, message: str) -> None:
        self.update(Text(message, style=self.get_component_rich_style("conversation-view--meta")))

    def show(self, *, where: str, fmt: str | None, example: dict | None, problem: str | None, raw: str | None,
             warnings: list[str] | tuple = (), refused: str | None = None) -> None:
        """``refused``: the row is of a kind not trained at all (the file's sentence is shown elsewhere):
        its content is shown as it is, without the per-row sentence."""
        style = self.get_component_rich_style
        meta = style("conversation-view--meta")
        text = Text()
        text.append(f"{where} · {fmt or 'unknown format'}\n", meta)
        for warning in warnings:
            text.append(f"! {warning}\n", style("conversation-view--warning"))
        if refused is not None:
            text.append(f"{refused}: not trained\n\n", style("conversation-view--problem"))
            if raw:
                text.append(_pretty(raw), meta)
            return self.update(text)
        if problem is not None:
            text.append(f"✗ {problem}\n\n", style("conversation-view--problem"))
            if raw:
                text.append(raw if len(raw) < RAW else raw[:RAW] + " …", meta)
            return self.update(text)
        if "text" in example:
            text.append("TEXT", style("conversation-view--assistant"))
            text.append("  every token trained\n", meta)
            text.append(example["text"])
            return self.update(text)
        tools = example.get("tools") or []
        if tools:
            text.append(f"TOOLS  {len(tools)} declared\n", style("conversation-view--tools"))
            for tool in tools:
                text.append("  " + signature(tool), style("conversation-view--call"))
                said = description(tool)
                text.append(f"  {said}\n" if said else "\n", meta)
        if "messages" in example:
            self._turns(text, example["messages"])
        else:  # a preference pair or a labelled answer (when the project's objective trains on them)
            self._turns(text, example.get("prompt") or [], prompt=True)
            answers = ([("CHOSEN", "preferred", example["chosen"]), ("REJECTED", "not preferred", example["rejected"])]
                       if "chosen" in example else
                       [("ANSWER", "labelled good" if example.get("label") else "labelled bad",
                         example.get("completion") or [])])
            for label, note, messages in answers:
                text.append(label, style("conversation-view--assistant"))
                text.append(f"  {note}\n", meta)
                for m in messages:
                    if m["content"]:
                        text.append(m["content"] + "\n")
                    for call in m.get("tool_calls") or []:
                        text.append("→ ", style("conversation-view--tool"))
                        fn = call["function"]
                        text.append(call_text(fn["name"], fn["arguments"]) + "\n", style("conversation-view--call"))
        text.rstrip()
        self.update(text)

    def _turns(self, text: Text, messages: list[dict], prompt: bool = False) -> None:
        style = self.get_component_rich_style
        meta = style("conversation-view--meta")
        untrained = style("conversation-view--untrained")
        pending: list[dict] = []  # the calls of the last assistant turn not answered yet
        for m in messages:
            role = m["role"]
            calls = m.get("tool_calls") or []
            text.append("TOOL RESULT" if role == "tool" else role.upper(), style(f"conversation-view--{role}"))
            if role == "assistant":
                if prompt:
                    text.append("  in the prompt", untrained)
                elif m.get("weight", 1) == 0:
                    text.append("  weight 0: not trained", untrained)
                else:
                    text.append("  trained", meta)
            elif role == "tool":
                call = _answered(m, pending)
                if call is not None:
                    text.append(f"  of {call['function']['name']}", style("conversation-view--tool"))
                text.append("  not trained", untrained)
            text.append("\n")
            if role == "tool":
                text.append(result_text(m["content"]) + "\n", style("conversation-view--result"))
                continue
            if m["content"]:
                text.append(m["content"] + "\n")
            for call in calls:
                fn = call["function"]
                text.append("→ ", style("conversation-view--tool"))
                text.append(call_text(fn["name"], fn["arguments"]) + "\n", style("conversation-view--call"))
            if calls:
                pending = list(calls)
            elif role != "tool":
                pending = []


def _answered(message: dict, pending: list[dict]) -> dict | None:
    """The call a tool result answers: by its id, else the next call not answered yet."""
    wanted = message.get("tool_call_id")
    for k, call in enumerate(pending):
        if wanted and call.get("id") == wanted:
            return pending.pop(k)
    if pending and not (wanted and any(c.get("id") for c in pending)):
        return pending.pop(0)
    name = message.get("name")
    return {"function": {"name": name}} if name else None


def _pretty(raw: str) -> str:
    """A row of a refused file as indented JSON (it is read, not trained)."""
    try:
        text = json.dumps(json.loads(raw), ensure_ascii=False, indent=2)
    except (TypeError, ValueError, RecursionError):
        text = raw
    return text if len(text) < RAW else text[:RAW] + " …"
