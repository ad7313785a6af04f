"""Helpers of the Data screen: the warm render child, and a thread that renders only the latest row.

``RenderHelper`` keeps a ``tunedeck data serve`` child (engine/ipc.py's ``Service``): it loads the
model's tokenizer once and then renders any example in milliseconds, where a fresh
``tunedeck data render`` costs seconds of imports. The TUI itself never imports transformers.
The same helper answers the Rewards tab's ``try_rewards`` (the base model samples answers to a few
prompts and the rewards score them), with progress lines on the way (``stream``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from engine.ipc import EngineProcessError, Service

DEMO_GRPO_CONFIG = "demo-grpo.yaml"  # engine/builtin/configs: the demo's GRPO run (json_valid + json_keys)


def demo_rewards() -> list[dict] | None:
    """The rewards of the built-in GRPO demo config (strict JSON with the demo's keys); None if unreadable."""
    import yaml

    from engine.errors import TunedeckError
    from engine.paths import builtin_dir
    from engine.rewards import parse_rewards

    try:
        config = yaml.safe_load((builtin_dir() / "configs" / DEMO_GRPO_CONFIG).read_text(encoding="utf-8"))
        return parse_rewards(config.get("rewards"))
    except (OSError, yaml.YAMLError, AttributeError, TunedeckError):
        return None


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

    def stream(self, payload: dict, on_event: Callable[[dict], None] | None = None,
               timeout: float | None = None) -> dict:
        """Send one request, hand each progress line to ``on_event``, and return the final answer;
        raises EngineProcessError on failure (its one sentence). Blocks."""
        service = self._service
        service.start()
        if not service.wait_ready():
            raise EngineProcessError(service.failure or "the render helper did not start")
        payload = dict(payload)
        op = payload.pop("op")
        answer: dict = {}
        for line in service.events(service.send(op, **payload), timeout=timeout):
            if "ok" in line:
                answer = line
            elif on_event is not None:
                on_event(line)
        if not answer.get("ok"):
            raise EngineProcessError(answer.get("error") or f"the {op} request failed")
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
