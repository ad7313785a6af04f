"""What the user is working on, carried from screen to screen (Data -> Method -> Train -> Chat).

``Project`` is an immutable value held by the app (``TunedeckApp.project``, a reactive). A screen
changes it by assigning a new one (``dataclasses.replace``, or ``AreaScreen.set_project``) on the
UI thread; every area screen watches it and follows (``AreaScreen.project_changed``).

``Architectures`` fetches a model's architecture once per model (a short-lived helper process: it
needs transformers to build the model on the meta device); everything computed from it — memory of
each method, fit, ways to fit — is plain arithmetic in this process (engine.estimate).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from textual.message import Message

from engine import estimate as E


@dataclass(frozen=True)
class Project:
    model: str = "demo"
    data: str = "demo"
    method: str | None = None  # "lora" | "qlora" | "full", once chosen
    settings: Mapping[str, Any] = field(default_factory=dict)  # hyper-parameters carried to the Train screen
    run_id: str | None = None  # the run being watched / chatted with

    def __post_init__(self) -> None:
        # read-only, so that a change always goes through a new Project (and its watchers)
        if not isinstance(self.settings, MappingProxyType):
            object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))


class Architectures:
    """Model architectures by model reference, each fetched once (``get`` blocks: call it from a thread).

    Two screens asking for the same model at once share one helper process."""

    timeout = 300.0

    def __init__(self) -> None:
        self._known: dict[str, E.Architecture] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def known(self, model: str) -> E.Architecture | None:
        return self._known.get(model)

    def fetch_for(self, node, model: str) -> None:
        """Fetch in a daemon thread (quitting the app never waits for the helper) and post an
        ``ArchitectureLoaded`` to ``node``."""

        def fetch() -> None:
            from engine.ipc import EngineProcessError

            try:
                arch, error = self.get(model), None
            except EngineProcessError as exc:
                arch, error = None, str(exc)
            node.post_message(ArchitectureLoaded(model, arch, error))

        threading.Thread(target=fetch, daemon=True, name=f"tunedeck-architecture-{model}").start()

    def get(self, model: str) -> E.Architecture:
        """Raises EngineProcessError (one sentence) when the helper fails."""
        with self._lock:
            if model in self._known:
                return self._known[model]
            lock = self._locks.setdefault(model, threading.Lock())
        with lock:
            if model not in self._known:
                self._known[model] = _fetch(model, self.timeout)
            return self._known[model]


class DataLengths:
    """The token lengths of a data file's rows (engine.estimate.TokenLengths: the longest, and the
    spread), by (model, data, max_length), each measured once (a helper process: it needs the model's
    tokenizer). Memory estimates size the largest batch the run will really see from them, instead of
    assuming every row is max_length long, and judge from the spread whether packing pays."""

    timeout = 600.0

    def __init__(self) -> None:
        self._known: dict[tuple, E.TokenLengths] = {}
        self._failed: dict[tuple, str] = {}
        self._busy: set[tuple] = set()
        self._lock = threading.Lock()

    def known(self, model: str, data: str, max_length: int) -> E.TokenLengths | None:
        return self._known.get((model, data, max_length))

    def failed(self, model: str, data: str, max_length: int) -> str | None:
        return self._failed.get((model, data, max_length))

    def put(self, model: str, data: str, max_length: int, stats: dict) -> None:
        """Lengths measured elsewhere (the Data screen counts every row's tokens anyway): its stats."""
        self._known[(model, data, max_length)] = E.TokenLengths.from_stats(stats)

    def fetch_for(self, node, model: str, data: str, max_length: int) -> None:
        """Measure in a daemon thread (once per key at a time) and post ``LengthsLoaded`` to ``node``."""
        key = (model, data, max_length)
        with self._lock:
            if key in self._busy:
                return
            self._busy.add(key)

        def fetch() -> None:
            from engine.ipc import EngineProcessError, run_json

            try:
                stats = run_json(["data", "stats", data, "--model", model, "--max-length", str(max_length),
                                  "--workers", "1", "--json"], timeout=self.timeout)
                self._known[key] = E.TokenLengths.from_stats(stats)
            except EngineProcessError as exc:
                self._failed[key] = str(exc)
            except Exception as exc:  # noqa: BLE001 - a timeout, no helper process: said, not raised
                self._failed[key] = f"the data helper failed ({exc})"
            finally:
                with self._lock:
                    self._busy.discard(key)
            node.post_message(LengthsLoaded(model, data, max_length))

        threading.Thread(target=fetch, daemon=True, name="tunedeck-data-lengths").start()


class LengthsLoaded(Message, bubble=False):
    """A data file's token lengths are known for this model and max length (or could not be measured)."""

    def __init__(self, model: str, data: str, max_length: int) -> None:
        super().__init__()
        self.model, self.data, self.max_length = model, data, max_length


class ArchitectureLoaded(Message, bubble=False):
    """A model's architecture arrived (``arch``), or why it could not (``error``)."""

    def __init__(self, model: str, arch: E.Architecture | None, error: str | None) -> None:
        super().__init__()
        self.model, self.arch, self.error = model, arch, error


def _fetch(model: str, timeout: float) -> E.Architecture:
    from engine.ipc import EngineProcessError, run_json

    try:
        result = run_json(["estimate", "--model", model, "--method", "lora", "--json"], timeout=timeout)
        return E.Architecture.from_dict(result["architecture"])
    except EngineProcessError:
        raise
    except Exception as exc:  # noqa: BLE001 - a timeout, no helper process: say it plainly
        raise EngineProcessError(f"the estimate helper failed ({exc})") from None
