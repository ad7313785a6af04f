"""One training example as a conversation: each turn with its role, and whether it is trained."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ConversationView(Static):
    DEFAULT_CSS = """
    ConversationView { height: auto; padding: 0 1; }
    ConversationView > .conversation-view--meta { color: $text-muted; }
    ConversationView > .conversation-view--system { color: $secondary; text-style: bold; }
    ConversationView > .conversation-view--user { color: $accent; text-style: bold; }
    ConversationView > .conversation-view--assistant { color: $success; text-style: bold; }
    ConversationView > .conversation-view--untrained { color: $text-muted; text-style: italic; }
    ConversationView > .conversation-view--problem { color: $error; text-style: bold; }
    """
    COMPONENT_CLASSES = {
        "conversation-view--meta", "conversation-view--system", "conversation-view--user",
        "conversation-view--assistant", "conversation-view--untrained", "conversation-view--problem",
    }

    def show_message(self, message: str) -> None:
        self.update(Text(message, style=self.get_component_rich_style("conversation-view--meta")))

    def show(self, *, where: str, fmt: str | None, example: dict | None, problem: str | None, raw: str | None) -> None:
        style = self.get_component_rich_style
        meta = style("conversation-view--meta")
        text = Text()
        text.append(f"{where} · {fmt or 'unknown format'}\n", meta)
        if problem is not None:
            text.append(f"✗ {problem}\n\n", style("conversation-view--problem"))
            if raw:
                text.append(raw if len(raw) < 4000 else raw[:4000] + " …", meta)
            return self.update(text)
        if "text" in example:
            text.append("TEXT", style("conversation-view--assistant"))
            text.append("  every token trained\n", meta)
            text.append(example["text"])
            return self.update(text)
        for m in example["messages"]:
            role = m["role"]
            text.append("\n" + role.upper(), style(f"conversation-view--{role}"))
            if role == "assistant":
                if m.get("weight", 1) == 0:
                    text.append("  weight 0: not trained", style("conversation-view--untrained"))
                else:
                    text.append("  trained", meta)
            text.append("\n")
            text.append(m["content"] + "\n")
        self.update(text)
