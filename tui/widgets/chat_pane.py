"""One side of a chat: the conversation with one model (base or fine-tuned), answers as Markdown.

The pane keeps its own history (what is sent to the chat process for the next turn), so in compare
mode base and fine-tuned each continue their own conversation. Answers stream in through
``append``; ``finish`` closes the answer with its figures. Clicking "copy" on an answer posts
``ChatPane.CopyRequested`` (the screen puts it on the clipboard).

An answer that is a tool call (the chat process parsed the template's markup: ``tool_calls`` and
``content`` in its end event) is shown as the call, name and arguments, instead of the raw markup
that streamed in; the text the model wrote stays the answer's text (history, copy).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Markdown, Static

from .tool_calls import ToolCallsView


class CopyLink(Static):
    DEFAULT_CSS = """
    CopyLink { width: auto; color: $accent; padding: 0 0 0 1; }
    CopyLink:hover { text-style: bold underline; background: $boost; }
    CopyLink.-hidden { display: none; }
    """

    def __init__(self) -> None:
        super().__init__("⧉ copy", classes="-hidden")

    def on_click(self) -> None:
        answer = self.ancestors_with_self
        for node in answer:
            if isinstance(node, Answer):
                self.post_message(ChatPane.CopyRequested(node.text, node.side))
                break


class Answer(Vertical):
    """One answer: a header with who answered and how fast, then the text as Markdown."""

    DEFAULT_CSS = """
    Answer { height: auto; margin: 0 0 1 0; }
    Answer > .answer-head { height: 1; }
    Answer .answer-who { width: 1fr; text-style: bold; color: $success; }
    Answer.-base .answer-who { color: $secondary; }
    Answer > Markdown { margin: 0; padding: 0 0 0 1; background: transparent; }
    Answer > Markdown.-hidden { display: none; }
    Answer > Markdown > MarkdownParagraph { margin: 0; }
    Answer > .answer-figures { height: auto; color: $text-muted; padding: 0 0 0 1; }
    Answer.-failed > .answer-figures { color: $error; }
    """

    def __init__(self, side: str, who: str) -> None:
        super().__init__(classes=f"-{side}")
        self.side = side
        self.who = who
        self.text = ""
        self._stream = None
        self.finished = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="answer-head"):
            yield Static(self.who, classes="answer-who")
            yield CopyLink()
        yield Markdown()
        yield ToolCallsView()
        yield Static("…", classes="answer-figures")

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    async def append(self, fragment: str) -> None:
        if not fragment or self.finished:
            return
        self.text += fragment
        if self._stream is None:
            self._stream = Markdown.get_stream(self.markdown)
        await self._stream.write(fragment)

    @property
    def tool_calls(self) -> list[dict]:
        return self.query_one(ToolCallsView).calls

    async def finish(self, figures: str, *, failed: bool = False, tool_calls: list[dict] | None = None,
                     content: str | None = None) -> None:
        """Close the answer; with ``tool_calls``, show them (and only ``content`` as text)."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.finished = True
        shown = content if tool_calls else self.text
        if self.markdown.source != shown:
            await self.markdown.update(shown or "")
        self.markdown.set_class(bool(tool_calls) and not shown, "-hidden")
        if tool_calls:
            self.query_one(ToolCallsView).show_calls(tool_calls)
        self.query_one(".answer-figures", Static).update(figures)
        self.set_class(failed, "-failed")
        self.query_one(CopyLink).set_class(not self.text, "-hidden")


class ChatPane(Vertical):
    DEFAULT_CSS = """
    ChatPane { width: 1fr; height: 1fr; border: round $primary-muted; border-title-color: $text-muted; }
    ChatPane:focus-within { border: round $primary; }
    ChatPane.-hidden { display: none; }
    ChatPane > VerticalScroll { height: 1fr; padding: 0 1; scrollbar-size-vertical: 1; }
    ChatPane .chat-user { margin: 0 0 1 0; color: $text; }
    ChatPane .chat-note { margin: 0 0 1 0; color: $text-muted; }
    ChatPane .chat-note.-error { color: $error; }
    """

    class CopyRequested(Message):
        def __init__(self, text: str, side: str) -> None:
            super().__init__()
            self.text = text
            self.side = side

    def __init__(self, side: str, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.side = side
        self.border_title = title
        self.history: list[dict] = []
        self.current: Answer | None = None
        self._pending_user: str | None = None

    def compose(self) -> ComposeResult:
        yield VerticalScroll(id=f"{self.id or self.side}-log", can_focus=True)

    @property
    def log(self) -> VerticalScroll:
        return self.query_one(VerticalScroll)

    def _follow(self) -> None:
        self.log.scroll_end(animate=False)

    async def add_note(self, text: str, *, error: bool = False) -> None:
        await self.log.mount(Static(Text(text), classes="chat-note -error" if error else "chat-note"))
        self._follow()

    async def ask(self, prompt: str, who: str) -> Answer:
        """Show the user's turn and an empty answer that tokens will stream into."""
        self._pending_user = prompt
        user = Static(Text.assemble(("you ", "bold"), prompt), classes="chat-user")
        self.current = Answer(self.side, who)
        await self.log.mount_all([user, self.current])
        self._follow()
        return self.current

    def messages_for(self, prompt: str) -> list[dict]:
        return [*self.history, {"role": "user", "content": prompt}]

    async def append(self, fragment: str) -> None:
        if self.current is not None:
            at_end = self.log.is_vertical_scroll_end
            await self.current.append(fragment)
            if at_end:
                self._follow()

    async def finish(self, result: dict | None, *, error: str | None = None) -> None:
        """Close the current answer. A failed answer leaves the history as it was."""
        answer = self.current
        if answer is None:
            return
        self.current = None
        if error is not None:
            await answer.finish(f"✗ {error}", failed=True)
            self._pending_user = None
            self._follow()
            return
        stop = result.get("stop")
        note = {"eos": "", "length": " · hit max tokens", "cancelled": " · stopped"}.get(stop, "")
        figures = f"{result.get('tokens', 0)} tok · {result.get('tokens_per_second', 0):.1f} tok/s{note}"
        if result.get("tool_calls"):
            n = len(result["tool_calls"])
            figures = f"{n} tool call{'s' if n > 1 else ''} · {figures}"
        if result.get("dropped_turns"):
            n = result["dropped_turns"]
            figures += f" · {n} oldest exchange{'s' if n > 1 else ''} left out to fit the context"
        await answer.finish(figures, tool_calls=result.get("tool_calls"), content=result.get("content"))
        if self._pending_user is not None:
            self.history += [{"role": "user", "content": self._pending_user},
                             {"role": "assistant", "content": answer.text}]
        self._pending_user = None
        self._follow()

    @property
    def busy(self) -> bool:
        return self.current is not None

    def last_answer(self) -> str | None:
        answers = [a for a in self.query(Answer) if a.text]
        return answers[-1].text if answers else None

    async def clear(self) -> None:
        self.history = []
        self.current = None
        self._pending_user = None
        await self.log.remove_children()
