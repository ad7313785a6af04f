"""Data: open a training file, see its format and every bad row, and exactly what each example trains.

What runs where (the TUI never imports transformers):
  - this process, in threads: the lazy reader (engine.data) opens the file, shows the first rows at
    once, then indexes the rest in the background; the table asks for the rows on screen only.
  - child processes: `tunedeck data inspect --progress` (every row checked: format, problems),
    `tunedeck data stats --progress` (token lengths with the model's tokenizer, special-token text),
    and a warm `tunedeck data serve` helper that renders the selected row as tokens with the trained
    mask (with tools: the calls trained, the results not).

What the engine knows is shown in words: the layout ("OpenAI messages with tools"), a file that is
not supervised fine-tuning data (preference, KTO, prompts only, labelled, multimodal) as the
engine's one sentence in a banner instead of a wall of bad rows, special-token text as a warning
on its row and in Problems. A project's data may be a list of sources (a run config's ``data:``):
the mix bar shows each source and its share, and the rest of the screen shows one source at a time.

For GRPO (the project's objective grpo) any layout with a question is read as prompts (the row's
answer, if any, is its reference, shown untrained); a file of prompts without answers is recognised as
GRPO's data. The Rewards tab (key r) tries the rewards before any training: the base model samples a
few answers to a few of these prompts and the rewards score them (``try_rewards`` on a second warm
helper, so rendering rows never waits behind the sampling), with a one-sentence verdict.
"""

from __future__ import annotations

import json
import threading
import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, OptionList, ProgressBar, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option
from textual.markup import escape as _escape
from textual.worker import get_current_worker

from engine.data import dataset as engine_data
from engine.data import formats
from engine.data.dataset import DataSource, RefusedData, check, detect_file_format
from engine.errors import TunedeckError
from engine.ipc import ChildJobs, EngineProcessError

from ..data_helper import LatestOnly, RenderHelper, demo_rewards
from ..widgets.conversation_view import ConversationView
from ..widgets.length_histogram import LengthHistogram
from ..widgets.mix_bar import MixBar, short_name
from ..widgets.path_input import PathInput
from ..widgets.rewards_view import COMPLETION, GENERATIONS, PROMPTS, RewardsView
from ..widgets.row_table import RowLine, RowTable
from ..widgets.token_view import TokenView
from ..project import Project
from .base import AreaScreen, JobFailed, in_thread

DEFAULT_MAX_LENGTH = 1024
AUTO_STATS_BYTES = 50 << 20  # bigger files compute token statistics when asked (s)
PREVIEW = 300
WIDE = 120  # columns from which the table and the details sit side by side
LAYOUTS = {
    "messages": "messages", "sharegpt": "ShareGPT conversations", "pairs": "user/assistant pairs",
    "alpaca": "Alpaca instructions", "prompt_completion": "prompt/completion", "text": "plain text",
}


def _as_json(record) -> str:
    try:
        return json.dumps(record, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(record)


def layout_label(fmt: str | None, *, tools: bool = False, calls: bool = False) -> str | None:
    """The layout in words: "OpenAI messages with tools", "ShareGPT with function calls", or what a
    refused kind is ("preference pairs (prompt / chosen / rejected)")."""
    if fmt is None:
        return None
    if fmt in formats.REFUSED:
        return formats.DESCRIPTIONS[fmt]
    if fmt == "messages" and (tools or calls):
        return "OpenAI messages with tools"
    if fmt == "sharegpt" and (tools or calls):
        return "ShareGPT with function calls" if calls else "ShareGPT with tools"
    label = LAYOUTS.get(fmt, fmt)
    return f"{label} with tools" if tools or calls else label


def _example_label(fmt: str | None, example: dict | None) -> str | None:
    if example is None or "messages" not in example:
        return layout_label(fmt)
    calls = any(m.get("tool_calls") for m in example["messages"])
    return layout_label(fmt, tools=formats.uses_tools(example), calls=calls)


def _rows(n: int, complete: bool = True) -> str:
    return f"{n:,}{'' if complete else '+'} row{'' if n == 1 and complete else 's'}"


def _description(kind: str) -> str:
    return formats.DESCRIPTIONS.get(kind, kind)


def _model_name(ref: str | None) -> str:
    """A model as people read it: a local folder by its name, a hub id or demo as written."""
    return short_name(ref) if ref and ref.startswith(("/", "~", ".")) else (ref or "")


def _fate(mode: str) -> str:
    return ("stays literal text (special_token_text: token makes it the token)" if mode == "literal"
            else "becomes the special token")


def _lengths(P: dict) -> str:
    return f"min {P['min']}, median {P['p50']}, p90 {P['p90']}, max {P['max']}"


def _preference_lines(stats: dict, pref: dict, final: bool) -> list[str]:
    """Token statistics of preference data: the pairs (or the good/bad balance of labelled answers),
    then the token lengths of the prompt and of each answer against their limits."""
    so_far = "" if final else " so far"
    L, max_length = stats["length"], stats["max_length"]
    lines = []
    if pref.get("pairs"):
        n = pref["pairs"]
        lines.append(f"[b]{n:,}[/b] pair{'s' if n != 1 else ''}{so_far} (prompt / chosen / rejected) · "
                     f"{stats.get('sequences', 2 * n):,} sequences of prompt + one answer: {_lengths(L)} tokens")
    good, bad = pref["labelled"]["good"], pref["labelled"]["bad"]
    if good or bad:
        share = good / (good + bad)
        lines.append(f"[b]{good + bad:,}[/b] labelled answers{so_far}: balance [$success]{good:,} good[/] / "
                     f"[$error]{bad:,} bad[/] ({share:.0%} good) · prompt + answer: {_lengths(L)} tokens")
        if final and not (good and bad):
            lines.append(f"[$warning]! every answer is labelled {'good' if good else 'bad'}: KTO learns from both "
                         "good and bad answers[/]")
    limits = {"prompt": pref.get("max_prompt_length")}
    for part in ("chosen", "rejected", "completion"):
        limits[part] = pref.get("max_completion_length")
    for part in ("prompt", "chosen", "rejected", "completion"):
        if part in pref:
            name = "answer" if part == "completion" else part
            limit = (f"max_{'prompt' if part == 'prompt' else 'completion'}_length {limits[part]}" if limits[part]
                     else f"max_length {max_length}")
            lines.append(f"  {name + ' tokens:':17s} {_lengths(pref[part])} (limit: {limit})")
    lines.append(f"[b]{stats['trainable_tokens']:,}[/b] trained tokens of {stats['tokens']:,} (max length {max_length})")
    return lines


class DataScreen(AreaScreen):
    AREA = "data"
    CSS_PATH = "../data.tcss"
    BINDINGS = [
        Binding("f", "focus_path", "File", id="data-file"),
        Binding("m", "focus_max_length", "Max len", id="data-max-len"),
        Binding("s", "stats", "Token stats", id="data-stats"),
        Binding("n", "next_problem", "Next bad row", id="data-next-bad"),
        Binding("left_square_bracket", "source(-1)", "Prev source", id="data-prev-source"),
        Binding("right_square_bracket", "source(1)", "Next source", id="data-next-source"),
        Binding("c", "tab('conversation')", "Conversation", show=False),
        Binding("t", "tab('tokens')", "Tokens", show=False),
        Binding("l", "tab('lengths')", "Lengths", show=False),
        Binding("p", "tab('problems')", "Problems", show=False),
        Binding("r", "try_rewards", "Try rewards", id="data-try-rewards"),
        Binding("escape", "focus_rows", "Rows", show=False),
    ]

    # --- what the background jobs send back (tagged with the generation of the file they read) ---
    class Opened(Message, bubble=False):
        """``refusal``: (kind, the engine's sentence) when the file is not fine-tuning data;
        ``tools``/``calls``: its first rows declare tools / call them."""

        def __init__(self, gen: int, ref: str, source, file_format: str | None,
                     refusal: tuple[str, str] | None = None, tools: bool = False, calls: bool = False) -> None:
            super().__init__()
            self.gen, self.ref, self.source, self.file_format = gen, ref, source, file_format
            self.refusal, self.tools, self.calls = refusal, tools, calls

    class OpenFailed(Message, bubble=False):
        def __init__(self, gen: int, ref: str, text: str) -> None:
            super().__init__()
            self.gen, self.ref, self.text = gen, ref, text

    class Scanned(Message, bubble=False):
        def __init__(self, gen: int, count: int, fraction: float, done: bool) -> None:
            super().__init__()
            self.gen, self.count, self.fraction, self.done = gen, count, fraction, done

    class RowsFetched(Message, bubble=False):
        def __init__(self, gen: int, lines: list[RowLine]) -> None:
            super().__init__()
            self.gen, self.lines = gen, lines

    class RowChecked(Message, bubble=False):
        """The row for the conversation view; ``note`` instead when it could not be read."""

        def __init__(self, gen: int, where: str = "", checked=None, raw_text: str | None = None,
                     note: str | None = None) -> None:
            super().__init__()
            self.gen, self.where, self.checked, self.raw_text, self.note = gen, where, checked, raw_text, note

    class TokensRendered(Message, bubble=False):
        """The token view of row ``index``: ``rendered``, or a ``note`` saying why not (yet)."""

        def __init__(self, gen: int, index: int, rendered: dict | None, note: str | None) -> None:
            super().__init__()
            self.gen, self.index, self.rendered, self.note = gen, index, rendered, note

    class Progress(Message, bubble=False):
        def __init__(self, task: str, label: str | None, fraction: float | None = None) -> None:
            super().__init__()
            self.task, self.label, self.fraction = task, label, fraction

    class Inspected(Message, bubble=False):
        def __init__(self, gen: int, report: dict) -> None:
            super().__init__()
            self.gen, self.report = gen, report

    class InspectFailed(Message, bubble=False):
        def __init__(self, gen: int, text: str) -> None:
            super().__init__()
            self.gen, self.text = gen, text

    class MixInspected(Message, bubble=False):
        """The whole mix checked (``report``: ``data inspect A B`` with each source), or why not."""

        def __init__(self, gen: int, report: dict | None, error: dict | None = None) -> None:
            super().__init__()
            self.gen, self.report, self.error = gen, report, error

    class StatsCounted(Message, bubble=False):
        def __init__(self, gen: int, stats: dict, final: bool) -> None:
            super().__init__()
            self.gen, self.stats, self.final = gen, stats, final

    class RewardsDone(Message, bubble=False):
        """The try_rewards answer (``result``), a progress line (``progress``) or its failure (``error``)."""

        def __init__(self, gen: int, *, result: dict | None = None, progress: str | None = None,
                     error: str | None = None) -> None:
            super().__init__()
            self.gen, self.result, self.progress, self.error = gen, result, progress, error

    class StatsFailed(Message, bubble=False):
        def __init__(self, gen: int, text: str) -> None:
            super().__init__()
            self.gen, self.text = gen, text

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.source = None
        self.file_format: str | None = None
        self.ref: str | None = None  # the source shown (one of a mix)
        self.data = None  # what was opened: the project's data, a reference or a list of sources
        self.sources: list[DataSource] = []
        self.current = 0  # which source is shown
        self.mix: list[dict] | None = None  # per source of a mix: its report and its part of the mix
        self.mix_error: dict | None = None
        self.refusal: tuple[str, str] | None = None  # (kind, sentence) when the file is refused
        self.uses_tools = self.has_calls = False
        self.row_warnings: dict[int, list[str]] = {}  # line/record -> warnings (special-token text)
        self._shown_row: DataScreen.RowChecked | None = None
        self._mix_gen = 0
        self.objective = "sft"
        self.model: str | None = None
        self.report: dict | None = None
        self.stats: dict | None = None
        self.problems: list[dict] = []
        self.max_length = DEFAULT_MAX_LENGTH
        self._gen = 0
        self._scan_stop = threading.Event()
        self._progress: dict[str, tuple[str, float | None]] = {}
        self._token_cache: dict[tuple, dict] = {}
        self._helper: RenderHelper | None = None
        self._rewards_helper: RenderHelper | None = None  # its own process: sampling takes seconds
        self._rewards_gen = 0
        self._jobs = ChildJobs()
        self._renderer = LatestOnly(self._render_tokens, name="data-render")
        self._timings: dict[str, float] = {}

    # --- layout -------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        with Horizontal(id="data-bar"):
            yield Label("File", classes="data-label")
            yield PathInput(placeholder="a .jsonl/.json/.csv/.parquet file, a saved dataset folder, or demo",
                            id="data-path", compact=True)
            yield Label(" max length", classes="data-label")
            yield Input(str(self.max_length), id="data-max-length", type="integer", compact=True)
        with Horizontal(id="data-status", classes="-idle"):
            yield Static("", id="data-summary")
            yield Label("", id="data-progress-label")
            yield ProgressBar(total=1.0, id="data-progress", show_eta=False)
        yield MixBar(id="data-mix")
        yield Static("", id="data-refusal", classes="-hidden")
        with Container(id="data-main"):
            with Vertical(id="data-rows-pane"):
                yield Static("", id="data-rows-header")
                yield RowTable(id="data-rows")
            with TabbedContent(id="data-tabs"):
                with TabPane("Conversation", id="conversation"):
                    with VerticalScroll(classes="data-scroll"):
                        yield ConversationView(id="data-conversation")
                with TabPane("Tokens", id="tokens"):
                    with VerticalScroll(classes="data-scroll"):
                        yield TokenView(id="data-tokens")
                with TabPane("Lengths", id="lengths"):
                    with Vertical(classes="data-scroll"):
                        yield Static("", id="data-stats-text")
                        yield LengthHistogram(id="data-histogram")
                with TabPane("Problems", id="problems"):
                    yield OptionList(id="data-problems")
                with TabPane("Rewards", id="rewards"):
                    yield RewardsView(id="data-rewards")

    def on_mount(self) -> None:
        self.max_length = int(self.project.settings.get("max_length") or DEFAULT_MAX_LENGTH)
        self.query_one("#data-max-length", Input).value = str(self.max_length)
        self._set_wide(self.app.size.width)
        self.open_data(self.project.data)
        self._suggest_rewards()
        self.query_one(RowTable).focus()

    def on_screen_resume(self) -> None:
        if self.project.data != self.data:
            self.open_data(self.project.data)
        elif self.project.model != self.model:
            self._model_changed()

    def project_changed(self, old: Project, new: Project) -> None:
        if self.is_current:  # otherwise when shown again: no file scan nor tokenizer behind another area
            self.on_screen_resume()

    def on_unmount(self) -> None:
        self._scan_stop.set()
        self._jobs.close()
        self._renderer.stop()
        for name in ("_helper", "_rewards_helper"):
            helper = getattr(self, name)
            if helper is not None:
                setattr(self, name, None)
                threading.Thread(target=helper.close, daemon=True).start()

    def on_resize(self, event) -> None:
        self._set_wide(event.size.width)

    def _set_wide(self, width: int) -> None:
        self.set_class(width >= WIDE, "-wide")
        self._fit_rows()

    def _fit_rows(self) -> None:
        """A file of a few rows lends the details the lines its table does not need (narrow layout)."""
        count = self.query_one(RowTable).row_count
        pane = self.query_one("#data-rows-pane")
        pane.styles.max_height = None if self.has_class("-wide") or not count or count > 40 else count + 1

    # --- opening ------------------------------------------------------------------------------
    @property
    def is_mix(self) -> bool:
        return len(self.sources) > 1

    def open_data(self, data) -> None:
        """Open the project's data: one reference, or a list of sources (each shown in turn)."""
        if isinstance(data, (list, tuple)):
            data = list(data)
            try:
                sources = engine_data.data_sources(data)
            except (KeyError, TypeError, AttributeError):
                sources = []
            sources = sources or [DataSource("")]
        else:
            data = (data or "").strip()
            sources = [DataSource(data)]
        self.data, self.sources = data, sources
        self._mix_gen += 1
        self.mix = self.mix_error = None
        self._jobs.stop("mix")
        if self.is_mix:
            self._set_progress("inspect", "checking the mix", 0.0)
            in_thread(self, self._inspect_mix, [s.ref for s in sources], self._mix_gen, title="Data")
        self.open_source(0)

    def open_source(self, index: int) -> None:
        """Show source ``index`` of the data (the only one, unless it is a mix)."""
        self.current = index
        ref = self.sources[index].ref
        self.objective = str(self.project.settings.get("objective") or "sft")
        self.refresh_bindings()
        self._gen += 1
        self._scan_stop.set()
        self._scan_stop = threading.Event()
        self._jobs.stop("inspect")
        self._jobs.stop("stats")
        self._timings = {"open": time.perf_counter()}
        self.source, self.file_format, self.report, self.stats, self.problems = None, None, None, None, []
        self.refusal, self.uses_tools, self.has_calls, self.row_warnings = None, False, False, {}
        self._token_cache.clear()
        mix_running = self.is_mix and self.mix is None and self.mix_error is None
        for task in list(self._progress):
            if not (mix_running and task == "inspect"):
                self._progress.pop(task)
        self.query_one("#data-path", Input).value = ref
        table = self.query_one(RowTable)
        table.reset()
        self.query_one("#data-rows-header", Static).update("")
        self.query_one("#data-summary", Static).update(f"Opening {_escape(ref)} …")
        self._show_refusal()
        self._show_mix()
        self.query_one(ConversationView).show_message("")
        self.query_one(TokenView).show_message("")
        self.query_one("#data-stats-text", Static).update("")
        self.query_one(LengthHistogram).set_data(None, self.max_length)
        self._set_problems([])
        self._set_progress("open", "opening", None)
        in_thread(self, self._open, ref, self._gen, self._scan_stop, title="Data")

    # --- what the rows are checked for -----------------------------------------------------------
    # Supervised fine-tuning unless the project's settings name another objective (a run config's
    # ``objective:``); then the engine checks rows and refuses files for that one.
    def _check(self, raw, file_format):
        return check(raw, file_format) if self.objective == "sft" else check(raw, file_format, self.objective)

    def _objective_args(self) -> list[str]:
        """The engine's options for a DPO/KTO project: the objective, and the prompt/answer limits."""
        if self.objective == "sft":
            return []
        args = ["--objective", self.objective]
        for key, value in self._preference_limits().items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        return args

    def _preference_limits(self) -> dict:
        """max_prompt_length / max_completion_length from the project's settings (DPO/KTO only)."""
        if self.objective not in ("dpo", "kto"):  # GRPO's max_completion_length is what it samples, not a cut
            return {}
        limits = {}
        for key in ("max_prompt_length", "max_completion_length"):
            try:
                value = int(self.project.settings.get(key) or 0)
            except (TypeError, ValueError):
                value = 0
            if value > 0:
                limits[key] = value
        return limits

    def _refuse(self, source, file_format) -> None:
        """RefusedData when the file as a whole is not data for the objective (the engine's sentence)."""
        if self.objective != "sft":
            engine_data.refuse(source, file_format, self.objective)
        elif file_format in formats.REFUSED:
            record = next(r.record for r in source.head(engine_data.DETECT_ROWS)
                          if r.record is not None and formats.detect(r.record) == file_format)
            raise RefusedData(f"{source.display} {formats.refusal(file_format, record)}.", file_format, source.display)

    # Long jobs run in their own threads, not the shared worker pool, so quick jobs (the rows on
    # screen) never wait behind them. Results come back as messages, tagged with the generation.
    def _open(self, ref: str, gen: int, stop: threading.Event) -> None:
        if not engine_data.is_local(ref):
            self.post_message(self.OpenFailed(
                gen, ref,
                f"{ref} looks like a Hugging Face Hub dataset; the app opens local data: download it where there is "
                "network and save it with save_to_disk (or export JSON Lines), then open that.",
            ))
            return
        try:
            source = engine_data.open_source(ref)
            file_format = detect_file_format(source)  # reads the first rows only
        except TunedeckError as exc:
            self.post_message(self.OpenFailed(gen, ref, str(exc)))
            return
        refusal, tools, calls = None, False, False
        try:
            self._refuse(source, file_format)  # the file as a whole, from its first rows
        except RefusedData as exc:
            refusal = (exc.kind, str(exc))
        except TunedeckError:
            pass
        if refusal is None:
            for raw in source.head(engine_data.DETECT_ROWS):
                example = self._check(raw, file_format).example
                if example and "messages" in example:
                    tools = tools or formats.uses_tools(example)
                    calls = calls or any(m.get("tool_calls") for m in example["messages"])
        self.post_message(self.Opened(gen, ref, source, file_format, refusal, tools, calls))
        last = [0.0]

        def progress(done: int, total: int) -> None:
            time.sleep(0.002)  # let the UI thread have the GIL between chunks
            now = time.perf_counter()
            if now - last[0] > 0.4 or done >= total:
                last[0] = now
                self.post_message(self.Scanned(gen, len(source), done / total if total else 1.0, False))

        try:
            source.scan(progress=progress, stop=stop)
        except (TunedeckError, OSError, ValueError) as exc:
            self.post_message(JobFailed(f"Reading {ref} stopped: {exc}"))
        if stop.is_set():
            source.close()  # another file was opened
        else:
            self.post_message(self.Scanned(gen, len(source), 1.0, True))

    def on_data_screen_open_failed(self, event: OpenFailed) -> None:
        gen, ref, message = event.gen, event.ref, event.text
        if gen != self._gen:
            return
        self.ref = ref
        if self.is_mix:
            self._show_mix()
        self._set_progress("open", None)
        self.query_one("#data-summary", Static).update(f"[$error]✗[/] {_escape(message)}")
        self.query_one(ConversationView).show_message(
            "Type a path above (→ completes it, Enter opens it), or 'demo' for the built-in data."
        )
        self.notify(message, severity="error", title="Cannot open the data")

    def on_data_screen_opened(self, event: Opened) -> None:
        gen, ref, source, file_format = event.gen, event.ref, event.source, event.file_format
        if gen != self._gen:
            source.close()
            return
        self.ref, self.source, self.file_format = ref, source, file_format
        self.refusal, self.uses_tools, self.has_calls = event.refusal, event.tools, event.calls
        self.model = self.project.model
        if not isinstance(self.data, list):  # a mix stays the project's data while its sources are shown
            self.set_project(data=ref)
        unit = "line" if source.unit == "line" else "rec"
        what = "the row as it is" if self.refusal else "first user turn, or the row's problem"
        self.query_one("#data-rows-header", Static).update(f"{unit:>5}   {what}")
        table = self.query_one(RowTable)
        table.set_row_count(len(source))
        self._fit_rows()
        self._timings["first_rows_known"] = time.perf_counter()
        self._set_progress("open", None)
        self._set_progress("scan", "indexing", 0.0)
        if self.refusal is not None:
            self._refused()
            return
        self._summary()
        if self.is_mix and self.mix is not None:
            self._apply_report(self.mix[self.current])
        elif not self.is_mix or self.mix_error is not None:  # a mix's own check covers its sources
            in_thread(self, self._inspect, ref, gen, title="Data")
        size = getattr(source, "size", 0) or 0
        if size < AUTO_STATS_BYTES:
            self.action_stats()
        else:
            self.query_one("#data-stats-text", Static).update(
                f"This file is {size / 1e6:.0f} MB: press [b]s[/b] to count tokens with the model's tokenizer "
                "(it runs in the background, with progress)."
            )

    def on_data_screen_scanned(self, event: Scanned) -> None:
        gen, count, fraction, done = event.gen, event.count, event.fraction, event.done
        if gen != self._gen:
            return
        self.query_one(RowTable).set_row_count(count)
        self._fit_rows()
        self._set_progress("scan", None if done else "indexing", fraction)
        if done:
            self._timings["indexed"] = time.perf_counter()
        self._summary()

    def _refused(self) -> None:
        """The file is not supervised fine-tuning data: the engine's sentence, plainly; the rows are
        still listed (as they are) so people can see what the file holds."""
        kind, sentence = self.refusal
        what = _description(kind)
        self.report = {"error": sentence, "kind": kind, "format": kind, "refused": True, "format_description": what}
        self._show_refusal()
        self._summary()
        self._set_problems([])
        self.query_one(TokenView).show_message(f"Nothing in this file is trained: it holds {what}, {self._not_for()}.")
        self.query_one("#data-stats-text", Static).update(
            f"No token statistics: the file holds {_escape(what)}, {self._not_for()}.")
        if self.is_mix:
            self._show_mix()

    def _not_for(self) -> str:
        if self.objective == "sft":
            return "not supervised fine-tuning data"
        return f"not data for {self.objective.upper()}"

    def _show_refusal(self) -> None:
        banner = self.query_one("#data-refusal", Static)
        if self.refusal is None:
            banner.add_class("-hidden")
            return
        kind, sentence = self.refusal
        banner.update(f"[b]✗ {self._not_for()[0].upper()}{self._not_for()[1:]}: {_escape(_description(kind))}[/b]\n"
                      f"{_escape(sentence)}")
        banner.remove_class("-hidden")

    # --- the sources of a mix -------------------------------------------------------------------
    def _inspect_mix(self, refs: list[str], gen: int) -> None:
        try:
            for event in self._jobs.stream("mix", ["data", "inspect", *refs, "--progress"], ok_codes=(0, 1)):
                if gen != self._mix_gen:
                    return
                if event.get("event") == "progress":
                    self.post_message(self.Progress("inspect", "checking the mix", event["fraction"]))
                elif event.get("event") == "report":
                    self.post_message(self.MixInspected(gen, event))
                    return
                elif event.get("event") == "error":
                    self.post_message(self.MixInspected(gen, None, event))
                    return
        except EngineProcessError as exc:
            self.post_message(self.MixInspected(gen, None, {"error": str(exc)}))

    def on_data_screen_mix_inspected(self, event: MixInspected) -> None:
        if event.gen != self._mix_gen:
            return
        self._set_progress("inspect", None)
        if event.report is not None:
            reports = event.report.get("sources") or []
            parts = engine_data.mix_summary(self.sources, [r.get("valid_rows", 0) for r in reports])
            self.mix = [{**r, **part} for r, part in zip(reports, parts)]
            if self.source is not None and self.report is None and self.refusal is None:
                self._apply_report(self.mix[self.current])
        else:
            self.mix_error = event.error
            if self.source is not None and self.report is None and self.refusal is None:
                in_thread(self, self._inspect, self.ref, self._gen, title="Data")  # this source on its own
        self._show_mix()

    def _show_mix(self) -> None:
        bar = self.query_one(MixBar)
        if not self.is_mix:
            bar.show_mix([], 0)
            return
        entries = []
        failed = (self.mix_error or {}).get("file")
        for k, s in enumerate(self.sources):
            entry = {"ref": s.ref, "weight": s.weight, "fraction": s.fraction}
            if self.mix is not None:
                entry.update(self.mix[k])
            if self.objective == "sft" and entry.get("format") in formats.REFUSED:
                entry["refused"] = entry["format"]
            elif failed and failed in (s.ref, short_name(s.ref)) and self.mix_error.get("kind"):
                entry["refused"] = self.mix_error["kind"]
            elif k == self.current and self.refusal is not None:
                entry["refused"] = self.refusal[0]
            entries.append(entry)
        note = None
        if self.mix_error is not None:
            note = "The mix cannot be trained: " + self.mix_error.get("error", "")
        bar.show_mix(entries, self.current, note)

    def action_source(self, step: int) -> None:
        if self.is_mix:
            self.open_source((self.current + step) % len(self.sources))
            self.query_one(RowTable).focus()

    @on(MixBar.Chosen)
    def _source_chosen(self, message: MixBar.Chosen) -> None:
        if message.index != self.current:
            self.open_source(message.index)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "source":
            return self.is_mix
        if action == "try_rewards":  # rewards matter to GRPO only: at 80 columns the key pushed Help and Quit out
            return self.objective == "grpo"
        return True

    # --- rows ---------------------------------------------------------------------------------
    @on(RowTable.NeedRows)
    def _need_rows(self, message: RowTable.NeedRows) -> None:
        if self.source is not None:
            self._fetch_rows(self._gen, self.source, self.file_format, message.start, message.count)

    @work(thread=True, exclusive=True, group="data-rows", exit_on_error=False)
    def _fetch_rows(self, gen: int, source, file_format, start: int, count: int) -> None:
        try:
            raws = source.rows(start, count)
        except (OSError, ValueError) as exc:
            self.post_message(JobFailed(f"Cannot read {source.display}: {exc}"))
            return
        lines = []
        refused = self.refusal[0] if self.refusal is not None else None
        for raw in raws:
            checked = self._check(raw, file_format)
            if checked.problem is None:
                lines.append(RowLine(raw.index, raw.where, True, formats.preview(checked.example, width=PREVIEW)))
            elif refused and checked.format == refused:  # the banner says why: show what the row holds
                lines.append(RowLine(raw.index, raw.where, False, formats.preview(None, raw.record, width=PREVIEW)))
            else:
                lines.append(RowLine(raw.index, raw.where, False, checked.problem))
        self.post_message(self.RowsFetched(gen, lines))

    def on_data_screen_rows_fetched(self, event: RowsFetched) -> None:
        gen, lines = event.gen, event.lines
        if gen != self._gen:
            return
        self.query_one(RowTable).put_rows(lines)
        if "first_rows_shown" not in self._timings:
            self._timings["first_rows_shown"] = time.perf_counter()

    @on(RowTable.Highlighted)
    def _highlighted(self, message: RowTable.Highlighted) -> None:
        if self.source is not None and message.index < len(self.source):
            self._show_row(self._gen, self.source, self.file_format, message.index, self.max_length, self.model)

    @work(thread=True, exclusive=True, group="data-row", exit_on_error=False)
    def _show_row(self, gen: int, source, file_format, index: int, max_length: int, model: str) -> None:
        try:
            raw = source.get(index)
        except (IndexError, OSError, ValueError) as exc:
            self.post_message(self.RowChecked(gen, note=str(exc)))
            return
        if get_current_worker().is_cancelled:
            return
        checked = self._check(raw, file_format)
        where = f"{'line' if source.unit == 'line' else 'record'} {raw.where} · row {index + 1}"
        self.post_message(self.RowChecked(gen, where, checked, raw.text))
        if checked.problem is not None:
            if self.refusal is not None and checked.format == self.refusal[0]:
                note = f"Nothing in this file is trained: it holds {_description(checked.format)}, {self._not_for()}."
            else:
                note = "This row has a problem, so nothing in it is trained: " + checked.problem
            self.post_message(self.TokensRendered(gen, index, None, note))
            return
        rendered = self._token_cache.get((index, max_length, model, tuple(self._preference_limits().items())))
        if rendered is not None:
            self.post_message(self.TokensRendered(gen, index, rendered, None))
        else:
            self._renderer.submit((gen, index, checked.example, max_length, model))

    def _render_tokens(self, item) -> None:
        """On the render thread: the token view of one row through the warm helper."""
        gen, index, example, max_length, model = item
        if gen != self._gen:
            return
        if self._helper is None or self._helper.model != model:
            self.post_message(self.TokensRendered(gen, index, None, f"Loading the tokenizer of {model} …"))
        try:
            limits = self._preference_limits()
            rendered = self._get_helper(model).request({"op": "render", "example": example, "max_length": max_length,
                                                        **limits})
        except EngineProcessError as exc:
            self.post_message(self.TokensRendered(gen, index, None, f"Cannot render with {model}: {exc}"))
            return
        if len(self._token_cache) > 500:
            self._token_cache.clear()
        self._token_cache[(index, max_length, model, tuple(limits.items()))] = rendered
        self.post_message(self.TokensRendered(gen, index, rendered, None))

    def _get_helper(self, model: str) -> RenderHelper:
        if self._jobs.closed:
            raise EngineProcessError("the Data screen is closing")
        helper = self._helper
        if helper is None or helper.model != model:
            if helper is not None:
                helper.close()
            helper = self._helper = RenderHelper(model)
        return helper

    def on_data_screen_row_checked(self, event: RowChecked) -> None:
        if event.note is not None:
            self.query_one(ConversationView).show_message(event.note)
            return
        gen, where, checked, raw_text = event.gen, event.where, event.checked, event.raw_text
        if gen != self._gen:
            return
        self._shown_row = event
        raw = raw_text if raw_text is not None else (_as_json(checked.raw.record) if checked.raw.record is not None else None)
        fmt = checked.format or self.file_format
        refused = None
        if self.refusal is not None and fmt == self.refusal[0]:
            refused = f"{_description(fmt)[0].upper()}{_description(fmt)[1:]}"
        example = checked.example
        if example is not None and formats.is_prompt(example):  # GRPO: the prompt, its reference untrained
            example = formats.as_messages(example)
        self.query_one(ConversationView).show(
            where=where, fmt=_example_label(fmt, example), example=example, problem=checked.problem,
            raw=raw, warnings=self.row_warnings.get(checked.raw.where, []), refused=refused,
        )

    def on_data_screen_tokens_rendered(self, event: TokensRendered) -> None:
        gen, index, rendered, message = event.gen, event.index, event.rendered, event.note
        if gen != self._gen or index != self.query_one(RowTable).cursor:
            return
        view = self.query_one(TokenView)
        if rendered is None:
            view.show_message(message or "")
        else:
            view.show(rendered)
            if "first_render" not in self._timings:
                self._timings["first_render"] = time.perf_counter()

    # --- checking every row (child process) -----------------------------------------------------
    def _inspect(self, ref: str, gen: int) -> None:
        self.post_message(self.Progress("inspect", "checking rows", 0.0))
        try:
            args = ["data", "inspect", ref, "--progress", *self._objective_args()]
            for event in self._jobs.stream("inspect", args, ok_codes=(0, 1)):
                if gen != self._gen:
                    return
                if event.get("event") == "progress":
                    self.post_message(self.Progress("inspect", "checking rows", event["fraction"]))
                elif event.get("event") == "report":
                    self.post_message(self.Inspected(gen, event))
                elif event.get("event") == "error":  # the file as a whole is unusable: its one sentence
                    self.post_message(self.InspectFailed(gen, event["error"]))
                    return
        except EngineProcessError as exc:
            self.post_message(self.InspectFailed(gen, str(exc)))

    def on_data_screen_inspected(self, event: Inspected) -> None:
        gen, report = event.gen, event.report
        if gen != self._gen:
            return
        self._set_progress("inspect", None)
        self._apply_report(report)

    def _apply_report(self, report: dict) -> None:
        self.report = report
        self.file_format = report.get("format") or self.file_format
        if report.get("tool_rows"):
            self.uses_tools = True
            self.has_calls = self.has_calls or bool(report.get("tool_calls"))
        self._set_problems(report.get("errors", []))
        self._summary()
        for warning in report.get("warnings", []):
            self.notify(warning, severity="warning", title="Data")

    def on_data_screen_inspect_failed(self, event: InspectFailed) -> None:
        gen, message = event.gen, event.text
        if gen != self._gen:
            return
        self._set_progress("inspect", None)
        self.report = {"error": message}
        self._summary()
        self.notify(message, severity="error", title="Data")

    def _set_problems(self, errors: list[dict] | None = None) -> None:
        """The Problems tab: the bad rows (``errors``, from the check), then the rows with warnings
        (special-token text, from the token statistics); a refused file's sentence alone."""
        if errors is not None:
            self.problems = errors
        errors = self.problems
        options = self.query_one("#data-problems", OptionList)
        options.clear_options()
        unit = self.source.unit if self.source is not None else "line"
        if self.refusal is not None:
            options.add_option(Option(f"✗ {self.refusal[1]}", disabled=True))
        for k, p in enumerate(errors):
            where = p.get(unit, p.get("line", p.get("record")))
            options.add_option(Option(f"✗ {unit} {where}: {p['message']}", id=f"problem-{k}"))
        report = self.report or {}
        more = report.get("bad_rows", 0) - len(errors)
        if more > 0:
            options.add_option(Option(f"… and {more} more (tunedeck data inspect lists them all)", disabled=True))
        for where, warnings in sorted(self.row_warnings.items()):
            for n, warning in enumerate(warnings):
                options.add_option(Option(f"! {unit} {where}: {warning}", id=f"warning-{where}-{n}"))
        listed = (self.stats or {}).get("special_token_text", 0)
        if listed > len(self.row_warnings):
            options.add_option(Option(f"… and {listed - len(self.row_warnings)} more rows with special-token text",
                                      disabled=True))
        bad = report.get("bad_rows", len(errors)) if errors else 0
        warned = max(listed, len(self.row_warnings))
        if bad and warned:
            label = f"Problems ({bad} bad, {warned} warned)"
        elif bad:
            label = f"Problems ({bad})"
        elif warned:
            label = f"Problems ({warned} warned)"
        else:
            label = "Problems"
        self.query_one(TabbedContent).get_tab("problems").label = label

    @on(OptionList.OptionSelected, "#data-problems")
    def _problem_selected(self, message: OptionList.OptionSelected) -> None:
        option = message.option_id or ""
        if option.startswith("problem-"):
            problem = self.problems[int(option.split("-")[1])]
            self.jump_to_row(problem["row"] - 1)
        elif option.startswith("warning-"):
            index = self._index_of(int(option.split("-")[1]))
            if index is not None:
                self.jump_to_row(index)

    def _index_of(self, where: int) -> int | None:
        """The row index of a line/record number (the statistics name rows by where they are)."""
        source = self.source
        if source is None:
            return None
        index = source.index_of(where)
        if index is None and source.unit == "record":
            index = where - 1
        return index

    def jump_to_row(self, index: int) -> None:
        table = self.query_one(RowTable)
        if index >= table.row_count and self.source is not None:
            table.set_row_count(max(table.row_count, index + 1))
        table.go_to(index)
        table.focus()

    # --- token statistics (child process) ---------------------------------------------------------
    def action_stats(self) -> None:
        if self.source is None or self.ref is None:
            return
        self.query_one("#data-stats-text", Static).update(f"Counting tokens with the tokenizer of {self.model} …")
        in_thread(self, self._stats, self.ref, self.model or self.project.model, self.max_length, self._gen,
                  title="Data")

    def _stats(self, ref: str, model: str, max_length: int, gen: int) -> None:
        self.post_message(self.Progress("stats", "loading tokenizer", None))
        args = ["data", "stats", ref, "--model", model, "--max-length", str(max_length), "--progress",
                *self._objective_args()]
        try:
            for event in self._jobs.stream("stats", args):
                if gen != self._gen:
                    return
                kind = event.get("event")
                if kind == "progress" and event.get("phase") == "tokens":
                    self.post_message(self.Progress("stats", "counting tokens", event["fraction"]))
                elif kind == "progress" and event.get("phase") == "model":
                    self.post_message(self.Progress("stats", "loading tokenizer", event.get("fraction")))
                elif kind == "partial":
                    self.post_message(self.StatsCounted(gen, event, False))
                elif kind == "stats":
                    self.post_message(self.StatsCounted(gen, event, True))
        except EngineProcessError as exc:
            self.post_message(self.StatsFailed(gen, str(exc)))

    def on_data_screen_stats_counted(self, event: StatsCounted) -> None:
        gen, stats, final = event.gen, event.stats, event.final
        if gen != self._gen:
            return
        if final:
            self.stats = stats
            self._set_progress("stats", None)
            self._timings["stats"] = time.perf_counter()
            if self.ref and stats.get("longest") and not isinstance(self.data, list):
                # Method's and Train's estimates size from them too (for one source, not a mix)
                self.app.data_lengths.put(stats.get("model") or self.model or self.project.model, self.ref,
                                          int(stats["max_length"]), stats)
            self._special_token_warnings(stats)
        L = stats["length"]
        pref = stats.get("preference")
        if pref:
            lines = _preference_lines(stats, pref, final)
        else:
            lines = [
                f"[b]{stats['examples']:,}[/b] examples{'' if final else ' so far'} · tokens each: min {L['min']}, "
                f"median {L['p50']}, p90 {L['p90']}, max {L['max']}",
                f"[b]{stats['trainable_tokens']:,}[/b] trained tokens of {stats['tokens']:,} (max length {stats['max_length']})",
            ]
        over = stats["over_max_length"]
        unit = "sequence" if pref else "example"
        if over:
            lines.append(f"[$error]✂ {over:,} {unit}{'s are' if over != 1 else ' is'} longer than {stats['max_length']} "
                         "and will be cut[/]")
        else:
            lines.append(f"[$success]✓ every {unit} fits in {stats['max_length']} tokens[/]")
        if pref:
            for part, key in (("prompt", "max_prompt_length"), ("answer", "max_completion_length")):
                n = pref.get(f"over_{key}")
                if n:
                    lines.append(f"[$warning]✂ {n:,} {part}{'s are' if n != 1 else ' is'} longer than {key} "
                                 f"{pref[key]} and will be cut"
                                 + (" (a prompt keeps its last tokens)" if part == "prompt" else "") + "[/]")
        if stats.get("nothing_trained"):
            lines.append(f"[$error]{stats['nothing_trained']:,} would train nothing after the cut[/]")
        self.query_one("#data-stats-text", Static).update("\n".join(lines))
        self.query_one(LengthHistogram).set_data(stats["histogram"], stats["max_length"])
        if final:
            self._summary()

    def _special_token_warnings(self, stats: dict) -> None:
        """Rows whose text holds a special token's text: a warning on the row and in Problems."""
        mode = stats.get("special_token_text_mode", "literal")
        warnings: dict[int, list[str]] = {}
        short: dict[int, str] = {}
        for entry in stats.get("special_token_text_where") or []:
            where = entry.get("line", entry.get("record"))
            if where is None:
                continue
            found = entry.get("found") or []
            warnings[where] = [f"{f['place']} contains {f['token']}, the text of a special token; it {_fate(mode)}"
                               for f in found]
            short[where] = ", ".join(f"{f['token']} in {f['place']}" for f in found[:2]) + (" …" if len(found) > 2 else "")
        if not warnings and not self.row_warnings:
            return
        self.row_warnings = warnings
        self.query_one(RowTable).set_warnings(short)
        self._set_problems()
        shown = self._shown_row
        if shown is not None and shown.gen == self._gen and shown.checked is not None \
                and shown.checked.raw.where in warnings:
            self.on_data_screen_row_checked(shown)  # the row on view gets its warning too

    def on_data_screen_stats_failed(self, event: StatsFailed) -> None:
        gen, message = event.gen, event.text
        if gen != self._gen:
            return
        self._set_progress("stats", None)
        self.query_one("#data-stats-text", Static).update(f"[$error]✗[/] {_escape(message)}")
        self.notify(message, severity="error", title="Token statistics")

    # --- max length and model ---------------------------------------------------------------------
    @on(Input.Submitted, "#data-path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if value and not (self.is_mix and value == self.ref):  # Enter on a source of the mix keeps the mix
            self.open_data(value)
        self.query_one(RowTable).focus()

    @on(Input.Submitted, "#data-max-length")
    def _max_length_submitted(self, event: Input.Submitted) -> None:
        try:
            value = int(event.value)
            if value < 1:
                raise ValueError
        except ValueError:
            self.notify("Max length must be a whole number of tokens, such as 1024.", severity="error")
            return
        if value != self.max_length:
            self.max_length = value
            self.set_project(settings={**self.project.settings, "max_length": value})
            self._refresh_tokens()
        self.query_one(RowTable).focus()

    def _model_changed(self) -> None:
        self.model = self.project.model
        self._refresh_tokens()

    def _refresh_tokens(self) -> None:
        table = self.query_one(RowTable)
        if self.source is not None and table.row_count:
            self._show_row(self._gen, self.source, self.file_format, table.cursor, self.max_length, self.model)
        self.stats = None
        self.query_one(LengthHistogram).set_data(None, self.max_length)
        size = getattr(self.source, "size", 0) or 0
        if self.source is not None and size < AUTO_STATS_BYTES:
            self.action_stats()

    # --- status line ----------------------------------------------------------------------------
    def on_data_screen_progress(self, event: Progress) -> None:
        self._set_progress(event.task, event.label, event.fraction)

    def _set_progress(self, task: str, label: str | None, fraction: float | None = None) -> None:
        if label is None:
            self._progress.pop(task, None)
        else:
            self._progress[task] = (label, fraction)
        status = self.query_one("#data-status")
        for name in ("open", "scan", "inspect", "stats"):
            if name in self._progress:
                label, fraction = self._progress[name]
                status.remove_class("-idle")
                label_widget = self.query_one("#data-progress-label", Label)
                if getattr(label_widget, "_shown", None) != label:
                    label_widget._shown = label
                    label_widget.update(label, layout=False)  # fixed width: no relayout while scanning
                bar = self.query_one("#data-progress", ProgressBar)
                bar.update(total=None if fraction is None else 1.0, progress=fraction or 0.0)
                return
        status.add_class("-idle")

    def _summary(self) -> None:
        parts = []
        source = self.source
        report = self.report or {}
        fmt = report.get("format") or self.file_format
        if self.refusal is not None:  # the banner holds the sentence
            what = "fine-tuning" if self.objective == "sft" else self.objective.upper()
            parts.append(f"[$error]✗ not for {what}:[/] [b]{_escape(_description(self.refusal[0]))}[/b]")
            if source is not None:
                parts.append(_rows(len(source), source.complete))
            parts.append(f"[dim]model {_escape(_model_name(self.model or self.project.model))}[/]")
            self.query_one("#data-summary", Static).update(" · ".join(parts), layout=False)
            return
        if "error" in report:
            parts.append(f"[$error]✗ {_escape(report['error'])}[/]")
        if fmt:
            parts.append(f"[b]{_escape(layout_label(fmt, tools=self.uses_tools, calls=self.has_calls))}[/b]")
            if self.objective == "grpo":
                parts.append("[$success]read as GRPO prompts[/]" if fmt != "prompt_only" else "[$success]for GRPO[/]")
        elif source is not None:
            parts.append("[$error]unknown format[/]")
        if source is not None:
            rows = report.get("rows")
            parts.append(_rows(rows) if rows is not None else _rows(len(source), source.complete))
            if report.get("tool_rows"):
                parts.append(f"{report['tool_rows']:,} with tools")
            bad = report.get("bad_rows")
            if bad:
                parts.append(f"[$error]{bad:,} bad[/]")
            elif bad == 0:
                parts.append("[$success]no bad rows[/]")
        if self.stats and self.stats.get("special_token_text"):
            parts.append(f"[$warning]{self.stats['special_token_text']:,} with special-token text[/]")
        pref = (self.stats or {}).get("preference")
        if pref and pref.get("pairs"):
            parts.append(f"{pref['pairs']:,} pair{'s' if pref['pairs'] != 1 else ''}")
        elif pref:
            good, bad = pref["labelled"]["good"], pref["labelled"]["bad"]
            parts.append(f"{good:,} good / {bad:,} bad")
        if self.stats:
            parts.append(f"{self.stats['trainable_tokens']:,} trained tokens")
            if self.stats["over_max_length"]:
                parts.append(f"[$warning]{self.stats['over_max_length']:,} over {self.stats['max_length']}[/]")
        parts.append(f"[dim]model {_escape(_model_name(self.model or self.project.model))}[/]")
        self.query_one("#data-summary", Static).update(" · ".join(parts), layout=False)

    # --- actions ----------------------------------------------------------------------------------
    def action_focus_path(self) -> None:
        self.query_one("#data-path", Input).focus()

    def action_focus_max_length(self) -> None:
        self.query_one("#data-max-length", Input).focus()

    def action_focus_rows(self) -> None:
        self.query_one(RowTable).focus()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    # --- trying GRPO's rewards on the base model's answers (helper process) ------------------------
    def _suggest_rewards(self) -> None:
        """The rewards box starts with the project's rewards, else the demo's on the demo data."""
        from engine.rewards import rewards_text

        rewards = self.project.settings.get("rewards")
        if not rewards and self.project.data in ("demo", "demo-prompts"):
            rewards = demo_rewards()
        if rewards:
            try:
                text = rewards if isinstance(rewards, str) else rewards_text(rewards)
            except (KeyError, TypeError, AttributeError):
                return
            self.query_one(RewardsView).set_rewards(text)

    def action_try_rewards(self) -> None:
        self.action_tab("rewards")
        self.query_one(RewardsView).ask()

    @on(RewardsView.Try)
    def _try_rewards(self, message: RewardsView.Try) -> None:
        message.stop()
        if not self.ref:
            self.query_one(RewardsView).failed("No data open: open a file of prompts first (f).")
            return
        model = self.project.model
        self._rewards_gen += 1
        settings = self.project.settings
        length = settings.get("max_completion_length") if settings.get("objective") == "grpo" else None
        payload = {"op": "try_rewards", "model": model, "data": self.ref, "rewards": message.rewards,
                   "reward_file": settings.get("reward_file") or None, "prompts": PROMPTS,
                   "generations": GENERATIONS,
                   "max_completion_length": length if isinstance(length, int) and length > 0 else COMPLETION,
                   "temperature": settings.get("temperature") if settings.get("objective") == "grpo" else None}
        self.query_one(RewardsView).loading(_model_name(model))
        in_thread(self, self._sample_rewards, self._rewards_gen, model, payload, title="Rewards",
                  name="data-try-rewards")

    def _sample_rewards(self, gen: int, model: str, payload: dict) -> None:
        """On its own thread: the warm helper samples and scores; progress lines come back as they go."""

        def progress(line: dict) -> None:
            said = line.get("message") or line.get("label") or line.get("phase")
            fraction = line.get("fraction")
            if said:
                text = str(said) + (f" ({fraction:.0%})" if isinstance(fraction, (int, float)) else "")
                self.post_message(self.RewardsDone(gen, progress=text))

        try:
            if self._jobs.closed:
                return
            helper = self._rewards_helper
            if helper is None or helper.model != model:
                if helper is not None:
                    helper.close()
                helper = self._rewards_helper = RenderHelper(model)
            result = helper.stream(payload, progress)
        except EngineProcessError as exc:
            self.post_message(self.RewardsDone(gen, error=str(exc)))
            return
        self.post_message(self.RewardsDone(gen, result=result))

    def on_data_screen_rewards_done(self, message: RewardsDone) -> None:
        if message.gen != self._rewards_gen:
            return
        view = self.query_one(RewardsView)
        if message.progress is not None:
            view.progress(message.progress)
        elif message.error is not None:
            view.failed(message.error)
        elif message.result is not None:
            view.show(message.result)

    def action_next_problem(self) -> None:
        """The next bad row, or, when there is none, the next row with a warning."""
        rows = sorted({p["row"] - 1 for p in self.problems})
        if not rows:
            rows = sorted(i for i in map(self._index_of, self.row_warnings) if i is not None)
        if not rows:
            self.notify("No bad rows found (so far).", title="Data")
            return
        cursor = self.query_one(RowTable).cursor
        later = [i for i in rows if i > cursor]
        self.jump_to_row((later or rows)[0])

