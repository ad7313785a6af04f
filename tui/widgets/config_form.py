"""The run settings as a form: one line per field (name, value, what it does), checked as you type.

The form only collects values; ``values()`` returns the dict RunConfig.from_dict validates. The
parent marks a field as wrong with ``flag(key)`` (from the ConfigError sentence) and posts nothing
itself except ``ConfigForm.Changed`` after each edit.

Defaults depend on the method and the objective (``Field.default_for``): when either changes, every
setting still at the old default takes the new one (a value typed or carried from Method stays).
LoRA's fields are hidden for full fine-tuning, and a setting that only one objective reads shows only
for it (``OBJECTIVE_ONLY``: beta for DPO, KTO and GRPO; answers per prompt and rewards for GRPO).
"""

from __future__ import annotations

import copy
import re

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from engine.config import FIELDS, GENERATING_OBJECTIVES, PREFERENCE_OBJECTIVES, Field
from engine.runs import data_label

# The form's fields are the schema's fields that have a label, in the schema's order.
FORM_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.label)
# The settings only some objectives read: shown (and sent) only for them.
OBJECTIVE_ONLY: dict[str, tuple[str, ...]] = {
    "beta": (*PREFERENCE_OBJECTIVES, *GENERATING_OBJECTIVES),
    "loss_type": PREFERENCE_OBJECTIVES,
    "max_prompt_length": PREFERENCE_OBJECTIVES,
    "max_completion_length": (*PREFERENCE_OBJECTIVES, *GENERATING_OBJECTIVES),
    "num_generations": GENERATING_OBJECTIVES,
    "temperature": GENERATING_OBJECTIVES,
    "rewards": GENERATING_OBJECTIVES,
    "reward_file": GENERATING_OBJECTIVES,
}
ADAPTER_ONLY = ("init_from",)  # starts from an earlier run's adapter: LoRA/QLoRA only


def field_id(key: str) -> str:
    return "field-" + key.replace(".", "-").replace("_", "-")


def _get(settings: dict, key: str):
    value = settings
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _set(settings: dict, key: str, value) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        settings = settings.setdefault(part, {})
    settings[parts[-1]] = value


def rewards_text(rewards: list) -> str:
    """A rewards list in the form's string form: "json_valid, json_keys:category|priority@2"."""
    try:
        from engine.rewards import rewards_text as engine_text
    except ImportError:
        engine_text = None
    if engine_text is not None:
        return engine_text(rewards)
    parts = []
    for entry in rewards:
        if not isinstance(entry, dict):
            parts.append(str(entry))
            continue
        text = str(entry.get("name", ""))
        options = [v for k, v in entry.items() if k not in ("name", "weight")]
        if options:
            option = options[0]
            text += ":" + ("|".join(map(str, option)) if isinstance(option, (list, tuple)) else str(option))
        weight = entry.get("weight")
        if weight not in (None, 1, 1.0):
            text += f"@{weight:g}" if isinstance(weight, (int, float)) else f"@{weight}"
        parts.append(text)
    return ", ".join(parts)


def _show(value, kind: str = "") -> str:
    if value is None:
        return ""
    if kind == "rewards" and isinstance(value, list):
        return rewards_text(value)
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):  # a mix of data sources
        return data_label(value) or ""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def _parse(text: str, kind: str):
    """Numbers become numbers; anything else is passed through as typed so the engine's check names it."""
    text = text.strip()
    if text == "":
        return None
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
                return int(number) if number.is_integer() else number
            except ValueError:
                return text
    if kind in ("float", "fraction"):
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "targets":
        if text == "all-linear":
            return text
        return [t.strip() for t in text.split(",") if t.strip()]
    return text


CHOICE_WIDTH = 15  # what a compact Select 18 cells wide shows of its value


def _choice_label(label: str) -> str:
    """A choice's label as the form shows it: "DPO (chosen / rejected pairs)" is "DPO" when it would be cut
    (the help beside it and the field's explanation say the rest)."""
    return label if len(label) <= CHOICE_WIDTH else label.split(" (")[0]


class FieldRow(Horizontal):
    DEFAULT_CSS = """
    FieldRow { height: 1; margin: 0 0 0 0; }
    FieldRow > Label { width: 18; color: $text; }
    FieldRow > Input, FieldRow > Select { width: 18; }
    FieldRow > .field-help { width: 1fr; color: $text-muted; padding-left: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    FieldRow.-invalid > Label { color: $error; text-style: bold; }
    FieldRow.-invalid > Input { background: $error 25%; }
    """

    def __init__(self, spec: Field, value) -> None:
        super().__init__(id=f"row-{field_id(spec.key)}")
        self.spec = spec
        self.value = value

    def compose(self) -> ComposeResult:
        spec = self.spec
        yield Label(spec.label)
        if spec.kind == "choice":
            options = [(_choice_label((spec.choice_labels or {}).get(c, c)), c) for c in spec.choices]
            yield Select(options, value=self.value or spec.default, allow_blank=False, compact=True,
                         id=field_id(spec.key))
        else:
            placeholder = "empty" if spec.optional else ""
            yield Input(_show(self.value, spec.kind), placeholder=placeholder, compact=True, id=field_id(spec.key))
        yield Static(spec.help, classes="field-help")


class ConfigForm(Vertical):
    DEFAULT_CSS = """
    ConfigForm { height: auto; padding: 0 1; }
    ConfigForm.-full .lora-field { display: none; }
    """

    class Changed(Message):
        """A field was edited; the parent re-validates."""

    class Focused(Message):
        """A field got the focus: the parent can explain it at length."""

        def __init__(self, spec: Field) -> None:
            super().__init__()
            self.spec = spec

    def __init__(self, settings: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.settings = copy.deepcopy(settings)
        self._shape = self._shape_of(self.settings)  # the (method, objective) the defaults shown are for
        self._stashed: dict = {}  # adapter-only settings put aside while the method is full

    def compose(self) -> ComposeResult:
        for spec in FORM_FIELDS:
            row = FieldRow(spec, _get(self.settings, spec.key))
            if spec.lora_only:
                row.add_class("lora-field")
            if spec.key in OBJECTIVE_ONLY:
                row.add_class("objective-field")
            yield row

    def on_mount(self) -> None:
        self._show_classes()

    @staticmethod
    def _shape_of(settings: dict) -> tuple[str, str]:
        return str(settings.get("method") or "lora"), str(settings.get("objective") or "sft")

    def _choice(self, key: str, fallback: str) -> str:
        try:
            value = self.query_one(f"#{field_id(key)}", Select).value
        except Exception:
            return str(self.settings.get(key) or fallback)
        return value if isinstance(value, str) else fallback

    @property
    def method(self) -> str:
        return self._choice("method", "lora")

    @property
    def objective(self) -> str:
        return self._choice("objective", "sft")

    def _show_classes(self) -> None:
        self.set_class(self.method == "full", "-full")
        objective = self.objective
        for row in self.query(FieldRow):
            if row.spec.key in OBJECTIVE_ONLY:
                row.display = objective in OBJECTIVE_ONLY[row.spec.key]

    def _follow_defaults(self) -> None:
        """The method or objective changed: settings still at the old default take the new one."""
        old, new = self._shape, (self.method, self.objective)
        if old == new:
            return
        self._shape = new
        for spec in FIELDS:
            if not isinstance(spec.default, dict):
                continue
            before, after = spec.default_for(*old), spec.default_for(*new)
            if before == after:
                continue
            if spec.label:
                widget = self.query_one(f"#{field_id(spec.key)}")
                if isinstance(widget, Input) and _parse(widget.value, spec.kind) == before:
                    with widget.prevent(Input.Changed):
                        widget.value = _show(after, spec.kind)
            elif _get(self.settings, spec.key) == before:
                _set(self.settings, spec.key, after)
        # an earlier run's adapter cannot start full fine-tuning: put it aside while the method is full
        for key in ADAPTER_ONLY:
            if new[0] == "full" and self.settings.get(key) is not None:
                self._stashed[key] = self.settings.pop(key)
            elif new[0] != "full" and key in self._stashed:
                self.settings[key] = self._stashed.pop(key)

    def values(self) -> dict:
        """The settings with the form's values on top, as a RunConfig dict (keys the form does not
        show, e.g. save_steps from the Method screen, are kept; no LoRA block for full fine-tuning)."""
        out: dict = copy.deepcopy(self.settings)
        method, objective = self.method, self.objective
        if method == "full":
            out.pop("lora", None)
        for spec in FORM_FIELDS:
            if spec.lora_only and method == "full":
                continue
            if spec.key in OBJECTIVE_ONLY and objective not in OBJECTIVE_ONLY[spec.key]:
                self._hidden(out, spec, method, objective)
                continue
            widget = self.query_one(f"#{field_id(spec.key)}")
            if isinstance(widget, Select):
                value = widget.value if isinstance(widget.value, str) else None
            elif widget.value == _show(_get(self.settings, spec.key), spec.kind):
                value = _get(self.settings, spec.key)  # unchanged: keep it as it was (a mix stays a mix)
            else:
                value = _parse(widget.value, spec.kind)
            if value is None and not spec.optional:
                value = ""  # the engine's check says which field is empty
            _set(out, spec.key, value)
        return out

    @staticmethod
    def _hidden(out: dict, spec: Field, method: str, objective: str) -> None:
        """A setting the objective does not read: a value that is some objective's default takes this
        one's (GRPO's beta 0 must not reach DPO); one with no default (rewards) is left out; a value
        typed for it stays (the engine says if it does not apply)."""
        value = _get(out, spec.key)
        if isinstance(spec.default, dict):
            if value in spec.default.values():
                _set(out, spec.key, spec.default_for(method, objective))
        elif spec.default is None and value is not None:
            parts = spec.key.split(".")
            holder = out
            for part in parts[:-1]:
                holder = holder.get(part, {})
            holder.pop(parts[-1], None)

    def load(self, settings: dict) -> None:
        """Put new values in the fields (the project's settings, e.g. carried from Method or Home)."""
        self.settings = copy.deepcopy(settings)
        self._shape = self._shape_of(self.settings)
        self._stashed = {}
        for spec in FORM_FIELDS:
            widget = self.query_one(f"#{field_id(spec.key)}")
            value = _get(settings, spec.key)
            with widget.prevent(Input.Changed, Select.Changed):
                if isinstance(widget, Select):
                    if value:
                        widget.value = value
                else:
                    widget.value = _show(value, spec.kind)
        self._show_classes()

    def flag(self, key: str | None) -> None:
        """Mark the field ``key`` as the wrong one (None: clear)."""
        for row in self.query(FieldRow):
            row.set_class(key is not None and row.spec.key == key, "-invalid")

    def on_descendant_focus(self, event) -> None:
        for node in event.widget.ancestors_with_self:
            if isinstance(node, FieldRow):
                self.post_message(self.Focused(node.spec))
                return

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Changed())

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._follow_defaults()
        self._show_classes()
        self.post_message(self.Changed())


KEYS = {spec.key for spec in FORM_FIELDS}


def field_named(message: str) -> str | None:
    """The form key a ConfigError sentence names ("settings: batch_size must be…" -> "batch_size")."""
    body = message.split(": ", 1)[-1]
    for token in re.findall(r"[A-Za-z_][A-Za-z_.]*", body):
        token = token.strip(".")
        if token in KEYS:
            return token
    return None
