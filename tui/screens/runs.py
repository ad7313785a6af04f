"""Runs: every run in a sortable table; monitor, chat with, evaluate, export, delete or compare them.
The Evaluation tab shows the task scores against prompting and, below them, the general-ability probe
(did the model forget how to do everything else?), base vs fine-tuned, with its verdict.

The table is refreshed every few seconds from the run store off the UI thread. Evaluation and
export run ``tunedeck eval|export`` in a child process (tui/engine_process.py), so no ML library is
imported here; evaluation progress streams back as JSON lines.
"""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape as _escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static, TabbedContent, TabPane

from engine.errors import TunedeckError
from engine.eval_scores import saved_result
from engine.ipc import EngineProcessError, run_json, stream_json
from engine.runs import ALIVE, Run

from ..widgets.eval_table import EvalPanel
from ..widgets.loss_overlay import LossOverlay, curves_of
from ..widgets.run_header import memory_words
from ..widgets.runs_table import RunRow, RunsTable, format_duration, short_ref
from .base import AreaScreen, JobFailed
from .confirm import ConfirmScreen
from .export_run import ExportRequest, ExportRunScreen

REFRESH_SECONDS = 3.0


class RunsScreen(AreaScreen):
    AREA = "runs"
    CSS_PATH = "../runs.tcss"
    BINDINGS = [
        Binding("enter", "monitor", "Monitor", id="runs-monitor", show=False),
        Binding("m", "monitor", "Monitor", id="runs-monitor-m"),
        Binding("c", "chat", "Chat", id="runs-chat"),
        Binding("e", "evaluate", "Eval", id="runs-eval"),
        Binding("x", "export", "Export", id="runs-export"),
        Binding("d,delete", "delete", "Delete", id="runs-delete"),
        Binding("space", "mark", "Mark", id="runs-mark"),
        Binding("v", "compare", "Compare", id="runs-compare"),
        Binding("r", "refresh", "Refresh", id="runs-refresh", show=False),
    ]

    WORKER_ERROR_TITLES = {"runs-export": "Export failed"}

    eval_limit: int | None = None  # score only the first N validation examples (None: all)

    # --- what the background work sends back ----------------------------------------------------
    class RowsLoaded(Message, bubble=False):
        def __init__(self, rows: list[RunRow]) -> None:
            super().__init__()
            self.rows = rows

    class EvalProgress(Message, bubble=False):
        def __init__(self, fraction: float | None, text: str | None) -> None:
            super().__init__()
            self.fraction, self.text = fraction, text

    class EvalDone(Message, bubble=False):
        def __init__(self, run_id: str, result: dict | None, error: str | None) -> None:
            super().__init__()
            self.run_id, self.result, self.error = run_id, result, error

    class Exported(Message, bubble=False):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Deleted(Message, bubble=False):
        def __init__(self, run_id: str, text: str) -> None:
            super().__init__()
            self.run_id, self.text = run_id, text

    class CurvesLoaded(Message, bubble=False):
        def __init__(self, curves: list, hint: str) -> None:
            super().__init__()
            self.curves, self.hint = curves, hint

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.eval_running: str | None = None  # the run being evaluated
        self._follow_project = True  # put the cursor on the project's run at the next load

    def compose_body(self) -> ComposeResult:
        with Vertical(id="runs-body"):
            yield Static(
                "No runs yet. Start one from Train (3), or `tunedeck train --model demo --data demo --max-steps 20`.",
                id="runs-empty",
            )
            yield RunsTable(id="runs-table")
            with TabbedContent(id="runs-tabs", initial="tab-details"):
                with TabPane("Details", id="tab-details"):
                    yield Static("", id="run-details")
                with TabPane("Evaluation", id="tab-eval"):
                    yield EvalPanel(id="eval-panel")
                with TabPane("Compare", id="tab-compare"):
                    yield LossOverlay(id="overlay")

    # --- refresh ---------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.query_one(EvalPanel).show_empty("Select a run and press e to score it against prompting baselines.")
        self.load_runs()
        self.set_interval(REFRESH_SECONDS, self._tick)
        self.query_one(RunsTable).focus()

    def _tick(self) -> None:
        if self.is_current:  # another area is on screen: read nothing
            self.load_runs()

    def on_screen_resume(self) -> None:
        self._follow_project = True
        self.load_runs()

    def action_refresh(self) -> None:
        self.load_runs()

    @work(thread=True, exclusive=True, group="runs-refresh", exit_on_error=False)
    def load_runs(self) -> None:
        try:
            rows = RunRow.collect()
        except Exception as exc:  # a broken store must not take the screen down
            self.post_message(JobFailed(f"Could not read the runs: {exc}"))
            return
        self.post_message(self.RowsLoaded(rows))

    def on_runs_screen_rows_loaded(self, message: RowsLoaded) -> None:
        rows = message.rows
        table = self.query_one(RunsTable)
        table.set_rows(rows)
        self.query_one("#runs-empty").set_class(not rows, "-shown")
        if self._follow_project:
            self._follow_project = False
            if self.project.run_id in table.order:
                table.move_cursor(row=table.order.index(self.project.run_id), animate=False)
        self._show_details(table.current)
        if self.query_one(TabbedContent).active == "tab-compare":
            self.load_curves()

    @property
    def selected(self) -> RunRow | None:
        return self.query_one(RunsTable).current

    def on_runs_table_highlighted(self, message: RunsTable.Highlighted) -> None:
        self._show_details(message.row)
        if self.eval_running is None:
            self._show_saved_eval(message.row)
        if self.query_one(TabbedContent).active == "tab-compare":
            self.load_curves()

    def _show_details(self, row: RunRow | None) -> None:
        details = self.query_one("#run-details", Static)
        if row is None:
            details.update("")
            return
        steps = f"{row.step}/{row.max_steps}" if row.max_steps else str(row.step)
        best = f"{row.best_eval_loss:.4f}" if isinstance(row.best_eval_loss, (int, float)) else "—"
        lines = [
            f"[b]{row.id}[/b]  {row.state}  step {steps}  best eval loss {best}"
            + (f"  eval reward accuracy {row.eval_reward_accuracy:.0%}" if row.eval_reward_accuracy is not None else "")
            + (f"  mean reward {row.reward:.2f}" if row.reward is not None else "")
            + f"  {format_duration(row.duration)}",
            f"model {short_ref(row.model)}  data {short_ref(row.data)}  method {row.method_label or '—'}"
            + (f"  memory peak {memory_words(row.peak_memory, row.estimated_memory)}"
               if row.peak_memory or row.estimated_memory else ""),
            f"[dim]{row.dir}[/]",
        ]
        if row.message:
            style = "$error" if row.state in ("failed", "crashed") else "$text-muted"
            lines.append(f"[{style}]{_escape(row.message)}[/]")
        if row.state in ("failed", "crashed"):
            tail = Run(_path(row.dir)).log_tail(4)
            lines += [f"[dim]{_escape(line[:200])}[/]" for line in tail]
        details.update("\n".join(lines))

    def _show_saved_eval(self, row: RunRow | None) -> None:
        panel = self.query_one(EvalPanel)
        result = saved_result(_path(row.dir)) if row else None
        if result:
            panel.show_result(result)
        elif row:
            panel.show_empty(f"{row.id} has not been evaluated yet: press e to score it against zero-shot, "
                             "few-shot and retrieval few-shot prompting of its base model, and to see what else it "
                             "forgot (the general-ability probe).")

    # --- monitor / chat ----------------------------------------------------------------------------
    def _need_run(self) -> RunRow | None:
        row = self.selected
        if row is None:
            self.notify("No run selected: start one from Train (3).", severity="warning")
        return row

    def action_monitor(self) -> None:
        row = self._need_run()
        if row:
            self.set_project(run_id=row.id)
            self.app.switch_mode("train")

    def on_data_table_row_selected(self, event) -> None:
        event.stop()
        self.action_monitor()

    def action_chat(self) -> None:
        row = self._need_run()
        if row is None:
            return
        if not self._has_weights(row):
            self.notify(f"{row.id} has no adapter or checkpoint yet, so there is nothing to chat with; "
                        "wait for its first checkpoint.", severity="warning")
            return
        self.set_project(run_id=row.id)
        self.app.switch_mode("chat")

    def _has_weights(self, row: RunRow) -> bool:
        return Run(_path(row.dir)).has_weights()

    # --- evaluate ----------------------------------------------------------------------------------
    def action_evaluate(self) -> None:
        row = self._need_run()
        if row is None:
            return
        if self.eval_running:
            self.notify(f"Already evaluating {self.eval_running}; one evaluation at a time.", severity="warning")
            return
        try:
            Run(_path(row.dir)).weights()
        except TunedeckError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.eval_running = row.id
        self.query_one(TabbedContent).active = "tab-eval"
        panel = self.query_one(EvalPanel)
        panel.show_empty(f"Evaluating {row.id}: starting a helper process…")
        panel.show_progress(0.0)
        self.run_eval(row.id)

    @work(thread=True, exclusive=True, group="runs-eval", exit_on_error=False)
    def run_eval(self, run_id: str) -> None:
        post = self.post_message
        try:
            args = ["eval", run_id, "--json", "--progress"]
            if self.eval_limit:
                args += ["--limit", str(self.eval_limit)]
            for event in stream_json(args):
                kind = event.get("type")
                if kind == "status":
                    post(self.EvalProgress(None, f"{run_id}: {event.get('message', '')}"))
                elif kind == "progress":
                    post(self.EvalProgress(event.get("fraction"), None))
                elif kind == "result":
                    post(self.EvalDone(run_id, event, None))
                    return
            post(self.EvalDone(run_id, None, "The evaluation ended without a result."))
        except EngineProcessError as exc:
            post(self.EvalDone(run_id, None, str(exc)))
        except Exception as exc:  # the helper could not even start
            post(self.EvalDone(run_id, None, f"Could not run the evaluation: {exc}"))

    def on_runs_screen_eval_progress(self, message: EvalProgress) -> None:
        self.query_one(EvalPanel).show_progress(message.fraction, message.text)

    def on_runs_screen_eval_done(self, message: EvalDone) -> None:
        run_id, result, error = message.run_id, message.result, message.error
        self.eval_running = None
        panel = self.query_one(EvalPanel)
        current = self.selected
        if error:
            panel.show_error(f"Evaluation of {run_id} failed: {error}")
            self.notify(error, title="Evaluation failed", severity="error")
            return
        if current is None or current.id == run_id:
            panel.show_result(result, fresh=True)
        self.notify(result.get("verdict", "Evaluation finished."), title=f"Evaluated {run_id}", timeout=8)

    # --- export ------------------------------------------------------------------------------------
    def action_export(self) -> None:
        row = self._need_run()
        if row is None:
            return
        try:
            full = not Run(_path(row.dir)).weights().is_adapter
        except TunedeckError as exc:
            self.notify(str(exc), severity="warning")
            return

        def chosen(request: ExportRequest | None) -> None:
            if request is not None:
                self.notify(f"Exporting {request.run_id} to {request.to}…", timeout=4)
                self.run_export(request)

        self.app.push_screen(ExportRunScreen(row.id, full=full), chosen)

    @work(thread=True, group="runs-export", exit_on_error=False)
    def run_export(self, request: ExportRequest) -> None:
        result = run_json(request.args())  # a failure: one notification, "Export failed" (on_worker_state_changed)
        what = {"adapter": "adapter", "merged": "merged model", "model": "model"}.get(result.get("export"), "run")
        text = f"Wrote the {what} of {result.get('run')} to {result.get('to')}."
        if result.get("trl_config"):
            text += f" `trl sft --config {result['trl_config']['config']}` reproduces the run."
        self.post_message(self.Exported(text))

    def on_runs_screen_exported(self, message: Exported) -> None:
        self.notify(message.text, title="Exported", timeout=10)

    # --- delete ------------------------------------------------------------------------------------
    def action_delete(self) -> None:
        row = self._need_run()
        if row is None:
            return
        if row.state in ALIVE:
            self.notify(f"{row.id} is still {row.state}; stop it from Train (3) before deleting it.",
                        severity="warning")
            return
        body = (f"This removes the run folder {row.dir}: its config, logs, checkpoints and "
                f"{'model' if row.method == 'full' else 'adapter'}. Your data ({short_ref(row.data)}) and base "
                f"model ({short_ref(row.model)}) are not touched.")

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete(row.id)

        self.app.push_screen(ConfirmScreen(f"Delete {row.id}?", body), answered)

    @work(thread=True, group="runs-delete", exit_on_error=False)
    def delete(self, run_id: str) -> None:
        from engine.runs import delete_run

        self.post_message(self.Deleted(run_id, delete_run(run_id)))  # a TunedeckError: one notification

    def on_runs_screen_deleted(self, message: Deleted) -> None:
        if self.project.run_id == message.run_id:
            self.set_project(run_id=None)
        self.notify(message.text, timeout=4)
        self.load_runs()

    # --- compare -----------------------------------------------------------------------------------
    def action_mark(self) -> None:
        marked = self.query_one(RunsTable).toggle_mark()
        if len(marked) == 2:
            self.action_compare()
        elif self.query_one(TabbedContent).active == "tab-compare":
            self.load_curves()

    def action_compare(self) -> None:
        self.query_one(TabbedContent).active = "tab-compare"
        self.load_curves()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-compare":
            self.load_curves()

    def compare_ids(self) -> list[str]:
        """The marked runs (two at most); with fewer than two marked, the highlighted run joins them."""
        table = self.query_one(RunsTable)
        ids = list(table.marked)
        if len(ids) < 2 and table.current and table.current.id not in ids:
            ids.append(table.current.id)
        return ids[:2]

    @work(thread=True, exclusive=True, group="runs-curves", exit_on_error=False)
    def load_curves(self) -> None:
        table = self.query_one(RunsTable)
        ids = self.compare_ids()
        curves = [curves_of(table.rows_by_id[i].dir) for i in ids if i in table.rows_by_id]
        hint = "" if len(table.marked) >= 2 else "space marks runs to compare (two at most)"
        self.post_message(self.CurvesLoaded(curves, hint))

    def on_runs_screen_curves_loaded(self, message: CurvesLoaded) -> None:
        self.query_one(LossOverlay).set_curves(message.curves, message.hint)


def _path(text: str) -> Path:
    return Path(text)
