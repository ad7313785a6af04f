"""Talk to the chat process (engine/chat_server.py) from the TUI or a script. No ML import here.

    client = ChatClient()
    for event in client.load(run="latest"):          # status… then loaded (or error)
        ...
    for event in client.generate(messages, mode="compare"):   # token… end… then done (or error)
        ...
    client.cancel()        # from any thread: stops the generation in progress
    client.restart()       # a fresh process (after a crash); load again
    client.close()

The transport is engine/ipc.py's ``Service``. The calls that return iterators block while they wait
for events: use them from a thread worker. Events keep the chat's vocabulary: every request ends with
a ``type`` of loaded/done/rendered/bye, or ``{"type": "error", "message": one sentence}`` (with
``"crashed": true`` when the process died; the last lines it wrote on stderr are in ``stderr_tail()``).
"""

from __future__ import annotations

from collections.abc import Iterator

from .ipc import Service


class ChatClient(Service):
    def __init__(self, *, python: str | None = None, env: dict | None = None) -> None:
        super().__init__(module="engine.chat_server", python=python, env=env, name="chat process",
                         hint="; restart it and load again.")
        self.current: str | None = None  # the generation in progress, if any
        self.last_load: dict | None = None

    def events(self, rid: str, timeout: float | None = None) -> Iterator[dict]:
        """Events of request ``rid`` until its last one (loaded/done/rendered/bye/error)."""
        for line in super().events(rid, timeout):
            if line.get("ok") is False:  # the framing's failure line, as a chat event
                rest = {k: v for k, v in line.items() if k not in ("ok", "error")}
                line = {**rest, "type": "error", "message": line["error"]}
            yield line

    def load(self, *, run: str | None = None, checkpoint: int | None = None, model: str | None = None,
             timeout: float | None = None) -> Iterator[dict]:
        self.last_load = {"run": run, "checkpoint": checkpoint, "model": model}
        return self.events(self.send("load", run=run, checkpoint=checkpoint, model=model), timeout=timeout)

    def generate(self, messages, *, mode: str = "tuned", timeout: float | None = None, **settings) -> Iterator[dict]:
        """``messages``: a list for every side, or {"base": [...], "tuned": [...]} (each pane its own
        history). ``settings``: max_new_tokens, temperature, top_p, system, min_new_tokens."""
        settings = {k: v for k, v in settings.items() if v is not None}
        rid = self.send("generate", messages=messages, mode=mode, **settings)
        self.current = rid
        return self._generation(rid, timeout)

    def _generation(self, rid: str, timeout: float | None) -> Iterator[dict]:
        try:
            yield from self.events(rid, timeout=timeout)
        finally:
            if self.current == rid:
                self.current = None

    def cancel(self, rid: str | None = None) -> None:
        """Stop the generation ``rid`` (default: the one in progress). Safe from any thread."""
        if self.alive:
            self.notify({"id": None, "op": "cancel", "target": rid or self.current})
