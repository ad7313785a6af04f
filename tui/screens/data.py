"""Data: open a training file, see its format and every bad row, and exactly what each example trains.

What runs where (the TUI never imports transformers):
  - this process, in threads: the lazy reader (engine.data) opens the file, shows the first rows at
    once, then indexes the rest in the background; the table asks for the rows on screen only.
  - child processes: `tunedeck data inspect --progress` (every row checked: format, problems),
    `tunedeck data stats --progress` (token lengths with the model's tokenizer), and a warm
    `tunedeck data serve` helper that renders the selected row as tokens with the trained mask.
"""

from __future__ import annotations

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
from engine.data.dataset import check, detect_file_format
from engine.errors import TunedeckError
from engine.ipc import ChildJobs, EngineProcessError

from ..data_helper import LatestOnly, RenderHelper
from ..widgets.conversation_view import ConversationView
from ..widgets.length_histogram import LengthHistogram
from ..widgets.path_input import PathInput
from ..widgets.row_table import RowLine, RowTable
from ..widgets.token_view import TokenView
from ..project import Project
from .base import AreaScreen, JobFailed, in_thread

DEFAULT_MAX_LENGTH = 1024
AUTO_STATS_BYTES = 50 << 20  # bigger files compute token statistics when asked (s)
PREVIEW = 300
WIDE = 120  # columns from which the table and the details sit side by side


class DataScreen(AreaScreen):
    AREA = "data"
    CSS_PATH = "../data.tcss"
    BINDINGS = [
        Binding("f", "focus_path", "File", id="data-file"),
        Binding("m", "focus_max_length", "Max len", id="data-max-len"),
        Binding("s", "stats", "Token stats", id="data-stats"),
        Binding("n", "next_problem", "Next bad row", id="data-next-bad"),
        Binding("c", "tab('conversation')", "Conversation", show=False),
        Binding("t", "tab('tokens')", "Tokens", show=False),
        Binding("l", "tab('lengths')", "Lengths", show=False),
        Binding("p", "tab('problems')", "Problems", show=False),
        Binding("escape", "focus_rows", "Rows", show=False),
    ]

    # --- what the background jobs send back (tagged with the generation of the file they read) ---
    class Opened(Message, bubble=False):
        def __init__(self, gen: int, ref: str, source, file_format: str | None) -> None:
            super().__init__()
            self.gen, self.ref, self.source, self.file_format = gen, ref, source, file_format

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

    class StatsCounted(Message, bubble=False):
        def __init__(self, gen: int, stats: dict, final: bool) -> None:
            super().__init__()
            self.gen, self.stats, self.final = gen, stats, final

    class StatsFailed(Message, bubble=False):
        def __init__(self, gen: int, text: str) -> None:
            super().__init__()
            self.gen, self.text = gen, text

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.source = None
        self.file_format: str | None = None
        self.ref: str | None = None
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

    def on_mount(self) -> None:
        self.max_length = int(self.project.settings.get("max_length") or DEFAULT_MAX_LENGTH)
        self.query_one("#data-max-length", Input).value = str(self.max_length)
        self._set_wide(self.app.size.width)
        self.open_data(self.project.data)
        self.query_one(RowTable).focus()

    def on_screen_resume(self) -> None:
        if self.project.data != self.ref:
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
        if self._helper is not None:
            helper, self._helper = self._helper, None
            threading.Thread(target=helper.close, daemon=True).start()

    def on_resize(self, event) -> None:
        self._set_wide(event.size.width)

    def _set_wide(self, width: int) -> None:
        self.set_class(width >= WIDE, "-wide")

    # --- opening ------------------------------------------------------------------------------
    def open_data(self, ref: str) -> None:
        ref = (ref or "").strip()
        self._gen += 1
        self._scan_stop.set()
        self._scan_stop = threading.Event()
        self._jobs.stop()
        self._timings = {"open": time.perf_counter()}
        self.source, self.file_format, self.report, self.stats, self.problems = None, None, None, None, []
        self._token_cache.clear()
        self._progress.clear()
        self.query_one("#data-path", Input).value = ref
        table = self.query_one(RowTable)
        table.reset()
        self.query_one("#data-rows-header", Static).update("")
        self.query_one("#data-summary", Static).update(f"Opening {ref} …")
        self.query_one(ConversationView).show_message("")
        self.query_one(TokenView).show_message("")
        self.query_one("#data-stats-text", Static).update("")
        self.query_one(LengthHistogram).set_data(None, self.max_length)
        self._set_problems([])
        self._set_progress("open", "opening", None)
        in_thread(self, self._open, ref, self._gen, self._scan_stop, title="Data")

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
        self.post_message(self.Opened(gen, ref, source, file_format))
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
        self.model = self.project.model
        self.set_project(data=ref)
        unit = "line" if source.unit == "line" else "rec"
        self.query_one("#data-rows-header", Static).update(f"{unit:>5}   first user turn, or the row's problem")
        self._summary()
        table = self.query_one(RowTable)
        table.set_row_count(len(source))
        self._timings["first_rows_known"] = time.perf_counter()
        self._set_progress("open", None)
        self._set_progress("scan", "indexing", 0.0)
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
        self._set_progress("scan", None if done else "indexing", fraction)
        if done:
            self._timings["indexed"] = time.perf_counter()
        self._summary()

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
        for raw in raws:
            checked = check(raw, file_format)
            if checked.problem is None:
                lines.append(RowLine(raw.index, raw.where, True, formats.preview(checked.example, width=PREVIEW)))
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
        checked = check(raw, file_format)
        where = f"{'line' if source.unit == 'line' else 'record'} {raw.where} · row {index + 1}"
        self.post_message(self.RowChecked(gen, where, checked, raw.text))
        if checked.problem is not None:
            self.post_message(self.TokensRendered(
                gen, index, None, "This row has a problem, so nothing in it is trained: " + checked.problem))
            return
        rendered = self._token_cache.get((index, max_length, model))
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
            rendered = self._get_helper(model).request({"op": "render", "example": example, "max_length": max_length})
        except EngineProcessError as exc:
            self.post_message(self.TokensRendered(gen, index, None, f"Cannot render with {model}: {exc}"))
            return
        if len(self._token_cache) > 500:
            self._token_cache.clear()
        self._token_cache[(index, max_length, model)] = rendered
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
        raw = raw_text if raw_text is not None else (repr(checked.raw.record) if checked.raw.record is not None else None)
        self.query_one(ConversationView).show(
            where=where, fmt=checked.format or self.file_format, example=checked.example, problem=checked.problem, raw=raw
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
            for event in self._jobs.stream("inspect", ["data", "inspect", ref, "--progress"], ok_codes=(0, 1)):
                if gen != self._gen:
                    return
                if event.get("event") == "progress":
                    self.post_message(self.Progress("inspect", "checking rows", event["fraction"]))
                elif event.get("event") == "report":
                    self.post_message(self.Inspected(gen, event))
        except EngineProcessError as exc:
            self.post_message(self.InspectFailed(gen, str(exc)))

    def on_data_screen_inspected(self, event: Inspected) -> None:
        gen, report = event.gen, event.report
        if gen != self._gen:
            return
        self.report = report
        self.file_format = report.get("format") or self.file_format
        self._set_progress("inspect", None)
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

    def _set_problems(self, errors: list[dict]) -> None:
        self.problems = errors
        options = self.query_one("#data-problems", OptionList)
        options.clear_options()
        unit = self.source.unit if self.source is not None else "line"
        for k, p in enumerate(errors):
            where = p.get(unit, p.get("line", p.get("record")))
            options.add_option(Option(f"{unit} {where}: {p['message']}", id=f"problem-{k}"))
        report = self.report or {}
        more = report.get("bad_rows", 0) - len(errors)
        if more > 0:
            options.add_option(Option(f"… and {more} more (tunedeck data inspect lists them all)", disabled=True))
        tabs = self.query_one(TabbedContent)
        label = f"Problems ({report.get('bad_rows', len(errors))})" if errors else "Problems"
        tabs.get_tab("problems").label = label

    @on(OptionList.OptionSelected, "#data-problems")
    def _problem_selected(self, message: OptionList.OptionSelected) -> None:
        if message.option_id and message.option_id.startswith("problem-"):
            problem = self.problems[int(message.option_id.split("-")[1])]
            self.jump_to_row(problem["row"] - 1)

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
        args = ["data", "stats", ref, "--model", model, "--max-length", str(max_length), "--progress"]
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
            if self.ref and stats.get("longest"):  # Method's and Train's estimates size from them too
                self.app.data_lengths.put(stats.get("model") or self.model or self.project.model, self.ref,
                                          int(stats["max_length"]), stats["longest"])
        L = stats["length"]
        lines = [
            f"[b]{stats['examples']:,}[/b] examples{'' if final else ' so far'} · tokens each: min {L['min']}, "
            f"median {L['p50']}, p90 {L['p90']}, max {L['max']}",
            f"[b]{stats['trainable_tokens']:,}[/b] trained tokens of {stats['tokens']:,} (max length {stats['max_length']})",
        ]
        over = stats["over_max_length"]
        if over:
            lines.append(f"[$error]✂ {over:,} example{'s are' if over != 1 else ' is'} longer than {stats['max_length']} "
                         "and will be cut[/]")
        else:
            lines.append(f"[$success]✓ every example fits in {stats['max_length']} tokens[/]")
        if stats.get("nothing_trained"):
            lines.append(f"[$error]{stats['nothing_trained']:,} would train nothing after the cut[/]")
        self.query_one("#data-stats-text", Static).update("\n".join(lines))
        self.query_one(LengthHistogram).set_data(stats["histogram"], stats["max_length"])
        if final:
            self._summary()

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
        if value:
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
        if "error" in report:
            parts.append(f"[$error]✗ {_escape(report['error'])}[/]")
        fmt = report.get("format") or self.file_format
        if fmt:
            parts.append(f"[b]{fmt}[/b]")
        elif source is not None:
            parts.append("[$error]unknown format[/]")
        if source is not None:
            rows = report.get("rows")
            if rows is not None:
                parts.append(f"{rows:,} rows")
            else:
                parts.append(f"{len(source):,}{'' if source.complete else '+'} rows")
            bad = report.get("bad_rows")
            if bad:
                parts.append(f"[$error]{bad:,} bad[/]")
            elif bad == 0:
                parts.append("[$success]no bad rows[/]")
        if self.stats:
            parts.append(f"{self.stats['trainable_tokens']:,} trained tokens")
            if self.stats["over_max_length"]:
                parts.append(f"[$warning]{self.stats['over_max_length']:,} over {self.stats['max_length']}[/]")
        parts.append(f"[dim]model {self.model or self.project.model}[/]")
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

    def action_next_problem(self) -> None:
        if not self.problems:
            self.notify("No bad rows found (so far).", title="Data")
            return
        cursor = self.query_one(RowTable).cursor
        later = [p for p in self.problems if p["row"] - 1 > cursor]
        target = (later or self.problems)[0]
        self.jump_to_row(target["row"] - 1)

