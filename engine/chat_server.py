"""The chat process: ``python -m engine.chat_server``, a ChatEngine (engine/chat.py) behind a pipe.

It speaks engine/ipc.py's framing (ready line first; each request ends with the line carrying
``ok``); engine/chat_client.py is its client.

Requests ``{"id": "...", "op": ..., ...}``:

    {"op": "load", "run": REF|null, "checkpoint": N|null, "model": REF|null}
        Load the run's base model and attach its weights (``Run.weights(checkpoint)``); ``model``
        when there is no run. A base model already loaded is kept; only the adapter is swapped.
    {"op": "generate", "messages": [...] | {"base": [...], "tuned": [...]}, "mode": "tuned"|"base"|"compare",
     "max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0, "system": TEXT|null, "min_new_tokens": 0}
        Temperature 0 is greedy decoding. ``system`` replaces or adds the system message.
    {"op": "render", "messages": [...], "system": TEXT|null}   the prompt text, through the chat template
    {"id": null, "op": "cancel", "target": ID|null}              stop that generation (read at once; no answer)
    {"op": "shutdown"}                                           (closing stdin does the same)

Lines ``{"id": "...", "type": ...}``; the final one (with ``ok``) is loaded/done/rendered/bye, or
``{"ok": false, "error": "one sentence"}`` (the process stays usable):

    {"type": "status", "message", "fraction"}                 progress while loading
    {"type": "loaded", "ok": true, "model", "model_ref", "run", "checkpoint", "adapter", "sides",
     "template", "device", "seconds"}
    {"type": "token", "side": "base"|"tuned", "text"}         text to append to that side's answer
    {"type": "end", "side", "text", "tokens", "seconds", "tokens_per_second", "first_token_seconds", "stop"}
        that side's answer is over (the other side of a comparison may still be answering); an answer
        that is a tool call in the template's markup also has "tool_calls": [{"name", "arguments"}] and
        "content" (the text around the calls)
    {"type": "done", "ok": true, "tokens", "seconds", "tokens_per_second", "first_token_seconds", "stopped",
     "sides": {side: {"text", "tokens", "seconds", "tokens_per_second", "first_token_seconds", "stop"}}}
        ``stop`` is "eos" (end of turn), "length" (max_new_tokens) or "cancelled".
"""

from __future__ import annotations

import os
import queue
import sys
import threading

from . import ipc
from .chat import ChatEngine, ChatError, Settings, describe_error


class ChatServer:
    def __init__(self, out: ipc.Output) -> None:
        self.out = out
        self.engine = ChatEngine()
        self.requests: queue.Queue = queue.Queue()
        self.current_id = None
        self.cancel = threading.Event()
        self.cancelled: set = set()  # cancelled before they started
        self._lock = threading.Lock()

    def read_requests(self) -> None:
        """On a thread: a cancel takes effect at once; everything else waits its turn."""
        for req in ipc.requests(self.out):
            op = req.get("op")
            if op == "cancel":
                target = req.get("target")
                with self._lock:
                    if target is None or target == self.current_id:
                        self.cancel.set()
                    else:  # not started yet: it will start cancelled
                        self.cancelled.add(target)
                continue
            if op == "shutdown":
                self.cancel.set()
            self.requests.put(req)
        self.cancel.set()
        self.requests.put({"id": None, "op": "shutdown", "eof": True})

    def serve(self) -> int:
        threading.Thread(target=self.read_requests, name="chat-stdin", daemon=True).start()
        while True:
            req = self.requests.get()
            rid, op = req.get("id"), req.get("op")
            if op == "shutdown":
                if not req.get("eof"):
                    self.out.emit({"id": rid, "ok": True, "type": "bye"})
                return 0
            with self._lock:
                self.current_id = rid
                self.cancel = threading.Event()
                if rid in self.cancelled:
                    self.cancelled.discard(rid)
                    self.cancel.set()
            try:
                ipc.answer(self.out, rid, lambda: self.handle(rid, op, req), describe=self._failed)
            finally:
                with self._lock:
                    self.current_id = None

    def handle(self, rid, op, req: dict) -> dict:
        """Do one request, streaming its progress; returns its final line."""
        emit = self.out.emit
        if op == "load":
            checkpoint = req.get("checkpoint")
            if checkpoint is not None:
                try:
                    checkpoint = int(checkpoint)
                except (TypeError, ValueError):
                    raise ChatError(f"checkpoint must be a step number, got {checkpoint!r}.") from None
            info = self.engine.load(
                run=req.get("run"), checkpoint=checkpoint, model=req.get("model"),
                progress=lambda message, fraction=None: emit(
                    {"id": rid, "type": "status", "message": message, "fraction": fraction}),
            )
            return {"type": "loaded", **info}
        if op == "generate":
            result = self.engine.generate(
                req.get("messages") or [], mode=req.get("mode", "tuned"), settings=Settings.from_request(req),
                on_token=lambda side, text: emit({"id": rid, "type": "token", "side": side, "text": text}),
                on_end=lambda side, figures: emit({"id": rid, "type": "end", "side": side, **figures}),
                cancel=self.cancel,
            )
            return {"type": "done", **result}
        if op == "render":
            return {"type": "rendered", "text": self.engine.render(req.get("messages") or [], req.get("system"))}
        raise ChatError(f"Unknown request op {op!r}; use load, generate, render, cancel or shutdown.")

    @staticmethod
    def _failed(exc: BaseException) -> str:
        try:  # what the failed request held (an out-of-memory error leaves a lot)
            import gc

            import torch

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
        return describe_error(exc)


def main() -> int:
    out = ipc.Output()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:  # quiet the libraries' logging and progress bars
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass
    out.ready(type="ready", pid=os.getpid())
    return ChatServer(out).serve()


if __name__ == "__main__":
    sys.exit(main())
