"""Every run in one sortable table: id, created, model, data, method, status, steps, best eval loss,
duration. Rows are ``RunRow`` values built off the UI thread (``RunRow.collect``); ``set_rows``
updates cells in place and rebuilds only when the set or the order of runs changed, so the cursor
stays on the same run across refreshes. A preference run's method names its objective (``lora · DPO``)
and, once a DPO run has logged an evaluation, its "best eval" cell is its latest eval reward accuracy
(``acc 88%``) instead of a loss (the column still sorts by the best eval loss)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from engine.follow import HistoryReader
from engine.runs import method_label

from .run_header import theme_colour

# (key, label, width hint)
COLUMNS = [
    ("mark", " ", 1),
    ("id", "run", 0),
    ("state", "status", 9),
    ("steps", "steps", 0),
    ("best", "best eval", 9),
    ("duration", "duration", 8),
    ("method", "method", 6),
    ("model", "model", 0),
    ("data", "data", 0),
    ("created", "created", 11),
]
SORTABLE = [key for key, _, _ in COLUMNS if key != "mark"]
# Below WIDE_FROM columns the table drops what the run id already says (date, model, method) and the
# data path (in Details), so that 80 columns show every column left without scrolling sideways.
NARROW = ("mark", "id", "state", "steps", "best", "duration")
WIDE_FROM = 120
STATE_COLOUR = {
    "running": "accent", "starting": "accent", "stopping": "warning", "completed": "success",
    "stopped": "warning", "failed": "error", "crashed": "error",
}


def short_ref(ref: str | None) -> str:
    """A model or data reference as people read it: the file or folder name, not the whole path."""
    if not ref:
        return "—"
    return (Path(ref).name or ref) if Path(ref).is_absolute() else ref


class TrainingTime:
    """Each run's history (``RunHistory``: training seconds, eval reward accuracy), its events read
    incrementally, so refreshing a long run costs only its new lines."""

    def __init__(self) -> None:
        self._readers: dict[str, HistoryReader] = {}
        # Two refreshes may overlap (screen mount and its timer, on worker threads): without the lock
        # both fold the same new lines and count their segments twice.
        self._lock = threading.Lock()

    def seconds(self, run, now: float | None) -> float | None:
        return self.read(run, lambda history: history.training_seconds(now))

    def read(self, run, what):
        """``what(history)`` for ``run``'s history after reading its new events (under the lock)."""
        with self._lock:
            reader = self._readers.get(str(run.dir))
            if reader is None:
                reader = self._readers[str(run.dir)] = HistoryReader(run)
            reader.read()
            return what(reader.history)


_TRAINING_TIME = TrainingTime()


def _latest_reward(history) -> float | None:
    """A GRPO run's latest mean reward (its eval's when it has evaluated), from its history."""
    for key in ("eval_reward", "reward"):
        points = history.points(key)
        if points:
            return points[-1][1]
    return None


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass(frozen=True)
class RunRow:
    id: str
    dir: str
    created: float | None
    model: str | None
    data: str | None
    method: str | None
    state: str
    step: int
    max_steps: int | None
    best_eval_loss: float | None
    duration: float | None
    message: str | None
    peak_memory: float | None = None
    estimated_memory: float | None = None
    objective: str | None = None  # sft | dpo | kto
    eval_reward_accuracy: float | None = None  # a DPO run's latest, from its eval events
    reward: float | None = None  # a GRPO run's latest mean reward: its eval's when it has one, else training's

    @property
    def method_label(self) -> str | None:
        return method_label(self.method, self.objective)


    @classmethod
    def collect(cls) -> list["RunRow"]:
        """Every run in the store (reads files only; call it off the UI thread)."""
        from engine.runs import Run, list_runs

        now = time.time()
        rows = []
        for info in list_runs():
            alive = info.state in ("running", "starting", "stopping")
            duration, accuracy, reward = _TRAINING_TIME.read(
                Run(info.dir), lambda h: (h.training_seconds(now if alive else None), h.eval_reward_accuracy,
                                          _latest_reward(h)))
            if duration is None:  # no start event (it never got going): the status' own times
                status = Run(info.dir).read_status()
                started = status.get("started") or info.created
                end = now if alive else (status.get("ended") or info.updated)
                duration = (end - started) if (started and end) else None
            rows.append(cls(
                id=info.id, dir=str(info.dir), created=info.created, model=info.model, data=info.data,
                method=info.method, state=info.state, step=info.step, max_steps=info.max_steps,
                best_eval_loss=info.best_eval_loss, duration=duration, message=info.message,
                peak_memory=info.peak_memory, estimated_memory=info.estimated_memory,
                objective=info.objective, eval_reward_accuracy=accuracy,
                reward=reward if info.objective == "grpo" else None,
            ))
        return rows

    def sort_value(self, key: str):
        """A value that orders well for column ``key`` (missing values last)."""
        value = {
            "id": self.id, "created": self.created, "model": short_ref(self.model), "data": short_ref(self.data),
            "method": self.method_label, "state": self.state, "steps": self.step, "best": self.best_eval_loss,
            "duration": self.duration,
        }[key]
        return (value is None, value if value is not None else 0)

    @property
    def best_text(self) -> str:
        """The "best eval" cell: a DPO run's latest eval reward accuracy, a GRPO run's latest reward, else
        the best eval loss."""
        if self.eval_reward_accuracy is not None:
            return f"acc {self.eval_reward_accuracy:.0%}"
        if self.reward is not None:
            return f"rwd {self.reward:.2f}"
        return f"{self.best_eval_loss:.4f}" if isinstance(self.best_eval_loss, (int, float)) else "—"

    def cells(self, app=None, marked: bool = False) -> list:
        colour = theme_colour(app, STATE_COLOUR.get(self.state, "foreground")) if app else ""
        steps = f"{self.step}/{self.max_steps}" if self.max_steps else str(self.step)
        created = time.strftime("%m-%d %H:%M", time.localtime(self.created)) if self.created else "—"
        cells = {
            "mark": Text("●" if marked else " ", style=theme_colour(app, "accent") if app else ""),
            "id": self.id, "state": Text(self.state, style=colour), "steps": steps,
            "best": self.best_text, "duration": format_duration(self.duration),
            "method": self.method_label or "—", "model": short_ref(self.model), "data": short_ref(self.data),
            "created": created,
        }
        return [cells[key] for key, _, _ in COLUMNS]


def sort_rows(rows: list[RunRow], key: str, reverse: bool) -> list[RunRow]:
    return sorted(rows, key=lambda r: r.sort_value(key), reverse=reverse)


class RunsTable(DataTable):
    """The table; posts ``Highlighted`` with the run under the cursor as it moves."""

    DEFAULT_CSS = """
    RunsTable { height: auto; max-height: 50%; min-height: 4; }
    RunsTable > .datatable--header { text-style: bold; color: $text; }
    """
    BINDINGS = [
        Binding("s", "cycle_sort", "Sort", id="runs-sort"),
    ]

    class Highlighted(Message):
        def __init__(self, row: RunRow | None) -> None:
            super().__init__()
            self.row = row

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_by_id: dict[str, RunRow] = {}
        self.order: list[str] = []
        self.marked: list[str] = []
        self.sort_key, self.sort_reverse = "created", True  # newest first
        self.shown: list[tuple[str, str, int]] = []

    def on_mount(self) -> None:
        self._show_columns(self.app.size.width)

    def on_resize(self, event) -> None:
        self._show_columns(event.size.width)

    def _show_columns(self, width: int) -> None:
        wanted = COLUMNS if width >= WIDE_FROM else [c for c in COLUMNS if c[0] in NARROW]
        if wanted == self.shown:
            return
        current = self.current.id if self.current else None
        self.clear(columns=True)
        self.shown = wanted
        for key, label, _ in wanted:
            self.add_column(self._label(key, label), key=key)
        self.order = []  # rows again, with the columns now shown
        self.set_rows(list(self.rows_by_id.values()))
        if current in self.order:
            self.move_cursor(row=self.order.index(current), animate=False)

    def _cells(self, row: RunRow) -> list:
        cells = dict(zip((key for key, _, _ in COLUMNS), row.cells(self.app, row.id in self.marked)))
        return [cells[key] for key, _, _ in self.shown]

    def _label(self, key: str, label: str) -> Text:
        """The header label, with room for the sort arrow kept on every column so widths never change."""
        if key == "mark":
            return Text(label)
        if key == self.sort_key:
            return Text(f"{label} {'▼' if self.sort_reverse else '▲'}")
        return Text(f"{label}  ")

    @property
    def current(self) -> RunRow | None:
        if not self.order or self.cursor_row < 0 or self.cursor_row >= len(self.order):
            return None
        return self.rows_by_id.get(self.order[self.cursor_row])

    def set_rows(self, rows: list[RunRow]) -> None:
        current = self.current.id if self.current else None
        ordered = sort_rows(rows, self.sort_key, self.sort_reverse)
        new_order = [r.id for r in ordered]
        self.marked = [m for m in self.marked if m in new_order]
        old = self.rows_by_id
        self.rows_by_id = {r.id: r for r in ordered}
        if new_order == self.order:
            for row in ordered:
                if old.get(row.id) != row:
                    self._update_row(row)
        else:
            self.clear()
            for row in ordered:
                self.add_row(*self._cells(row), key=row.id)
            self.order = new_order
            if current in new_order:
                self.move_cursor(row=new_order.index(current), animate=False)
        now = self.current.id if self.current else None
        if now != current:
            self.post_message(self.Highlighted(self.current))

    def _update_row(self, row: RunRow) -> None:
        for (key, _, _), cell in zip(self.shown, self._cells(row)):
            self.update_cell(row.id, key, cell)

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        if key not in SORTABLE:
            return
        if reverse is None:
            reverse = (not self.sort_reverse) if key == self.sort_key else key in ("created", "duration", "steps")
        self.sort_key, self.sort_reverse = key, reverse
        for ckey, label, _ in self.shown:
            self.columns[ckey].label = self._label(ckey, label)
        self.order = []  # force a rebuild in the new order
        self.set_rows(list(self.rows_by_id.values()))
        self.refresh()

    def action_cycle_sort(self) -> None:
        i = SORTABLE.index(self.sort_key) if self.sort_key in SORTABLE else -1
        self.sort_by(SORTABLE[(i + 1) % len(SORTABLE)])

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def toggle_mark(self) -> list[str]:
        """Mark or unmark the run under the cursor for comparison (two at most: the oldest mark goes)."""
        row = self.current
        if row is None:
            return self.marked
        if row.id in self.marked:
            self.marked.remove(row.id)
        else:
            self.marked.append(row.id)
            if len(self.marked) > 2:
                dropped = self.marked.pop(0)
                if dropped in self.rows_by_id:
                    self._update_row(self.rows_by_id[dropped])
        self._update_row(row)
        return list(self.marked)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.post_message(self.Highlighted(self.rows_by_id.get(str(event.row_key.value))))
