"""RunConfig: what a training run is — model, data, method and hyper-parameters.

Loaded from YAML (``RunConfig.load``) or a dict (``RunConfig.from_dict``); every problem a user can
make (unknown key, wrong type, out-of-range value, both ``max_steps`` and ``epochs``) raises
``engine.errors.ConfigError`` with one sentence that names the file, the line when known, the key,
and what to try. No ML imports here: the TUI builds and validates configs too.

Defaults depend on the method (``RunConfig.defaults_for``): LoRA and QLoRA train a small adapter at a
high learning rate; full fine-tuning trains every weight at a low one.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

METHODS = ("lora", "qlora", "full")
DISTRIBUTED = ("ddp", "fsdp", "deepspeed")  # how several processes share the work (processes > 1)
ALL_LINEAR = "all-linear"

_DEFAULT_LR = {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5}
_DEFAULT_SAVE_STEPS = {"lora": 25, "qlora": 25, "full": 100}
_DEFAULT_GRADIENT_CHECKPOINTING = {"lora": False, "qlora": True, "full": False}


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: list[str] | str = ALL_LINEAR

    def to_dict(self) -> dict:
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout,
                "targets": self.targets if isinstance(self.targets, str) else list(self.targets)}


@dataclass
class RunConfig:
    model: str = "demo"
    data: str = "demo"
    method: str = "lora"
    max_steps: int | None = None
    epochs: float | None = None  # one of max_steps / epochs; epochs=1 when neither is given
    learning_rate: float = 2e-4
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    save_steps: int = 25
    logging_steps: int = 1
    eval_steps: int = 25  # 0: never evaluate
    eval_split: float = 0.1  # fraction held out when the data has no validation split of its own
    eval_data: str | None = None  # a separate validation file (wins over eval_split)
    seed: int = 42
    gradient_checkpointing: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)
    processes: int = 1  # > 1: the worker runs under `accelerate launch`, one process per GPU (CPU: gloo)
    distributed: str = "ddp"  # ddp | fsdp | deepspeed (an accelerate config is written into the run folder)
    accelerate_config: str | None = None  # an accelerate config YAML of your own; wins over `distributed`

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def defaults_for(cls, method: str = "lora") -> "RunConfig":
        if method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
        return cls(
            method=method,
            learning_rate=_DEFAULT_LR[method],
            save_steps=_DEFAULT_SAVE_STEPS[method],
            gradient_checkpointing=_DEFAULT_GRADIENT_CHECKPOINTING[method],
        )

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "config.yaml", *, lines: dict[str, int] | None = None) -> "RunConfig":
        """Validate ``d`` and build a RunConfig; unknown or bad keys raise ConfigError naming them.

        ``lines`` maps a key (``"lora.r"`` for nested ones) to its line in ``source``, for messages.
        """
        lines = lines or {}
        d = {} if d is None else d
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping of keys to values (key: value lines), "
                              f"got {type(d).__name__}.")

        def where(key: str) -> str:
            return f"{source}:{lines[key]}" if key in lines else source

        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise ConfigError(f"{where(str(key))}: unknown key {str(key)!r}{_suggest(str(key), known)}.")

        method = d.get("method", "lora")
        if method not in METHODS:
            raise ConfigError(f"{where('method')}: method must be one of {', '.join(METHODS)}, got {method!r}.")
        cfg = cls.defaults_for(method)

        for key, value in d.items():
            if key == "lora":
                cfg.lora = _lora_from(value, where, source)
                continue
            setattr(cfg, key, _check(key, value, where(key)))

        if cfg.max_steps is not None and cfg.epochs is not None:
            raise ConfigError(f"{where('max_steps')}: give either max_steps or epochs, not both "
                              "(remove one of them).")
        if cfg.max_steps is None and cfg.epochs is None:
            cfg.epochs = 1.0
        if cfg.distributed != "ddp" and cfg.accelerate_config is None:
            if cfg.processes < 2:
                raise ConfigError(f"{where('distributed')}: distributed: {cfg.distributed} shares the work of "
                                  f"several processes, but processes is {cfg.processes}; set processes: 2 or more "
                                  "(one per GPU), or remove distributed.")
            if cfg.method == "qlora":
                raise ConfigError(f"{where('distributed')}: distributed: {cfg.distributed} with method: qlora is "
                                  "not supported by Tunedeck; use distributed: ddp (each process holds the 4-bit "
                                  "model) or method: lora.")
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"Config file {path} does not exist; check the path.") from None
        except OSError as exc:
            raise ConfigError(f"Cannot read config file {path}: {exc.strerror or exc}.") from None
        return cls.from_yaml(text, source=str(path))

    @classmethod
    def from_yaml(cls, text: str, source: str = "config.yaml") -> "RunConfig":
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f"{source}:{mark.line + 1}" if mark is not None else source
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{at}: this is not valid YAML ({problem}); write one `key: value` per line.") from None
        return cls.from_dict(data, source=source, lines=_key_lines(text))

    # --- output ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, LoraSettings) else value
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    # --- derived -----------------------------------------------------------------------------
    @property
    def uses_adapter(self) -> bool:
        return self.method in ("lora", "qlora")

    def override(self, **changes) -> "RunConfig":
        """A copy with ``changes`` applied and validated (``lora_r=8`` style keys set LoRA fields)."""
        d = self.to_dict()
        for key, value in changes.items():
            if value is None:
                continue
            if key.startswith("lora_"):
                d["lora"][key[5:]] = value
            else:
                d[key] = value
        if changes.get("max_steps") is not None and changes.get("epochs") is None:
            d["epochs"] = None
        if changes.get("epochs") is not None and changes.get("max_steps") is None:
            d["max_steps"] = None
        return type(self).from_dict(d, source="command line")


# --- validation helpers ------------------------------------------------------------------------
_INT_MIN = {
    "max_steps": 1, "batch_size": 1, "gradient_accumulation_steps": 1, "max_length": 8, "save_steps": 1,
    "logging_steps": 1, "eval_steps": 0, "seed": 0, "processes": 1,
}
_OPTIONAL = {"max_steps", "epochs", "eval_data", "accelerate_config"}


def _suggest(word: str, options, prefix: str = "") -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {prefix + close[0]!r}?)"
    return f" (known keys: {', '.join(prefix + o for o in sorted(options))})"


def _as_float(value) -> float | None:
    """YAML reads ``2e-4`` (no dot) as a string; accept numbers written that way."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _check(key: str, value, where: str):
    if value is None and key in _OPTIONAL:
        return None
    if key == "distributed":
        if not isinstance(value, str) or value.strip().lower() not in DISTRIBUTED:
            raise ConfigError(f"{where}: distributed must be one of {', '.join(DISTRIBUTED)}, got {value!r}.")
        return value.strip().lower()
    if key in ("model", "data", "method", "eval_data", "accelerate_config"):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: {key} must be a non-empty string, got {value!r}.")
        return value.strip()
    if key in _INT_MIN:
        n = _as_int(value)
        lo = _INT_MIN[key]
        if n is None or n < lo:
            kind = "a positive integer" if lo >= 1 else "an integer >= 0"
            if key == "max_length":
                kind = "an integer >= 8"
            hint = {"eval_steps": " (0 turns evaluation off)",
                    "processes": " (1 trains in one process; 2 or more run under accelerate launch)"}.get(key, "")
            raise ConfigError(f"{where}: {key} must be {kind}{hint}, got {value!r}.")
        return n
    if key == "epochs":
        x = _as_float(value)
        if x is None or not math.isfinite(x) or x <= 0:
            raise ConfigError(f"{where}: epochs must be a positive number (e.g. 1 or 0.5), got {value!r}.")
        return x
    if key == "learning_rate":
        x = _as_float(value)
        if x is None or not math.isfinite(x) or x <= 0:
            raise ConfigError(f"{where}: learning_rate must be a positive number such as 2e-4, got {value!r}.")
        return x
    if key == "eval_split":
        x = _as_float(value)
        if x is None or not 0 <= x < 1:
            raise ConfigError(f"{where}: eval_split must be a fraction from 0 (no evaluation) to below 1, "
                              f"e.g. 0.1, got {value!r}.")
        return x
    if key == "gradient_checkpointing":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.strip().lower() in ("true", "yes", "on")
        raise ConfigError(f"{where}: gradient_checkpointing must be true or false, got {value!r}.")
    raise ConfigError(f"{where}: unknown key {key!r}.")  # pragma: no cover - keys are checked before


def _lora_from(value, where, source: str) -> LoraSettings:
    if value is None:
        return LoraSettings()
    if not isinstance(value, dict):
        raise ConfigError(f"{where('lora')}: lora must be a mapping like `lora: {{r: 16, alpha: 32}}`, "
                          f"got {value!r}.")
    known = {f.name for f in fields(LoraSettings)}
    out = LoraSettings()
    for key, v in value.items():
        k = f"lora.{key}"
        if key not in known:
            raise ConfigError(f"{where(k)}: unknown key {k!r}{_suggest(str(key), known, prefix='lora.')}.")
        if key in ("r", "alpha"):
            n = _as_int(v)
            if n is None or n < 1:
                raise ConfigError(f"{where(k)}: {k} must be a positive integer, got {v!r}.")
            setattr(out, key, n)
        elif key == "dropout":
            x = _as_float(v)
            if x is None or not 0 <= x < 1:
                raise ConfigError(f"{where(k)}: {k} must be a fraction from 0 to below 1, got {v!r}.")
            out.dropout = x
        else:  # targets
            if isinstance(v, str) and v.strip():
                names = [t.strip() for t in v.split(",") if t.strip()]
                out.targets = ALL_LINEAR if names == [ALL_LINEAR] else names
            elif isinstance(v, list) and v and all(isinstance(t, str) and t.strip() for t in v):
                out.targets = [t.strip() for t in v]
            else:
                raise ConfigError(f"{where(k)}: {k} must be \"all-linear\" or a list of module names "
                                  f"such as [q_proj, v_proj], got {v!r}.")
    return out


def _key_lines(text: str) -> dict[str, int]:
    """Line (1-based) of each top-level key and of the keys of nested mappings (``lora.r``)."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                out[k.value] = k.start_mark.line + 1
                if isinstance(v, yaml.MappingNode):
                    for k2, _ in v.value:
                        if isinstance(k2, yaml.ScalarNode):
                            out[f"{k.value}.{k2.value}"] = k2.start_mark.line + 1
    return out
