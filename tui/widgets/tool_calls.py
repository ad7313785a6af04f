"""Tool calling, readably: a declared tool as one line (name, parameters, what it does), a call as
``name(arg=value, ...)`` with JSON values, one line when it fits and one argument a line when not.
The Data screen's conversation view and the Chat screen's answers both draw calls this way.
"""

from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import Static

ONE_LINE = 72  # a call longer than this gets one argument a line
DESCRIPTION = 70  # a tool's description is cut to this many characters


def _value(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def signature(tool: dict) -> str:
    """``get_order_status(order_id, reason?)``: the name and the parameters (optional ones with ?)."""
    fn = tool.get("function", tool) if isinstance(tool, dict) else {}
    params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
    props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
    required = params.get("required") if isinstance(params.get("required"), list) else []
    names = [p if p in required else f"{p}?" for p in props]
    return f"{fn.get('name', '?')}({', '.join(names)})"


def description(tool: dict, width: int = DESCRIPTION) -> str:
    fn = tool.get("function", tool) if isinstance(tool, dict) else {}
    text = fn.get("description") if isinstance(fn.get("description"), str) else ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def call_text(name: str, arguments) -> str:
    """``name(key="value", n=3)``; the arguments one a line when the call is long."""
    if not isinstance(arguments, dict):  # arguments the model wrote but that are not an object
        return f"{name}({arguments if isinstance(arguments, str) else _value(arguments)})"
    parts = [f"{key}={_value(value)}" for key, value in arguments.items()]
    one = f"{name}({', '.join(parts)})"
    if len(one) <= ONE_LINE or len(parts) < 2:
        return one
    return f"{name}(\n" + "".join(f"    {p},\n" for p in parts) + ")"


def result_text(content: str, limit: int = 1500) -> str:
    """A tool result as the model reads it, JSON kept compact and very long results cut."""
    text = content
    try:
        parsed = json.loads(content)
    except (TypeError, ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, (dict, list)):
        text = _value(parsed)
    if len(text) > limit:
        text = text[:limit] + f" … ({len(text) - limit:,} more characters)"
    return text


class ToolCallsView(Static):
    """The tool calls of one chat answer: each call on its own lines, marked as a call."""

    DEFAULT_CSS = """
    ToolCallsView { height: auto; padding: 0 0 0 1; }
    ToolCallsView.-hidden { display: none; }
    ToolCallsView > .tool-calls--mark { color: $warning; text-style: bold; }
    ToolCallsView > .tool-calls--call { color: $text; }
    ToolCallsView > .tool-calls--meta { color: $text-muted; }
    """
    COMPONENT_CLASSES = {"tool-calls--mark", "tool-calls--call", "tool-calls--meta"}

    def __init__(self, **kwargs) -> None:
        super().__init__("", classes="-hidden", **kwargs)
        self.calls: list[dict] = []

    def show_calls(self, calls: list[dict]) -> None:
        """``calls``: [{"name", "arguments"}] as the chat process parsed them."""
        self.calls = list(calls)
        style = self.get_component_rich_style
        text = Text()
        for k, call in enumerate(self.calls):
            if k:
                text.append("\n")
            text.append("⚙ tool call ", style("tool-calls--mark"))
            text.append(call_text(str(call.get("name", "?")), call.get("arguments", {})), style("tool-calls--call"))
        self.update(text)
        self.set_class(not self.calls, "-hidden")
