"""Helpers of the Data screen: the warm render child, and a thread that renders only the latest row.

``RenderHelper`` keeps a ``tunedeck data serve`` child (engine/ipc.py's ``Service``): it loads the
model's tokenizer once and then renders any example in milliseconds, where a fresh
``tunedeck data render`` costs seconds of imports. The TUI itself never imports transformers.
"""

from __future__ import annotations

import threading

from engine.ipc import EngineProcessError, Service


class RenderHelper:
    def __init__(self, model: str) -> None:
        self.model = model
        # nice: its start (importing transformers) must not stall the app
        self._service = Service(["data", "serve", "--model", model], nice=True, name="render helper")

    def request(self, payload: dict) -> dict:
        """Send one request and return its answer; raises EngineProcessError on failure. Blocks."""
        service = self._service
        service.start()  # again after a crash
        if not service.wait_ready():
            raise EngineProcessError(service.failure or "the render helper did not start")
        answer = service.request(**payload)
        if not answer.get("ok"):
            raise EngineProcessError(answer.get("error") or "the render helper failed")
        return answer

    def close(self) -> None:
        self._service.close(timeout=0)  # nothing of its state is worth a graceful exit


class LatestOnly:
    """One background thread that runs ``fn`` on the most recent item submitted, dropping the ones
    overtaken while it was busy (holding ↓ down renders only the row it stops on). It does not
    occupy the shared worker pool while it waits for a slow helper."""

    def __init__(self, fn, name: str = "latest-only") -> None:
        self._fn = fn
        self._cond = threading.Condition()
        self._item = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item) -> None:
        with self._cond:
            self._item = item
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._item is None and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                item, self._item = self._item, None
            try:
                self._fn(item)
            except Exception:  # a failed item must not end the thread; fn reports its own errors
                pass
