"""One example as the model sees it: every token of the chat-template rendering, with the tokens
that are trained highlighted and the rest dimmed. Neighbouring tokens alternate shades so their
boundaries show. Everything after the max-length cut is listed as cut. The mask is the engine's
(``tunedeck data render``): with tools, the assistant's calls are trained and the tool results not;
the row's warnings (special-token text) are listed above the tokens."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class TokenView(Static):
    DEFAULT_CSS = """
    TokenView { height: auto; padding: 0 1; }
    TokenView > .token-view--trained-a { background: $success 40%; color: $text; }
    TokenView > .token-view--trained-b { background: $success 25%; color: $text; }
    TokenView > .token-view--prompt-a { color: $text-muted; background: $foreground 4%; }
    TokenView > .token-view--prompt-b { color: $text-muted; }
    TokenView > .token-view--legend { color: $text-muted; }
    TokenView > .token-view--warning { color: $warning; text-style: bold; }
    """
    COMPONENT_CLASSES = {
        "token-view--trained-a", "token-view--trained-b", "token-view--prompt-a", "token-view--prompt-b",
        "token-view--legend", "token-view--warning",
    }

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self.rendered: dict | None = None

    def show_message(self, message: str) -> None:
        self.rendered = None
        self.update(Text(message, style=self.get_component_rich_style("token-view--legend")))

    def show(self, rendered: dict) -> None:
        """``rendered`` is ``tunedeck data render --json`` output: tokens, trained, ..."""
        self.rendered = rendered
        self.update(self.build(rendered))

    def build(self, r: dict) -> Text:
        style = self.get_component_rich_style
        shades = {
            (True, 0): style("token-view--trained-a"), (True, 1): style("token-view--trained-b"),
            (False, 0): style("token-view--prompt-a"), (False, 1): style("token-view--prompt-b"),
        }
        legend = style("token-view--legend")
        text = Text()
        trained_total = sum(r["trained"])
        text.append(f"{r['length']} tokens · ", legend)
        text.append(f"{trained_total} trained", shades[(True, 0)])
        text.append(" · ", legend)
        untrained = "prompt, tool results and template not trained" if _has_tool_results(r) else \
            "prompt and template not trained"
        text.append(untrained, shades[(False, 0)])
        calls = r.get("tool_calls") or []
        if r.get("tools") or calls:
            n = len(r.get("tools") or [])
            text.append(f"\n{n} tool{'s' if n != 1 else ''} declared · {len(calls)} call{'s' if len(calls) != 1 else ''}"
                        + (" (trained)" if calls else ""), legend)
        for warning in r.get("warnings") or []:
            text.append(f"\n! {warning}", style("token-view--warning"))
        text.append("\n\n")
        for k, (piece, trained) in enumerate(zip(r["tokens"], r["trained"])):
            shade = shades[(bool(trained), k % 2)]
            if "\n" in piece:
                text.append(piece.replace("\n", "↵"), shade)
                text.append("\n")
            else:
                text.append(piece, shade)
        if r.get("truncated"):
            cut = r["full_length"] - r["length"]
            text.append(
                f"\n\n✂ cut at max length {r.get('max_length')}: {cut} more token{'s' if cut != 1 else ''} "
                "are dropped and not trained",
                style("token-view--warning"),
            )
        if trained_total == 0:
            text.append("\n\nNothing in this example is trained.", style("token-view--warning"))
        return text


def _has_tool_results(r: dict) -> bool:
    example = r.get("example")
    if isinstance(example, dict):
        return any(m.get("role") == "tool" for m in example.get("messages", ()))
    return bool(r.get("tool_calls"))
