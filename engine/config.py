"""RunConfig: what a training run is — model, data, method and hyper-parameters.

Loaded from YAML (``RunConfig.load``) or a dict (``RunConfig.from_dict``); every problem a user can
make (unknown key, wrong type, out-of-range value, both ``max_steps`` and ``epochs``) raises
``engine.errors.ConfigError`` with one sentence that names the file, the line when known, the key,
and what to try. No ML imports here: the TUI builds and validates configs too.

``FIELDS`` is the one schema of a run's settings: each key's type, default (per method where it
depends on it), bounds, one-line help and glossary term. The YAML validation here, the CLI flags of
``tunedeck train`` and the Train screen's form are all derived from it: a new setting is one
``Field`` here (and its typed attribute on ``RunConfig``/``LoraSettings``).

Defaults depend on the method (``RunConfig.defaults_for``): LoRA and QLoRA train a small adapter at a
high learning rate; full fine-tuning trains every weight at a low one. The objective (sft | dpo |
kto | grpo: what the weights learn from) changes some of them too: preference tuning moves the model a
little away from a reference, at a lower learning rate (a default keyed ``"dpo:lora"`` wins over
``"lora"``); GRPO samples ``num_generations`` answers of at most ``max_completion_length`` tokens per
prompt and learns from ``rewards`` (engine.rewards: built-in checkers, or functions of ``reward_file``),
with TRL's beta 0 (no reference model) and keep: last (its eval loss is no measure of quality).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

DISTRIBUTED = ("ddp", "fsdp", "deepspeed")  # how several processes share the work (processes > 1)
ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class Method:
    id: str
    name: str  # in sentences and as the glossary term: "Training LoRA on 340 examples"
    label: str  # in menus


METHOD_LIST = (
    Method("lora", "LoRA", "LoRA"),
    Method("qlora", "QLoRA", "QLoRA (4-bit base)"),
    Method("full", "full fine-tuning", "Full fine-tuning"),
)
METHODS = tuple(m.id for m in METHOD_LIST)
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio", "none")  # report_to; "none" is dropped
METHOD_NAMES = {m.id: m.name for m in METHOD_LIST}
METHOD_LABELS = {m.id: m.label for m in METHOD_LIST}

# The objective: what the weights learn from (the second axis, beside the method). Each is a TRL
# trainer in the same worker (engine.worker.build_trainer).
OBJECTIVE_LIST = (
    Method("sft", "supervised fine-tuning", "SFT (ideal answers)"),
    Method("dpo", "DPO", "DPO (chosen / rejected pairs)"),
    Method("kto", "KTO", "KTO (answers marked good / bad)"),
    Method("grpo", "GRPO", "GRPO (rewards from a checker)"),
)
OBJECTIVES = tuple(o.id for o in OBJECTIVE_LIST)
OBJECTIVE_NAMES = {o.id: o.name for o in OBJECTIVE_LIST}
OBJECTIVE_LABELS = {o.id: o.label for o in OBJECTIVE_LIST}
PREFERENCE_OBJECTIVES = ("dpo", "kto")  # learn against a reference model
GENERATING_OBJECTIVES = ("grpo",)  # sample answers to prompts and learn from their rewards (engine.rewards)
# TRL 1.16's loss variants (DPOConfig.loss_type / KTOConfig.loss_type; a test checks these against the
# installed TRL). The first of each is the objective's own loss, the default.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
KTO_LOSS_TYPES = ("kto", "apo_zero_unpaired")
LOSS_TYPES = {"dpo": DPO_LOSS_TYPES, "kto": KTO_LOSS_TYPES}


@dataclass(frozen=True)
class Field:
    """One setting of a run. ``kind``: text | path | data | choice | int | float | fraction | bool | targets."""

    key: str  # dotted for nested keys: "lora.r"
    kind: str
    help: str  # one line: --help, the form, the docs
    default: Any = None  # a value, or {method: value} (a key "objective:method" wins, e.g. "dpo:lora")
    minimum: float | None = None  # int: n >= minimum; float: n > minimum
    maximum: float | None = None  # int: n <= maximum
    choices: tuple[str, ...] = ()
    choice_labels: dict[str, str] | None = None  # how a menu shows each choice
    optional: bool = False  # may be empty (None)
    label: str | None = None  # its name in the Train form; None: not in the form
    glossary: str | None = None  # the glossary term that explains it at length
    hint: str = ""  # added to the sentence for a bad value: "(0 turns evaluation off)", "such as 2e-4"
    zero_ok: bool = False  # float: 0 is allowed too (GRPO's beta)

    @property
    def flag(self) -> str:
        return "--" + self.key.replace(".", "-").replace("_", "-")

    @property
    def lora_only(self) -> bool:
        return self.key.startswith("lora.")

    def default_for(self, method: str, objective: str = "sft"):
        if not isinstance(self.default, dict):
            return self.default
        return self.default.get(f"{objective}:{method}", self.default.get(method))

    def parse(self, value, where: str):
        """The checked value, or ConfigError: one sentence naming ``where``, the key and the value."""
        key = self.key
        if value is None and self.optional:
            return None
        if self.kind == "choice":
            if not isinstance(value, str) or value.strip().lower() not in self.choices:
                raise ConfigError(f"{where}: {key} must be one of {', '.join(self.choices)}, got {value!r}.")
            return value.strip().lower()
        if self.kind in ("text", "path") or (self.kind == "data" and not isinstance(value, list)):
            if not isinstance(value, str) or not value.strip():
                if self.kind == "data":
                    raise ConfigError(f"{where}: {key} must be a file, folder, hub id or demo, or a list of them "
                                      f"to mix (each may be {{path: FILE, weight: 0.2}}), got {value!r}.")
                raise ConfigError(f"{where}: {key} must be a non-empty string, got {value!r}.")
            return value.strip()
        if self.kind == "data":
            return _data_sources(value, f"{where}: {key}")
        if self.kind in ("int", "float", "fraction"):
            return self._number(value, where)
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
                return value.strip().lower() in ("true", "yes", "on")
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}.")
        if self.kind == "rewards":
            from .rewards import parse_rewards

            return parse_rewards(value, f"{where}: {key}")
        if self.kind == "trackers":
            names = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else None
            names = [str(n).strip().lower() for n in names if str(n).strip()] if names is not None else None
            if names is None or any(n not in TRACKERS for n in names):
                raise ConfigError(f"{where}: {key} must be a list of {', '.join(TRACKERS[:-1])} (or empty), got {value!r}.")
            return [n for n in dict.fromkeys(names) if n != "none"]
        if self.kind == "targets":
            if isinstance(value, str) and value.strip():
                names = [t.strip() for t in value.split(",") if t.strip()]
                return ALL_LINEAR if names == [ALL_LINEAR] else names
            if isinstance(value, list) and value and all(isinstance(t, str) and t.strip() for t in value):
                return [t.strip() for t in value]
            raise ConfigError(f"{where}: {key} must be \"all-linear\" or a list of module names "
                              f"such as [q_proj, v_proj], got {value!r}.")
        raise AssertionError(f"unknown field kind {self.kind}")  # pragma: no cover

    def _number(self, value, where: str):
        """An int (>= minimum), a positive float, or a fraction in [0, 1), within ``maximum``."""
        lo = self.minimum or 0
        if self.kind == "int":
            x = _as_int(value)
            ok = x is not None and x >= lo
            wanted = ("a positive integer" if lo == 1 else f"an integer >= {lo:g}") + self.hint
        elif self.kind == "fraction":
            x = _as_float(value)
            ok = x is not None and 0 <= x < 1
            wanted = f"a fraction from 0{self.hint} to below 1"
        else:
            x = _as_float(value)
            ok = x is not None and math.isfinite(x) and (x >= lo if self.zero_ok else x > lo)
            wanted = f"{'a number >= 0' if self.zero_ok else 'a positive number'}{self.hint}"
        if not ok:
            raise ConfigError(f"{where}: {self.key} must be {wanted}, got {value!r}.")
        if self.maximum is not None and x > self.maximum:
            raise ConfigError(f"{where}: {self.key} must be at most {self.maximum:,.10g}, got {value!r}.")
        return x


FIELDS: tuple[Field, ...] = (
    Field("model", "path", "Model folder, .gguf file, hub id or demo", "demo", label="Model"),
    Field("data", "data", "JSONL / CSV / Parquet file, hub id or demo (YAML: a list of sources to mix)", "demo",
          label="Data"),
    Field("special_token_text", "choice", "Special-token text in the data: literal text, or the token", "literal",
          choices=("literal", "token")),
    Field("method", "choice", "Adapters (LoRA), on 4 bits (QLoRA), or all", "lora", choices=METHODS,
          choice_labels=METHOD_LABELS, label="Method"),
    Field("objective", "choice", "What it learns from: sft (ideal answers), dpo (chosen/rejected pairs), kto "
          "(answers labelled good/bad), grpo (prompts + reward functions)", "sft", choices=OBJECTIVES, choice_labels=OBJECTIVE_LABELS,
          label="Objective", glossary="preference data"),
    Field("learning_rate", "float", "Update size: LoRA ~2e-4, full ~2e-5 (DPO/KTO: LoRA ~5e-5, full ~5e-7)",
          {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5, "dpo:lora": 5e-5, "dpo:qlora": 5e-5, "dpo:full": 5e-7,
           "kto:lora": 5e-5, "kto:qlora": 5e-5, "kto:full": 5e-7,
           "grpo:lora": 5e-5, "grpo:qlora": 5e-5, "grpo:full": 1e-6},
          label="Learning rate", glossary="learning rate", hint=" such as 2e-4"),
    Field("epochs", "float", "Passes over the data (or set Max steps)", optional=True, maximum=1e6, label="Epochs",
          glossary="epoch", hint=" (e.g. 1 or 0.5)"),
    Field("max_steps", "int", "Stop after this many updates (or Epochs)", minimum=1, maximum=10**9, optional=True,
          label="Max steps", glossary="step"),
    Field("batch_size", "int", "Examples per pass; more needs more memory", 8, minimum=1, maximum=65536, label="Batch size",
          glossary="batch size"),
    Field("gradient_accumulation_steps", "int", "Batches per update (same memory)", 1, minimum=1, maximum=65536,
          label="Grad accumulation", glossary="gradient accumulation"),
    Field("max_length", "int", "Longer examples are cut to this (tokens)", 1024, minimum=8, maximum=1 << 22, label="Max length",
          glossary="max length"),
    Field("save_steps", "int", "Save a checkpoint every N steps", {"lora": 25, "qlora": 25, "full": 100}, minimum=1, maximum=10**9,
          glossary="checkpoint"),
    Field("logging_steps", "int", "Log the loss every N steps", 1, minimum=1, maximum=10**9),
    Field("eval_steps", "int", "Evaluate every N steps (0: never)", 25, minimum=0, maximum=10**9, glossary="eval loss",
          hint=" (0 turns evaluation off)"),
    Field("eval_split", "fraction", "Fraction held out for evaluation when the data has no validation split",
          0.1, glossary="eval loss", hint=" (no evaluation)"),
    Field("eval_data", "path", "A separate validation file (wins over eval_split)", optional=True),
    Field("test_split", "fraction", "Fraction of the training rows kept apart as a test set: no training decision "
          "sees it; tunedeck eval reports on it", 0.0, hint=" (no test set)"),
    Field("test_data", "path", "A separate test file (wins over test_split)", optional=True),
    Field("seed", "int", "Random seed", 42, minimum=0, maximum=2**32 - 1),  # numpy's seeds stop there
    Field("gradient_checkpointing", "bool", "Trade compute for memory", {"lora": False, "qlora": True, "full": False},
          glossary="gradient checkpointing"),
    Field("padding_free", "bool", "No compute on padding: a batch's rows run as one sequence where that is "
          "exact and less work than padding (checked on the model and the data's lengths first)", True,
          glossary="padding-free"),
    Field("group_by_length", "bool", "Batch rows of similar length together (less padding when padded)", False),
    Field("early_stopping_patience", "int", "Stop when eval loss has not improved for N evaluations in a row "
          "(empty: train to the end)", None, minimum=1, maximum=10**6, optional=True, label="Early stop after",
          glossary="early stopping", hint=" such as 3"),
    Field("keep", "choice", "The weights the run ends with: best (lowest eval loss) or last (needs an eval set "
          "for best; GRPO: last)", {"lora": "best", "qlora": "best", "full": "best", "grpo:lora": "last",
                                    "grpo:qlora": "last", "grpo:full": "last"},
          choices=("best", "last"), glossary="early stopping"),
    Field("replay", "fraction", "SFT: share of training rows that are general prompts answered by the base model "
          "itself, against forgetting (0: off; 0.1 is a start)", 0.0, hint=" (off)"),
    Field("liger_kernels", "bool", "GPU, SFT: Liger's fused Triton kernels (off: on an H200 they made LoRA 1.6-2.2x "
          "slower)", False),
    Field("beta", "float", "DPO/KTO: how far it may move from the reference model (higher: less); 0.1 is usual. "
          "GRPO: weight of the KL term, 0 (TRL's default: no reference model) or ~0.04",
          {"lora": 0.1, "qlora": 0.1, "full": 0.1, "grpo:lora": 0.0, "grpo:qlora": 0.0, "grpo:full": 0.0},
          maximum=1e6, label="Beta (DPO/KTO/GRPO)", glossary="beta", hint=" such as 0.1", zero_ok=True),
    Field("loss_type", "choice", "DPO/KTO loss variant (empty: sigmoid for DPO, kto for KTO)", None,
          choices=tuple(dict.fromkeys(DPO_LOSS_TYPES + KTO_LOSS_TYPES)), optional=True, glossary="DPO"),
    Field("max_prompt_length", "int", "DPO/KTO: a longer prompt keeps its last N tokens (empty: max_length only)",
          minimum=1, maximum=1 << 22, optional=True, glossary="max length"),
    Field("max_completion_length", "int", "DPO/KTO: a longer answer is cut to N tokens (empty: max_length only); "
          "GRPO: tokens each sampled answer may have (64)",
          {"lora": None, "qlora": None, "full": None, "grpo:lora": 64, "grpo:qlora": 64, "grpo:full": 64},
          minimum=1, maximum=1 << 22, optional=True, glossary="max length"),
    Field("num_generations", "int", "GRPO: answers sampled per prompt and compared with each other (batch_size "
          "counts answers, so it must be a multiple of this)", 4, minimum=2, maximum=4096, label="Answers/prompt",
          glossary="GRPO", hint=" such as 4"),
    Field("temperature", "float", "GRPO: how freely answers are sampled (1.0, TRL's default; lower keeps them closer "
          "to the model's likeliest answer, so long answers such as a whole JSON object survive more often)",
          {"grpo:lora": 1.0, "grpo:qlora": 1.0, "grpo:full": 1.0}, minimum=0, maximum=10, optional=True,
          label="Temperature", glossary="temperature", hint=" such as 0.7"),
    Field("rewards", "rewards", "GRPO: reward functions, e.g. \"json_valid, json_keys:category|priority, "
          "regex:^\\{\"; name[:option][@weight], built-ins json_valid, json_keys, matches_reference, regex, "
          "length_penalty, or a function of reward_file", None, optional=True, label="Rewards",
          glossary="reward function"),
    Field("reward_file", "path", "GRPO: your Python file of reward functions def f(completions, **kwargs) -> "
          "list[float] (it runs your code; loaded only when named here)", optional=True, glossary="reward function"),
    Field("init_from", "text", "Start from an earlier run's adapter (run id, folder or latest): SFT, then DPO/KTO",
          optional=True, glossary="reference model"),
    Field("lora.r", "int", "Adapter size: 8-32; 16 is a good start", 16, minimum=1, maximum=65536, label="LoRA rank",
          glossary="rank"),
    Field("lora.alpha", "int", "Update scale alpha/rank; usually 2 x rank", 32, minimum=1, maximum=1 << 20, label="LoRA alpha",
          glossary="alpha"),
    Field("lora.dropout", "fraction", "Drops adapter inputs in training; 0-0.1", 0.05, label="LoRA dropout"),
    Field("lora.targets", "targets", "all-linear, or names: q_proj,v_proj", ALL_LINEAR, label="LoRA targets"),
    Field("processes", "int", "Processes to train with, one per GPU (2 or more: accelerate launch; no GPU: CPU gloo)",
          1, minimum=1, maximum=4096, hint=" (1 trains in one process; 2 or more run under accelerate launch)"),
    Field("distributed", "choice", "With several processes: ddp, fsdp or deepspeed", "ddp", choices=DISTRIBUTED),
    Field("accelerate_config", "path", "An accelerate config YAML of your own (wins over distributed)",
          optional=True),
    Field("report_to", "trackers", "Experiment trackers to log to as well: tensorboard (event files in the run "
          "folder), wandb (offline without network), mlflow, trackio; empty: none", [], optional=True),
)
FIELD = {f.key: f for f in FIELDS}


def _d(key: str):
    """A field's default for a dataclass attribute (LoRA's, where it depends on the method)."""
    return field(default_factory=lambda: FIELD[key].default_for("lora"))


@dataclass
class LoraSettings:
    r: int = _d("lora.r")
    alpha: int = _d("lora.alpha")
    dropout: float = _d("lora.dropout")
    targets: list[str] | str = _d("lora.targets")

    def to_dict(self) -> dict:
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout,
                "targets": self.targets if isinstance(self.targets, str) else list(self.targets)}


@dataclass
class RunConfig:
    """A run's settings; see ``FIELDS`` for what each means, its default and its bounds."""

    model: str = _d("model")
    data: str | list[dict] = _d("data")  # one reference, or sources to mix: [{path, weight? | fraction?}]
    special_token_text: str = _d("special_token_text")
    method: str = _d("method")
    objective: str = _d("objective")
    max_steps: int | None = _d("max_steps")
    epochs: float | None = _d("epochs")  # one of max_steps / epochs; epochs=1 when neither is given
    learning_rate: float = _d("learning_rate")
    batch_size: int = _d("batch_size")
    gradient_accumulation_steps: int = _d("gradient_accumulation_steps")
    max_length: int = _d("max_length")
    save_steps: int = _d("save_steps")
    logging_steps: int = _d("logging_steps")
    eval_steps: int = _d("eval_steps")
    eval_split: float = _d("eval_split")
    eval_data: str | None = _d("eval_data")
    test_split: float = _d("test_split")
    test_data: str | None = _d("test_data")
    seed: int = _d("seed")
    gradient_checkpointing: bool = _d("gradient_checkpointing")
    padding_free: bool = _d("padding_free")
    group_by_length: bool = _d("group_by_length")
    early_stopping_patience: int | None = _d("early_stopping_patience")
    keep: str = _d("keep")
    replay: float = _d("replay")
    liger_kernels: bool = _d("liger_kernels")
    beta: float = _d("beta")
    loss_type: str | None = _d("loss_type")
    max_prompt_length: int | None = _d("max_prompt_length")
    max_completion_length: int | None = _d("max_completion_length")
    num_generations: int = _d("num_generations")
    temperature: float | None = _d("temperature")
    rewards: list[dict] | None = _d("rewards")  # engine.rewards: [{name, weight, ...options}]
    reward_file: str | None = _d("reward_file")
    init_from: str | None = _d("init_from")
    lora: LoraSettings = field(default_factory=LoraSettings)
    processes: int = _d("processes")
    distributed: str = _d("distributed")
    accelerate_config: str | None = _d("accelerate_config")
    report_to: list[str] = _d("report_to")  # experiment trackers, TRACKERS

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def defaults_for(cls, method: str = "lora", objective: str = "sft") -> "RunConfig":
        if method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
        if objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}.")
        per_method = {f.key: f.default_for(method, objective) for f in FIELDS
                      if isinstance(f.default, dict) and not f.lora_only}
        return cls(**{**per_method, "method": method, "objective": objective})

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

        method = FIELD["method"].parse(d.get("method", "lora"), where("method"))
        objective = FIELD["objective"].parse(d.get("objective", "sft"), where("objective"))
        cfg = cls.defaults_for(method, objective)

        for key, value in d.items():
            if key == "lora":
                cfg.lora = _lora_from(value, where)
                continue
            setattr(cfg, key, FIELD[key].parse(value, where(key)))

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
        _check_objective(cfg, where)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"Config file {path} does not exist; check the path.") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"Config file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                              f"position {exc.start}); save it as UTF-8.") from None
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

    @property
    def is_preference(self) -> bool:
        """DPO or KTO: learns against a reference model, from judged answers."""
        return self.objective in PREFERENCE_OBJECTIVES

    @property
    def is_grpo(self) -> bool:
        """GRPO: samples answers to prompts and learns from their rewards (engine.rewards)."""
        return self.objective in GENERATING_OBJECTIVES

    @property
    def loss(self) -> str | None:
        """The loss variant this run trains with (the objective's own when ``loss_type`` is empty)."""
        if not self.is_preference:
            return None
        return self.loss_type or LOSS_TYPES[self.objective][0]

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


# Every field of the schema is an attribute and every attribute a field of the schema.
assert {f.key for f in FIELDS} == {f.name for f in fields(RunConfig) if f.name != "lora"} | {
    f"lora.{f.name}" for f in fields(LoraSettings)}, "engine.config: FIELDS and RunConfig disagree"


# --- validation helpers ------------------------------------------------------------------------
def _check_objective(cfg: RunConfig, where) -> None:
    """The settings that only make sense for some objectives, and those an objective needs."""
    name = OBJECTIVE_NAMES[cfg.objective]
    if not cfg.is_preference:
        for key in ("loss_type", "max_prompt_length") + (() if cfg.is_grpo else ("max_completion_length",)):
            if getattr(cfg, key) is not None:
                raise ConfigError(f"{where(key)}: {key} applies to preference tuning (objective: dpo or kto), but "
                                  f"objective is {cfg.objective}; set objective: dpo (or kto), or remove {key}.")
    if cfg.loss_type is not None and cfg.is_preference:
        allowed = LOSS_TYPES[cfg.objective]
        if cfg.loss_type not in allowed:
            other = next(o for o in PREFERENCE_OBJECTIVES if o != cfg.objective)
            raise ConfigError(f"{where('loss_type')}: loss_type {cfg.loss_type} is a {OBJECTIVE_NAMES[other]} loss, "
                              f"not a {name} one; with objective: {cfg.objective} use one of {', '.join(allowed)}.")
        if cfg.loss_type == "exo_pair":
            raise ConfigError(f"{where('loss_type')}: loss_type exo_pair needs label smoothing, which Tunedeck does "
                              "not set; use sigmoid (DPO's own), ipo or robust.")
    if cfg.objective == "kto" and cfg.loss != "apo_zero_unpaired" and cfg.batch_size < 2:
        raise ConfigError(f"{where('batch_size')}: KTO compares each answer with the other answers of its batch "
                          f"(its KL term), so batch_size must be at least 2, got {cfg.batch_size}.")
    _check_grpo(cfg, where)
    if cfg.objective != "sft" and cfg.group_by_length:
        raise ConfigError(f"{where('group_by_length')}: group_by_length works with objective: sft only ({name} keeps "
                          "each batch in data order); remove it.")
    if cfg.max_prompt_length is not None and cfg.max_prompt_length >= cfg.max_length:
        raise ConfigError(f"{where('max_prompt_length')}: max_prompt_length ({cfg.max_prompt_length}) must be below "
                          f"max_length ({cfg.max_length}), or no answer token would be left to train; lower it or "
                          "raise max_length.")
    if cfg.replay and cfg.objective != "sft":
        raise ConfigError(f"{where('replay')}: replay mixes general examples with ideal answers into supervised "
                          f"training, so it works with objective: sft only, not {cfg.objective}; remove replay.")
    if cfg.init_from is not None and not cfg.uses_adapter:
        raise ConfigError(f"{where('init_from')}: init_from starts from an earlier run's LoRA adapter, so method must "
                          f"be lora or qlora, got {cfg.method}; to continue a fully fine-tuned model, set model: to "
                          "its model/ folder.")


def _check_grpo(cfg: RunConfig, where) -> None:
    """GRPO's own settings: rewards to learn from, whole groups of answers per batch; and no rewards elsewhere."""
    if not cfg.is_grpo:
        for key in ("rewards", "reward_file", "temperature"):
            if getattr(cfg, key) is not None:
                raise ConfigError(f"{where(key)}: {key} applies to objective: grpo (learning from reward functions), "
                                  f"but objective is {cfg.objective}; set objective: grpo, or remove {key}.")
        if cfg.beta == 0:
            raise ConfigError(f"{where('beta')}: beta must be above 0 for {OBJECTIVE_NAMES[cfg.objective]} (it scales "
                              "the preference against the reference model), got 0; 0.1 is usual.")
        return
    if not cfg.rewards:
        raise ConfigError(f"{where('objective')}: objective: grpo learns from reward functions, but rewards is empty; "
                          "add e.g. `rewards: [json_valid]` (built-ins: json_valid, json_keys, matches_reference, "
                          "regex, length_penalty).")
    from .rewards import BUILTIN

    custom = [r["name"] for r in cfg.rewards if r["name"] not in BUILTIN]
    if custom and not cfg.reward_file:
        raise ConfigError(f"{where('rewards')}: {custom[0]!r} is not a built-in reward ({', '.join(BUILTIN)}); to use "
                          "a function of your own, set reward_file: to the Python file that defines it.")
    groups = cfg.batch_size * cfg.processes
    if groups % cfg.num_generations:
        better = max(cfg.num_generations, cfg.batch_size // cfg.num_generations * cfg.num_generations)
        raise ConfigError(f"{where('batch_size')}: batch_size ({cfg.batch_size}) counts sampled answers, so it must be "
                          f"a multiple of num_generations ({cfg.num_generations}) for whole groups of answers to one "
                          f"prompt; use batch_size: {better} or change num_generations.")
    if cfg.keep == "best" and cfg.eval_steps:
        raise ConfigError(f"{where('keep')}: keep: best picks the lowest eval loss, which says nothing about a GRPO "
                          "run's quality (its loss is not a score); use keep: last.")
    if cfg.early_stopping_patience is not None:
        raise ConfigError(f"{where('early_stopping_patience')}: early stopping watches the eval loss, which says "
                          "nothing about a GRPO run's quality; remove early_stopping_patience.")
    if cfg.max_completion_length is None:
        cfg.max_completion_length = FIELD["max_completion_length"].default_for(cfg.method, "grpo")
    if cfg.temperature is None:
        cfg.temperature = FIELD["temperature"].default_for(cfg.method, "grpo")
    if cfg.max_completion_length >= cfg.max_length:
        raise ConfigError(f"{where('max_completion_length')}: max_completion_length ({cfg.max_completion_length}) "
                          f"must be below max_length ({cfg.max_length}), which holds the prompt and the answer; lower "
                          "it or raise max_length.")


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


def _data_sources(value: list, where: str) -> list[dict]:
    """``data:`` as a list of sources, each ``{path, weight?}`` or ``{path, fraction?}`` (a plain string
    is ``{path}``): weights are the sources' shares of the mix, given to every source or to none;
    fraction takes that share of one source's rows (engine.data.dataset.mix)."""
    if not value:
        raise ConfigError(f"{where} is an empty list; give at least one file, folder or hub id.")
    out = []
    for n, item in enumerate(value, 1):
        item = {"path": item} if isinstance(item, str) else item
        if not isinstance(item, dict):
            raise ConfigError(f"{where} item {n} must be a file, folder or hub id, or a mapping such as "
                              f"{{path: general.jsonl, weight: 0.1}}, got {item!r}.")
        unknown = [k for k in item if k not in ("path", "weight", "fraction")]
        if unknown:
            raise ConfigError(f"{where} item {n} has the unknown key {str(unknown[0])!r}; a source has path and "
                              "weight or fraction.")
        path = item.get("path")
        if not isinstance(path, str) or not path.strip():
            raise ConfigError(f"{where} item {n} needs a path (a file, folder or hub id), got {path!r}.")
        source = {"path": path.strip()}
        if "weight" in item and "fraction" in item:
            raise ConfigError(f"{where} item {n} has both weight and fraction; give one of them.")
        if "weight" in item:
            w = _as_float(item["weight"])
            if w is None or not math.isfinite(w) or w <= 0:
                raise ConfigError(f"{where} item {n}: weight must be a positive number (its share of the mix), "
                                  f"got {item['weight']!r}.")
            source["weight"] = w
        if "fraction" in item:
            f = _as_float(item["fraction"])
            if f is None or not 0 < f <= 1:
                raise ConfigError(f"{where} item {n}: fraction must be above 0 and at most 1 (the share of its rows "
                                  f"to use), got {item['fraction']!r}.")
            source["fraction"] = f
        out.append(source)
    weighted = ["weight" in s for s in out]
    if any(weighted) and not all(weighted):
        raise ConfigError(f"{where}: give every source a weight (its share of the mix) or none; "
                          f"source {weighted.index(False) + 1} has none.")
    if any(weighted) and any("fraction" in s for s in out):
        raise ConfigError(f"{where}: use weights (shares of the mix) or fractions (shares of each source), not both.")
    return out


def _lora_from(value, where) -> LoraSettings:
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
        setattr(out, key, FIELD[k].parse(v, where(k)))
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


# report_to: the module the trainer's callback imports, and what to install
TRACKER_PACKAGES = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboardX"), "wandb": (("wandb",), "wandb"),
                    "mlflow": (("mlflow",), "mlflow-skinny"), "trackio": (("trackio",), "trackio")}


def trackers(names: list[str]) -> str:
    """Each tracker's package is importable, or one sentence with the pip command."""
    import importlib.util

    missing = [n for n in names if n in TRACKER_PACKAGES
               and not any(importlib.util.find_spec(m) for m in TRACKER_PACKAGES[n][0])]
    if missing:
        pip = " ".join(TRACKER_PACKAGES[n][1] for n in missing)
        raise ConfigError(f"report_to: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; "
                            f"run: pip install {pip} (or remove {'it' if len(missing) == 1 else 'them'} from report_to).")
    return f"trackers {', '.join(names)} installed"
