"""Which runs can be chatted with, and the system prompt a run trained with: read from the run
folders, no ML import (the TUI's Chat screen and ``tunedeck chat`` use it)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import runs


@dataclass
class ChatTarget:
    """A run that has something to chat with."""

    run_id: str
    state: str
    model: str | None
    method: str | None
    created: float | None
    final: str | None  # "adapter" | "model" | None
    checkpoints: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        what = self.final or (f"checkpoint-{self.checkpoints[-1]}" if self.checkpoints else "nothing yet")
        return f"{self.run_id} ({self.state}, {what})"


def _target(info: runs.RunInfo) -> ChatTarget | None:
    run = runs.Run(info.dir)
    final = run.final_weights()
    final = final.label if final else None
    cps = [w.step for w in run.checkpoint_weights()]
    if final is None and not cps:
        return None
    return ChatTarget(info.id, info.state, info.model, info.method, info.created, final, cps)


def chat_targets() -> list[ChatTarget]:
    """Runs with an adapter, a full model or a checkpoint to chat with, newest first."""
    out = []
    for info in runs.list_runs():
        target = _target(info)
        if target is not None:
            out.append(target)
    return out


def default_target(targets: list[ChatTarget] | None = None) -> ChatTarget | None:
    """The latest completed run with a final adapter/model; else the latest run with anything."""
    targets = chat_targets() if targets is None else targets
    for t in targets:
        if t.state == "completed" and t.final:
            return t
    return targets[0] if targets else None


def training_system_prompt(run_id: str | None) -> str | None:
    """The system message of the run's first training example (the prompt the model learned with)."""
    if not run_id:
        return None
    try:
        data = runs.get_run(run_id).config().get("data")
        if data in (None, "demo"):
            from .demo import train_file

            path = train_file()
        else:
            path = Path(str(data)).expanduser()
            if path.is_dir() or path.suffix.lower() not in (".jsonl", ".json"):
                return None
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        messages = json.loads(first).get("messages") or []
        if messages and messages[0].get("role") == "system":
            return str(messages[0].get("content") or "") or None
    except Exception:
        return None
    return None
