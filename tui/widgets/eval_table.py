"""The evaluation panel: progress while ``tunedeck eval`` runs, then the comparison table (base
zero-shot, few-shot, retrieval few-shot, fine-tuned; a GRPO run's rewards, base vs tuned, on held-out
prompts; a preference run's scores) with the best score highlighted, and the verdict;
below them the general-ability probe (forgetting: base vs fine-tuned on everyday prompts and general
text) with its own verdict. Fed with the JSON the engine writes (``engine.evaluate``); draws only."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, ProgressBar, Static

from engine.eval_scores import headline, is_rewards_result, table_rows
from engine.general_probe import probe_table_rows

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
        best_columns = ("fields", "exact")
        if is_rewards_result(result):  # GRPO: the held-out total reward, base vs tuned
            key, best_columns = "reward", ("total", "full")
        values = [r.get(key) for r in result.get("rows", [])]
        best = max((v for v in values if v is not None), default=None)
        good = theme_colour(self.app, "success")
        for raw, cells in zip(result.get("rows", []), rows):
            is_best = best is not None and raw.get(key) == best and best > 0
            styled = []
            for i, cell in enumerate(cells):
                style = f"bold {good}".strip() if is_best and (i == 0 or header[i] in best_columns) else ""
                styled.append(Text(cell, style=style))
            self.add_row(*styled)


class ProbeTable(DataTable):
    """Base vs fine-tuned on the general-ability probe; the fine-tuned cells that got worse in colour."""

    DEFAULT_CSS = """
    ProbeTable { height: auto; max-height: 4; margin: 0 0; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="none", show_cursor=False, zebra_stripes=True, **kwargs)

    def show(self, general: dict) -> None:
        self.clear(columns=True)
        header, rows = probe_table_rows(general, short=True)
        for i, label in enumerate(header):
            self.add_column(label, key=str(i))
        raw = general.get("rows", [])
        worse = _worse_cells(raw[0], raw[1]) if len(raw) == 2 else set()
        bad = theme_colour(self.app, "warning")
        for n, cells in enumerate(rows):
            self.add_row(*[Text(c, style=bad if n == 1 and i in worse else "") for i, c in enumerate(cells)])


def _worse_cells(base: dict, tuned: dict) -> set[int]:
    """Columns (of probe_table_rows) where the fine-tuned model did clearly worse than the base."""
    from engine.general_probe import PPL_RATIO_DROP, SHARE_DROP

    out = set()
    pb, pt = base.get("perplexity"), tuned.get("perplexity")
    if pb and pt is not None and pt >= PPL_RATIO_DROP * pb:
        out.add(1)
    for col, key in ((2, "correct"), (3, "follows")):
        b, t = base.get(key), tuned.get(key)
        if b is not None and t is not None and b - t >= SHARE_DROP - 1e-9:
            out.add(col)
    fb, ft = base.get("trained_format"), tuned.get("trained_format")
    if ft is not None and ft - (fb or 0) >= 0.25:
        out.add(5)
    return out


class EvalPanel(VerticalScroll):
    DEFAULT_CSS = """
    EvalPanel { height: 1fr; padding: 0 1; }
    EvalPanel #eval-caption { height: auto; color: $text-muted; }
    EvalPanel #eval-progress { height: 1; margin: 0 0; }
    EvalPanel #eval-progress.-hidden { display: none; }
    EvalPanel #eval-verdict { height: auto; margin-top: 1; }
    EvalPanel #eval-verdict.-error { color: $error; }
    EvalPanel #general-caption { height: auto; margin-top: 1; color: $text-muted; }
    EvalPanel #general-verdict { height: auto; }
    EvalPanel #general-verdict.-kept { color: $success; }
    EvalPanel #general-verdict.-dropped { color: $warning; }
    EvalPanel .-no-probe { display: none; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="eval-caption")
        yield ProgressBar(total=100, show_eta=False, id="eval-progress", classes="-hidden")
        yield EvalTable(id="eval-table")
        yield Static("", id="eval-verdict")
        yield Static("", id="general-caption", classes="-no-probe")
        yield ProbeTable(id="general-table", classes="-no-probe")
        yield Static("", id="general-verdict", classes="-no-probe")

    def show_empty(self, text: str) -> None:
        self.query_one("#eval-caption", Static).update(text)
        self.query_one("#eval-progress").add_class("-hidden")
        self.query_one(EvalTable).clear(columns=True)
        self.query_one(EvalTable).display = False
        self._verdict("")
        self.show_general(None)

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
        if is_rewards_result(result):  # GRPO: its own rewards on greedy answers to held-out prompts
            caption = (f"{result.get('scored', 0)} held-out prompts ({result.get('split', 'validation split')}) · "
                       f"rewards {result.get('rewards_text') or ', '.join(result.get('rewards') or [])} · "
                       f"{weights} · {result.get('seconds', 0):.0f} s{when}")
        else:
            caption = (f"{result.get('scored', 0)} examples ({result.get('split', 'validation split')}) · "
                       f"k={result.get('k')} shots · {weights} · {result.get('seconds', 0):.0f} s{when}")
        self.query_one("#eval-caption", Static).update(caption)
        self._verdict(result.get("verdict", ""))
        self.show_general(result.get("general"))

    def show_general(self, general: dict | None) -> None:
        """The general-ability probe's table and verdict (hidden when the evaluation ran without it)."""
        parts = [self.query_one("#general-caption", Static), self.query_one(ProbeTable),
                 self.query_one("#general-verdict", Static)]
        for part in parts:
            part.set_class(not general, "-no-probe")
        if not general:
            return
        parts[0].update(f"General ability (forgetting) · {general.get('n_prompts', 0)} prompts, "
                        f"{general.get('passage_words', 0)} words of text · {general.get('seconds', 0):.0f} s")
        parts[1].show(general)
        state = general.get("state")
        parts[2].set_class(state == "kept", "-kept")
        parts[2].set_class(state in ("dropped", "format"), "-dropped")
        parts[2].update(general.get("verdict", ""))

    def show_error(self, message: str) -> None:
        self.query_one("#eval-progress").add_class("-hidden")
        self._verdict(message, error=True)

    def _verdict(self, text: str, *, error: bool = False) -> None:
        verdict = self.query_one("#eval-verdict", Static)
        verdict.set_class(error, "-error")
        verdict.update(text)
