"""What the user is working on: carried from screen to screen (Data -> Method -> Train -> Chat)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Project:
    model: str = "demo"
    data: str = "demo"
    method: str | None = None  # "lora" | "qlora" | "full", once chosen
    settings: dict = field(default_factory=dict)  # hyper-parameters carried to the Train screen
    run_id: str | None = None  # the run being watched / chatted with
    train_pane: str | None = None  # one-shot: the Train pane to open next ("setup" after Method's choice)

    def take_train_pane(self) -> str | None:
        pane, self.train_pane = self.train_pane, None
        return pane
