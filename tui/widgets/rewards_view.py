"""The Data screen's Rewards tab: try GRPO's rewards on the base model's own answers before training.

GRPO only learns when its rewards give different scores to the answers the model samples for one
prompt. This view takes the rewards in the form's one-string form ("json_valid,
json_keys:category|priority", engine.rewards), and on Enter (or the screen's key) asks the engine to
sample a few answers to a few of the data's prompts with the base model and score them
(``try_rewards``, through the Data screen's warm helper). It shows the verdict in one sentence (do the
rewards separate good from bad answers?), each reward's mean, the share with full marks and the
spread, then each prompt with its sampled answers and their scores.

It only draws and posts ``RewardsView.Try``; the screen runs the request and calls ``loading``,
``progress``, ``failed`` or ``show``.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Static

from .grpo_panel import one_line, score_text

PROMPTS, GENERATIONS, COMPLETION = 4, 4, 64  # what one try samples: answers to prompts, tokens each
SEPARATES = 1e-6  # a spread at or below this: the rewards do not tell the answers apart


def builtin_line() -> str:
    """The built-in rewards in one line, with the option each takes."""
    from engine.rewards import BUILTIN, REQUIRED

    names = []
    for name, builtin in BUILTIN.items():
        main = builtin.main
        names.append(f"{name}:{main.upper()}" if main and builtin.options[main][1] is REQUIRED else name)
    return "built-ins: " + ", ".join(names) + " · name@2 weighs it twice"


class RewardsView(Vertical):
    DEFAULT_CSS = """
    RewardsView { height: 1fr; }
    RewardsView #rewards-bar { height: 1; }
    RewardsView #rewards-bar > Label { width: auto; padding-right: 1; color: $text-muted; }
    RewardsView #rewards-input { width: 1fr; }
    RewardsView #rewards-help { height: 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    RewardsView #rewards-status { height: auto; }
    RewardsView #rewards-status.-error { color: $error; text-style: bold; }
    RewardsView #rewards-status.-busy { color: $warning; }
    RewardsView #rewards-scroll { height: 1fr; }
    """

    class Try(Message):
        """Score the base model's answers with these rewards (the one-string form)."""

        def __init__(self, rewards: str) -> None:
            super().__init__()
            self.rewards = rewards

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.busy = False
        self.result: dict | None = None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="rewards-bar"):
            yield Label("Rewards")
            yield Input(placeholder="json_valid, json_keys:name|date", compact=True, id="rewards-input")
        yield Static(builtin_line(), id="rewards-help")
        yield Static(self.idle_text(), id="rewards-status")
        with VerticalScroll(id="rewards-scroll"):
            yield Static("", id="rewards-result")

    @staticmethod
    def idle_text() -> str:
        return (f"Enter (or r) samples {GENERATIONS} answers to {PROMPTS} prompts with the base model and scores them: "
                "before training, see whether the rewards tell good answers from bad.")

    # --- what the screen says ---------------------------------------------------------------------
    @property
    def rewards(self) -> str:
        return self.query_one("#rewards-input", Input).value.strip()

    def set_rewards(self, text: str) -> None:
        """Put rewards in the box (the project's, or the demo's) unless something is typed there."""
        box = self.query_one("#rewards-input", Input)
        if not box.value.strip():
            box.value = text

    def ask(self) -> None:
        """Post ``Try`` for the rewards in the box (once at a time)."""
        if self.busy:
            self.app.notify("Already sampling answers; wait for them.", severity="warning", title="Rewards")
            return
        if not self.rewards:
            self.failed("No rewards to try: type some in the Rewards box, such as json_valid.")
            self.query_one("#rewards-input", Input).focus()
            return
        self.post_message(self.Try(self.rewards))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.ask()

    def _status(self, text: str, kind: str | None) -> None:
        status = self.query_one("#rewards-status", Static)
        status.update(Text(text))
        status.set_class(kind == "error", "-error")
        status.set_class(kind == "busy", "-busy")

    def loading(self, model: str) -> None:
        self.busy, self.error = True, None
        self._status(f"Sampling {GENERATIONS} answers to each of {PROMPTS} prompts with {model} … (loading the model "
                     "first can take a while on a CPU)", "busy")

    def progress(self, text: str) -> None:
        if self.busy:
            self._status(text, "busy")

    def failed(self, sentence: str) -> None:
        self.busy, self.error = False, sentence
        self._status(f"✗ {sentence}", "error")

    def show(self, result: dict) -> None:
        self.busy, self.error, self.result = False, None, result
        summary = result.get("summary") or {}
        spread = summary.get("spread") or 0.0
        verdict = result.get("verdict") or ""
        mark = "✔" if spread > SEPARATES else "✗"
        self._status(f"{mark} {verdict}", None if spread > SEPARATES else "error")
        self.query_one("#rewards-result", Static).update(self.result_text(result))
        self.query_one("#rewards-scroll", VerticalScroll).scroll_home(animate=False)

    # --- drawing ----------------------------------------------------------------------------------
    @staticmethod
    def result_text(result: dict) -> Text:
        names = [str(n) for n in result.get("rewards") or []]
        summary = result.get("summary") or {}
        means = summary.get("mean") or {}
        weights = result.get("weights") or {}
        text = Text()
        text.append("mean ", style="dim")
        text.append(f"total {score_text(means.get('total'))}", style="bold")
        for name in names:
            weight = weights.get(name)
            weighed = f"×{weight:g}" if isinstance(weight, (int, float)) and weight != 1 else ""
            text.append(f" · {name}{weighed} {score_text(means.get(name))}")
        full = summary.get("full_marks")
        text.append(f" · full marks {full:.0%}" if isinstance(full, (int, float)) else "")
        text.append(f" · spread {score_text(summary.get('spread'))}")
        text.append("\n")
        text.append("score = " + " + ".join(names) + "  (each answer: its total, then each reward's score)",
                    style="dim")
        for row in result.get("rows") or []:
            text.append("\n")
            text.append("▸ " + one_line(row.get("prompt") or ""), style="bold")
            if row.get("reference"):
                text.append("\n  reference: " + one_line(row["reference"]), style="dim italic")
            samples = row.get("samples") or []
            totals = [s.get("reward") for s in samples if isinstance(s.get("reward"), (int, float))]
            same = len(set(totals)) <= 1 and len(totals) > 1
            for sample in samples:
                scores = sample.get("scores") if isinstance(sample.get("scores"), dict) else {}
                parts = " ".join(score_text(scores.get(n)) for n in names)
                text.append("\n")
                text.append(f"  {score_text(sample.get('reward')):>5}", style="bold")
                text.append(f" ({parts}) " if parts else " ", style="dim")
                text.append(one_line(sample.get("completion") or "") or "(empty answer)")
            if same:
                text.append("\n  every answer to this prompt scores the same: nothing to learn from it", style="dim")
        return text
