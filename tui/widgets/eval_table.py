"""The evaluation panel: progress while ``tunedeck eval`` runs, then the comparison table (base
zero-shot, few-shot, retrieval few-shot, fine-tuned) with the best score highlighted, and the verdict.
Fed with the JSON the engine writes (``engine.evaluate``); draws only."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, ProgressBar, Static

from engine.eval_scores import headline, table_rows

from .run_header import theme_colour


class EvalTable(DataTable):
    DEFAULT_CSS = """
    EvalTable { height: auto; max-height: 8; margin: 0 0; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="none", show_cursor=False, zebra_stripes=True, **kwargs)

    def show(self, result: dict) -> None:
        self.clear(columns=True)
        header, rows = table_rows(result, short=True)
        for i, label in enumerate(header):
            self.add_column(label, key=str(i))
        structured = bool(result.get("structured"))
        key = headline({}, structured)[0]
        values = [r.get(key) for r in result.get("rows", [])]
        best = max((v for v in values if v is not None), default=None)
        good = theme_colour(self.app, "success")
        for raw, cells in zip(result.get("rows", []), rows):
            is_best = best is not None and raw.get(key) == best and best > 0
            styled = []
            for i, cell in enumerate(cells):
                style = f"bold {good}".strip() if is_best and (i == 0 or header[i] in ("fields", "exact")) else ""
                styled.append(Text(cell, style=style))
            self.add_row(*styled)


class EvalPanel(Vertical):
    DEFAULT_CSS = """
    EvalPanel { height: 1fr; padding: 0 1; }
    EvalPanel #eval-caption { height: auto; color: $text-muted; }
    EvalPanel #eval-progress { height: 1; margin: 0 0; }
    EvalPanel #eval-progress.-hidden { display: none; }
    EvalPanel #eval-verdict { height: auto; margin-top: 1; }
    EvalPanel #eval-verdict.-error { color: $error; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="eval-caption")
        yield ProgressBar(total=100, show_eta=False, id="eval-progress", classes="-hidden")
        yield EvalTable(id="eval-table")
        yield Static("", id="eval-verdict")

    def show_empty(self, text: str) -> None:
        self.query_one("#eval-caption", Static).update(text)
        self.query_one("#eval-progress").add_class("-hidden")
        self.query_one(EvalTable).clear(columns=True)
        self.query_one(EvalTable).display = False
        self._verdict("")

    def show_progress(self, fraction: float | None, message: str | None = None) -> None:
        bar = self.query_one("#eval-progress", ProgressBar)
        bar.remove_class("-hidden")
        if fraction is not None:
            bar.update(progress=round(fraction * 100, 1))
        if message:
            self.query_one("#eval-caption", Static).update(message)

    def show_result(self, result: dict, *, fresh: bool = False) -> None:
        self.query_one("#eval-progress").add_class("-hidden")
        table = self.query_one(EvalTable)
        table.display = True
        table.show(result)
        weights = result.get("weights") or "weights"
        when = "" if fresh else " · e re-runs it"
        self.query_one("#eval-caption", Static).update(
            f"{result.get('scored', 0)} examples ({result.get('split', 'validation split')}) · "
            f"k={result.get('k')} shots · {weights} · {result.get('seconds', 0):.0f} s{when}"
        )
        self._verdict(result.get("verdict", ""))

    def show_error(self, message: str) -> None:
        self.query_one("#eval-progress").add_class("-hidden")
        self._verdict(message, error=True)

    def _verdict(self, text: str, *, error: bool = False) -> None:
        verdict = self.query_one("#eval-verdict", Static)
        verdict.set_class(error, "-error")
        verdict.update(text)
