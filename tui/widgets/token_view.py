"""One example as the model sees it: every token of the chat-template rendering, with the tokens
that are trained highlighted and the rest dimmed. Neighbouring tokens alternate shades so their
boundaries show. Everything after the max-length cut is listed as cut. The mask is the engine's
(``tunedeck data render``): with tools, the assistant's calls are trained and the tool results not;
the row's warnings (special-token text) are listed above the tokens.

Preference data (when the project's objective is DPO or KTO): a pair shows both sequences the
trainer sees, prompt + chosen and prompt + rejected, one after the other under a CHOSEN / REJECTED
heading, each with its mask (the answer trained, the prompt not); a KTO row shows its one answer
with its label (good or bad)."""

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
    TokenView > .token-view--heading { color: $accent; text-style: bold; }
    """
    COMPONENT_CLASSES = {
        "token-view--trained-a", "token-view--trained-b", "token-view--prompt-a", "token-view--prompt-b",
        "token-view--legend", "token-view--warning", "token-view--heading",
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

    def _shades(self) -> dict:
        style = self.get_component_rich_style
        return {
            (True, 0): style("token-view--trained-a"), (True, 1): style("token-view--trained-b"),
            (False, 0): style("token-view--prompt-a"), (False, 1): style("token-view--prompt-b"),
        }

    def build(self, r: dict) -> Text:
        if r.get("kind") in ("pair", "labelled"):
            return self.build_preference(r)
        style = self.get_component_rich_style
        shades = self._shades()
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
        append_tokens(text, r["tokens"], r["trained"], shades)
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


    def build_preference(self, r: dict) -> Text:
        """A pair: CHOSEN then REJECTED (prompt + that answer each); a labelled answer: its one side."""
        style = self.get_component_rich_style
        shades = self._shades()
        legend, heading, warn = style("token-view--legend"), style("token-view--heading"), style("token-view--warning")
        text = Text()
        if r["kind"] == "pair":
            sides = [("CHOSEN", "the preferred answer", r["chosen"]), ("REJECTED", "the answer not preferred", r["rejected"])]
            text.append("A preference pair: the prompt with each answer, as the trainer sees them · ", legend)
        else:
            good = bool(r.get("label"))
            sides = [(f"ANSWER · labelled {'good' if good else 'bad'}",
                      "an answer to learn from" if good else "an answer to learn away from", r)]
            text.append("A labelled answer (KTO): the prompt with its answer · ", legend)
        text.append("answer trained", shades[(True, 0)])
        text.append(" · ", legend)
        text.append("prompt and template not trained", shades[(False, 0)])
        limits = [f"{k} {r[k]}" for k in ("max_prompt_length", "max_completion_length") if r.get(k)]
        if limits:
            text.append(f"\nlimits: max_length {r.get('max_length')} · " + " · ".join(limits), legend)
        for warning in r.get("warnings") or []:
            text.append(f"\n! {warning}", warn)
        for title, note, side in sides:
            text.append("\n" if text.plain.endswith("\n") else "\n\n")
            text.append(title, heading)
            trained = side.get("trained_tokens", sum(side["trained"]))
            text.append(f"  {note} · {side['length']} tokens: prompt {side['prompt_tokens']}, {trained} trained\n",
                        legend)
            append_tokens(text, side["tokens"], side["trained"], shades)
            if side.get("truncated"):
                cut = side["full_length"] - side["length"]
                text.append(f"\n✂ cut: {cut} more token{'s' if cut != 1 else ''} of {title.split()[0].lower()} "
                            "are dropped (the limits above)", warn)
            if not trained:
                text.append(f"\nNothing of {title.split()[0].lower()} is trained.", warn)
        return text


def _has_tool_results(r: dict) -> bool:
    example = r.get("example")
    if isinstance(example, dict):
        return any(m.get("role") == "tool" for m in example.get("messages", ()))
    return bool(r.get("tool_calls"))


def append_tokens(text: Text, tokens: list[str], trained: list, shades: dict) -> None:
    """The tokens, shaded trained or not (alternating shades mark the token edges); a newline shows as ↵."""
    for k, (piece, on) in enumerate(zip(tokens, trained)):
        shade = shades[(bool(on), k % 2)]
        if "\n" in piece:
            text.append(piece.replace("\n", "↵"), shade)
            text.append("\n")
        else:
            text.append(piece, shade)
