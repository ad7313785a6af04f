"""The run settings as a form: one line per field (name, value, what it does), checked as you type.

The form only collects values; ``values()`` returns the dict RunConfig.from_dict validates. The
parent marks a field as wrong with ``flag(key)`` (from the ConfigError sentence) and posts nothing
itself except ``ConfigForm.Changed`` after each edit.
"""

from __future__ import annotations

import copy
import re

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from engine.config import FIELDS, Field
from engine.runs import data_label

# The form's fields are the schema's fields that have a label, in the schema's order.
FORM_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.label)


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


def _show(value) -> str:
    if value is None:
        return ""
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
            options = [((spec.choice_labels or {}).get(c, c), c) for c in spec.choices]
            yield Select(options, value=self.value or spec.default, allow_blank=False, compact=True,
                         id=field_id(spec.key))
        else:
            placeholder = "empty" if spec.optional else ""
            yield Input(_show(self.value), placeholder=placeholder, compact=True, id=field_id(spec.key))
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
        self.settings = settings

    def compose(self) -> ComposeResult:
        for spec in FORM_FIELDS:
            row = FieldRow(spec, _get(self.settings, spec.key))
            if spec.lora_only:
                row.add_class("lora-field")
            yield row

    def on_mount(self) -> None:
        self.set_class(self.method == "full", "-full")

    @property
    def method(self) -> str:
        try:
            value = self.query_one(f"#{field_id('method')}", Select).value
        except Exception:
            return str(self.settings.get("method") or "lora")
        return value if isinstance(value, str) else "lora"

    def values(self) -> dict:
        """The settings with the form's values on top, as a RunConfig dict (keys the form does not
        show, e.g. save_steps from the Method screen, are kept; no LoRA block for full fine-tuning)."""
        out: dict = copy.deepcopy(self.settings)
        method = self.method
        if method == "full":
            out.pop("lora", None)
        for spec in FORM_FIELDS:
            if spec.lora_only and method == "full":
                continue
            widget = self.query_one(f"#{field_id(spec.key)}")
            if isinstance(widget, Select):
                value = widget.value if isinstance(widget.value, str) else None
            elif widget.value == _show(_get(self.settings, spec.key)):
                value = _get(self.settings, spec.key)  # unchanged: keep it as it was (a mix stays a mix)
            else:
                value = _parse(widget.value, spec.kind)
            if value is None and not spec.optional:
                value = ""  # the engine's check says which field is empty
            _set(out, spec.key, value)
        return out

    def load(self, settings: dict) -> None:
        """Put new values in the fields (e.g. defaults after the method changed)."""
        self.settings = settings
        for spec in FORM_FIELDS:
            widget = self.query_one(f"#{field_id(spec.key)}")
            value = _get(settings, spec.key)
            with widget.prevent(Input.Changed, Select.Changed):
                if isinstance(widget, Select):
                    if value:
                        widget.value = value
                else:
                    widget.value = _show(value)
        self.set_class(self.method == "full", "-full")

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
        self.set_class(self.method == "full", "-full")
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
