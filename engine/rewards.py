"""Reward functions for GRPO (``objective: grpo``): checkers that score sampled answers.

A reward function takes the sampled answers and returns one number per answer, in TRL's reward
signature::

    def my_reward(completions: list[str], **kwargs) -> list[float]: ...

``kwargs`` hold ``prompts`` (each answer's question: the prompt's last user turn, as text),
``reference`` (the row's own answer when the data has one, else None: what ``matches_reference``
compares with) and, for a configured reward, its options. A reward may return ``None`` for an answer
it cannot judge (TRL leaves it out of that reward's mean). Higher is better; the weighted sum of every
reward is an answer's total, and GRPO pushes the model toward the answers whose total beats the other
answers to the same prompt.

The built-ins (``BUILTIN``: name -> ``Builtin`` with a one-line ``help`` the app shows) are plain
functions of that signature; TRL may also call them directly (they accept its conversational
completions, lists of messages, too):

  json_valid         1 when the whole answer is one JSON object, else 0
  json_keys          the share of the wanted ``keys`` in the answer's JSON object, found even in a ```
                     fence or after prose (partial credit; 0 when there is none)
  matches_reference  1 when the answer equals the row's answer (``normalise``: case, spaces, JSON
                     key order ignored), else 0; None when the row has no answer
  regex              1 when ``pattern`` is found in the answer, else 0
  length_penalty     0 up to ``target`` characters, falling to -1 at twice that length

``rewards:`` in a run config (``engine.config``) is a list whose items are a name, or a mapping
``{name, weight?, ...options}``: ``[json_valid, {name: json_keys, keys: [category, priority]}]``; on
the command line and in the form it is one string, items separated by commas, each
``name[:option][@weight]`` (the option is the reward's main one: keys separated by ``|``, the pattern,
the target): ``"json_valid, json_keys:category|priority@2, regex:^\\{"``. ``parse_rewards`` turns
either form into the normal one, ``[{"name", "weight", ...options}]``.

Custom rewards: any other name is a function of the run's ``reward_file``, a Python file of the
user's, loaded (its code run) only when the config names it (``load_reward_file``), with one sentence
for each way it can go wrong: the file is missing, is not valid Python, fails when run, lacks the
function, or the function has the wrong signature. A function may declare its highest score with an
attribute ``max_reward`` (default 1.0), used for the share of answers with full marks.

``Reward`` wraps one configured reward for TRL (``__call__`` in TRL's signature, ``__name__`` the
name TRL logs under ``rewards/<name>/mean``): completions become text, the options are bound, and a
reward that raises or returns the wrong thing raises ``RewardError``, one sentence (the traceback
goes to the worker's log; the run ends ``failed`` with the sentence).

No ML import here: the config validation and the app use this module.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, TunedeckError


class RewardError(TunedeckError):
    """A reward function failed while scoring (one sentence; the traceback is printed to stderr)."""


# --- text of TRL's inputs ------------------------------------------------------------------------
def completion_text(completion) -> str:
    """An answer as text: TRL passes a string, or for chat prompts a list of assistant messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    return str(completion)


def prompt_text(prompt) -> str:
    """A prompt as text: its last user turn (a chat prompt), or the prompt string."""
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        last = users[-1] if users else (prompt[-1] if prompt else {})
        return str(last.get("content") or "") if isinstance(last, dict) else str(last)
    return str(prompt or "")


def _json_object(text: str):
    try:
        value = json.loads(text.strip())
    except (ValueError, TypeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _norm(text: str | None) -> str:
    return " ".join(str(text or "").split()).lower()


# --- the built-ins -------------------------------------------------------------------------------
def json_valid(completions, **kwargs) -> list[float]:
    """1 when the whole answer (trimmed) is one JSON object, else 0."""
    return [1.0 if _json_object(completion_text(c)) is not None else 0.0 for c in completions]


def _json_object_in(text: str):
    """The first JSON object in the answer, even inside a ``` fence or after some prose (partial credit:
    json_valid is the strict one)."""
    from .eval_scores import parse_lenient

    value = parse_lenient(text)
    return value if isinstance(value, dict) else None


def json_keys(completions, keys=(), **kwargs) -> list[float]:
    """The share of ``keys`` the answer's JSON object has, found even inside a ``` fence or after prose
    (0 when there is none)."""
    wanted = list(keys)
    out = []
    for c in completions:
        obj = _json_object_in(completion_text(c))
        out.append(0.0 if obj is None or not wanted else sum(k in obj for k in wanted) / len(wanted))
    return out


def matches_reference(completions, reference=None, normalise=True, **kwargs) -> list[float | None]:
    """1 when the answer equals the row's answer (normalised: case, spaces and JSON key order ignored),
    0 when not, None for a row without an answer."""
    refs = reference if isinstance(reference, (list, tuple)) else [reference] * len(completions)
    out: list[float | None] = []
    for c, ref in zip(completions, refs):
        if ref is None:
            out.append(None)
            continue
        text = completion_text(c)
        if not normalise:
            out.append(1.0 if text.strip() == str(ref).strip() else 0.0)
            continue
        a, b = _json_object(text), _json_object(str(ref))
        if a is not None and b is not None:
            same = json.dumps(a, sort_keys=True).lower() == json.dumps(b, sort_keys=True).lower()
        else:
            same = _norm(text) == _norm(ref)
        out.append(1.0 if same else 0.0)
    return out


def regex(completions, pattern="", **kwargs) -> list[float]:
    """1 when ``pattern`` (a Python regular expression) is found in the answer, else 0."""
    compiled = re.compile(pattern)
    return [1.0 if compiled.search(completion_text(c)) else 0.0 for c in completions]


def length_penalty(completions, target=200, **kwargs) -> list[float]:
    """0 for an answer of at most ``target`` characters, falling linearly to -1 at twice that length."""
    out = []
    for c in completions:
        n = len(completion_text(c).strip())
        out.append(0.0 if n <= target else -min(1.0, (n - target) / target))
    return out


@dataclass(frozen=True)
class Builtin:
    name: str
    help: str  # one line: what it scores
    fn: Callable
    options: dict = field(default_factory=dict)  # option -> (kind: keys|text|bool|int, default or REQUIRED)
    main: str | None = None  # the option the string form's ``name:value`` sets
    low: float = 0.0
    high: float = 1.0  # the highest score (full marks)


REQUIRED = object()
BUILTIN: dict[str, Builtin] = {b.name: b for b in (
    Builtin("json_valid", "1 when the whole answer is one JSON object, else 0", json_valid),
    Builtin("json_keys", "share of the wanted keys in the answer's JSON object, even one inside a ``` fence or after "
            "prose (0 when there is none)", json_keys,
            {"keys": ("keys", REQUIRED)}, "keys"),
    Builtin("matches_reference", "1 when the answer equals the row's answer (case, spaces, JSON key order "
            "ignored), else 0", matches_reference, {"normalise": ("bool", True)}, "normalise"),
    Builtin("regex", "1 when the regular expression `pattern` is found in the answer, else 0", regex,
            {"pattern": ("text", REQUIRED)}, "pattern"),
    Builtin("length_penalty", "0 up to `target` characters (200), falling to -1 at twice that length",
            length_penalty, {"target": ("int", 200)}, "target", low=-1.0, high=0.0),
)}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- the config's forms -------------------------------------------------------------------------
_ITEM_SPLIT = re.compile(r",\s*(?=[A-Za-z_][A-Za-z0-9_]*\s*(?::|@|,|$))")
_WEIGHT = re.compile(r"@\s*(-?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")


def _split_items(text: str) -> list[str]:
    """The string form's items: commas separate them, except inside an option (``regex:a{1,3}``)."""
    return [part.strip() for part in _ITEM_SPLIT.split(text.strip()) if part.strip()]


def _option(builtin: Builtin, key: str, value, where: str):
    kind, _ = builtin.options[key]
    if kind == "keys":
        keys = [k.strip() for k in value.split("|")] if isinstance(value, str) else value
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k.strip() for k in keys):
            raise ConfigError(f"{where}: {builtin.name} needs keys, a list of the JSON keys wanted such as "
                              f"[category, priority] (in one string: json_keys:category|priority), got {value!r}.")
        return [k.strip() for k in keys]
    if kind == "text":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: {builtin.name} needs {key}, a regular expression such as ^\\{{, got {value!r}.")
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(f"{where}: the {builtin.name} pattern {value!r} is not a valid regular expression "
                              f"({exc}); fix it (Python's re syntax).") from None
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.strip().lower() in ("true", "yes", "on")
        raise ConfigError(f"{where}: {builtin.name}'s {key} must be true or false, got {value!r}.")
    if kind == "int":
        number = value
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ConfigError(f"{where}: {builtin.name}'s {key} must be a positive whole number (characters), "
                              f"got {value!r}.")
        return number
    raise AssertionError(kind)  # pragma: no cover


def _weight(value, where: str, name: str) -> float:
    try:
        w = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        w = None
    if w is None or not math.isfinite(w) or w <= 0:
        raise ConfigError(f"{where}: the weight of {name} must be a positive number (how much it counts in the "
                          f"total), got {value!r}.")
    return w


def _spec(item, where: str, n: int) -> dict:
    """One reward, normalised to {name, weight, ...options}."""
    if isinstance(item, str):
        text = item.strip()
        weight = 1.0
        m = _WEIGHT.search(text)
        if m:
            weight, text = m.group(1), text[:m.start()].strip()
        name, _, arg = text.partition(":")
        item = {"name": name.strip(), "weight": weight}
        if _:
            builtin = BUILTIN.get(item["name"])
            if builtin is None or builtin.main is None:
                raise ConfigError(f"{where} item {n}: {item['name']} takes no option, but `{text}` gives one; "
                                  f"write just {item['name']}.")
            item[builtin.main] = arg
    if not isinstance(item, dict):
        raise ConfigError(f"{where} item {n} must be a reward name such as json_valid, or a mapping such as "
                          f"{{name: json_keys, keys: [category]}}, got {item!r}.")
    name = item.get("name")
    if not isinstance(name, str) or not NAME.match(name.strip()):
        raise ConfigError(f"{where} item {n} needs a name: a built-in reward ({', '.join(BUILTIN)}) or a function "
                          f"of reward_file, got {name!r}.")
    name = name.strip()
    out: dict[str, Any] = {"name": name, "weight": _weight(item.get("weight", 1.0), f"{where} item {n}", name)}
    builtin = BUILTIN.get(name)
    options = {k: v for k, v in item.items() if k not in ("name", "weight")}
    if builtin is None:  # a function of reward_file: its options are its keyword arguments
        return {**out, **options}
    for key, value in options.items():
        if key not in builtin.options:
            known = ", ".join(builtin.options) or "none"
            raise ConfigError(f"{where} item {n}: {name} has no option {key!r} (its options: {known}).")
        out[key] = _option(builtin, key, value, f"{where} item {n}")
    for key, (_, default) in builtin.options.items():
        if key not in out:
            if default is REQUIRED:
                example = "json_keys:category|priority" if name == "json_keys" else "regex:^\\{"
                raise ConfigError(f"{where} item {n}: {name} needs its {key} option, e.g. {{name: {name}, {key}: ...}} "
                                  f"(in one string: {example}).")
            out[key] = default
    return out


def parse_rewards(value, where: str = "rewards") -> list[dict] | None:
    """The config's ``rewards`` (a list, or the one-string form) as ``[{name, weight, ...options}]``;
    ConfigError (one sentence naming ``where``) for anything wrong."""
    if value is None:
        return None
    if isinstance(value, str):
        items: list = _split_items(value)
        if not items:
            return None
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, dict):
        items = [value]
    else:
        raise ConfigError(f"{where} must be a list of reward functions such as [json_valid, json_keys], got {value!r}.")
    specs = [_spec(item, where, n) for n, item in enumerate(items, 1)]
    return specs or None


def rewards_text(specs: list[dict] | None) -> str:
    """The one-string form of normalised rewards (what the form and the CLI show and accept)."""
    parts = []
    for spec in specs or []:
        builtin = BUILTIN.get(spec["name"])
        text = spec["name"]
        if builtin is not None and builtin.main is not None:
            value, default = spec.get(builtin.main), builtin.options[builtin.main][1]
            if value is not None and value != default:
                text += ":" + ("|".join(value) if isinstance(value, list) else str(value).lower()
                               if isinstance(value, bool) else str(value))
        if spec.get("weight", 1.0) != 1.0:
            text += f"@{spec['weight']:g}"
        parts.append(text)
    return ", ".join(parts)


def reward_names(specs: list[dict]) -> list[str]:
    """The name each reward is logged under: its own, with _2, _3 ... for a repeated one."""
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        n = seen[spec["name"]] = seen.get(spec["name"], 0) + 1
        out.append(spec["name"] if n == 1 else f"{spec['name']}_{n}")
    return out


# --- custom rewards -------------------------------------------------------------------------------
def load_reward_file(path: str | Path, names: list[str]) -> dict[str, Callable]:
    """{name: function} for ``names`` from the user's Python file at ``path`` (its code runs here);
    ConfigError, one sentence, when the file is missing, not Python, fails when run, or lacks a
    function or gives one the wrong signature."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"reward_file {path} does not exist; check the path (a Python file defining "
                          f"{', '.join(names) or 'your reward functions'}).")
    try:
        source = path.read_text(encoding="utf-8")
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: reward_file is not valid Python ({exc.msg}); fix that line.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read reward_file {path}: {exc}.") from None
    module_name = f"tunedeck_rewards_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_loader(module_name, loader=None, origin=str(path))
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)  # noqa: S102 - the user's own reward file, named in their config
    except Exception as exc:  # noqa: BLE001 - any failure of the user's code is one sentence
        traceback.print_exc()
        raise ConfigError(f"{path}{_user_line(exc, path)}: running reward_file raised {_one_line(exc)}; fix the "
                          "file.") from None
    functions = {k: v for k, v in vars(module).items() if inspect.isfunction(v) and not k.startswith("_")}
    out = {}
    for name in names:
        fn = module.__dict__.get(name)
        if not callable(fn):
            has = ", ".join(sorted(functions)) or "no functions"
            raise ConfigError(f"{path} has no function named {name} (it has {has}); define def {name}(completions, "
                              "**kwargs) -> list[float] or fix the name in rewards.")
        problem = signature_problem(fn)
        if problem:
            raise ConfigError(f"{path}: {name}{problem}; a reward is def {name}(completions, **kwargs) -> list[float].")
        out[name] = fn
    return out


def signature_problem(fn: Callable) -> str | None:
    """Why ``fn`` cannot be called as ``fn(completions=..., prompts=..., reference=..., ...)``, or None."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = sig.parameters.values()
    shown = str(sig)
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        return f"{shown} has no **kwargs to take the other arguments (prompts, reference, ...)"
    takes = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if "completions" not in [p.name for p in takes]:
        return f"{shown} has no parameter named completions"
    required = [p.name for p in takes if p.default is p.empty and p.name not in ("completions", "prompts", "reference")]
    if required:
        return f"{shown} requires {', '.join(required)}, which TRL does not pass"
    return None


def _one_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _user_line(exc: BaseException, path: Path) -> str:
    """``:LINE`` of the deepest frame of the traceback in the user's file, or ""."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return f":{line}" if line else ""


# --- rewards for TRL ------------------------------------------------------------------------------
class Reward:
    """One configured reward, called the way TRL calls reward functions."""

    def __init__(self, name: str, fn: Callable, weight: float, options: dict, *, high: float = 1.0,
                 source: str | None = None) -> None:
        self.__name__ = name
        self.fn, self.weight, self.options, self.high, self.source = fn, weight, options, high, source

    def __repr__(self) -> str:
        return f"Reward({self.__name__}, weight={self.weight:g})"

    def score(self, completions: list[str], prompts: list[str] | None = None,
              reference: list | None = None, **extra) -> list[float | None]:
        """Scores of text answers; RewardError (one sentence) when the function raises or returns the wrong thing."""
        n = len(completions)
        kwargs = {"prompts": prompts if prompts is not None else [""] * n,
                  "reference": reference if reference is not None else [None] * n, **extra, **self.options}
        where = f" ({self.source})" if self.source else ""
        try:
            values = self.fn(completions=list(completions), **kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's code: one sentence, traceback to stderr
            traceback.print_exc()
            line = _user_line(exc, Path(self.source)) if self.source else ""
            raise RewardError(f"The reward {self.__name__}{where} raised {_one_line(exc)}"
                              + (f" at line {line[1:]}" if line else "")
                              + "; fix the function and start again (the traceback is in worker.log).") from None
        try:
            values = list(values)
        except TypeError:
            values = None
        if values is None or len(values) != n:
            got = "nothing" if values is None else f"{len(values)} values"
            raise RewardError(f"The reward {self.__name__}{where} returned {got} for {n} answers; it must return a "
                              "list of one number (or None) per answer.")
        out: list[float | None] = []
        for v in values:
            if v is None:
                out.append(None)
                continue
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise RewardError(f"The reward {self.__name__}{where} returned {v!r} for an answer; each score must be "
                                  "a number (or None when it cannot judge).") from None
            out.append(x)
        return out

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float | None]:
        """TRL's signature: chat completions become text, the prompt its last user turn."""
        texts = [completion_text(c) for c in completions or []]
        questions = [prompt_text(p) for p in prompts] if prompts is not None else None
        kwargs = {k: v for k, v in kwargs.items() if k not in ("trainer_state", "log_extra", "log_metric")}
        return self.score(texts, questions, kwargs.pop("reference", None), **kwargs)


def build(specs: list[dict], reward_file: str | Path | None = None) -> list[Reward]:
    """The configured rewards, ready for TRL (custom ones loaded from ``reward_file``, only if named)."""
    names = reward_names(specs)
    custom = [s["name"] for s in specs if s["name"] not in BUILTIN]
    functions: dict[str, Callable] = {}
    if custom:
        if not reward_file:
            raise ConfigError(f"{custom[0]!r} is not a built-in reward ({', '.join(BUILTIN)}); to use a function of "
                              "your own, set reward_file: to the Python file that defines it.")
        functions = load_reward_file(reward_file, list(dict.fromkeys(custom)))
    out = []
    for spec, name in zip(specs, names):
        options = {k: v for k, v in spec.items() if k not in ("name", "weight")}
        builtin = BUILTIN.get(spec["name"])
        if builtin is not None:
            out.append(Reward(name, builtin.fn, spec["weight"], options, high=builtin.high))
        else:
            fn = functions[spec["name"]]
            high = getattr(fn, "max_reward", 1.0)
            try:
                high = float(high)
            except (TypeError, ValueError):
                high = 1.0
            out.append(Reward(name, fn, spec["weight"], options, high=high, source=str(Path(reward_file).expanduser())))
    return out


def weighted_total(rewards: list[Reward], scores: list[float | None]) -> float:
    """An answer's total: the weighted sum of its scores (a None counts 0, as TRL's nansum does)."""
    return sum(r.weight * s for r, s in zip(rewards, scores) if s is not None and not math.isnan(s))


def full_marks(rewards: list[Reward], scores: list[float | None]) -> bool:
    """The answer reached the highest possible total (every reward at its highest)."""
    best = sum(r.weight * r.high for r in rewards)
    return weighted_total(rewards, scores) >= best - 1e-6


def score_table(rewards: list[Reward], completions: list[str], prompts: list[str] | None = None,
                reference: list | None = None) -> list[dict]:
    """Each answer's {scores: {name: score}, reward: total, full_marks} under every reward."""
    columns = [r.score(completions, prompts, reference) for r in rewards]
    rows = []
    for k in range(len(completions)):
        scores = [col[k] for col in columns]
        rows.append({"scores": {r.__name__: s for r, s in zip(rewards, scores)},
                     "reward": weighted_total(rewards, scores), "full_marks": full_marks(rewards, scores)})
    return rows


def summary(rewards: list[Reward], groups: list[list[dict]]) -> dict:
    """Over groups of scored answers (one group per prompt): each reward's mean and the total's, the share
    of answers with full marks, and ``spread``: the mean within-group standard deviation of the total
    (0: the rewards do not tell the answers to one prompt apart, so GRPO would learn nothing)."""
    flat = [row for group in groups for row in group]
    means: dict[str, float | None] = {}
    for r in rewards:
        values = [row["scores"][r.__name__] for row in flat if row["scores"][r.__name__] is not None]
        means[r.__name__] = sum(values) / len(values) if values else None
    means["total"] = sum(row["reward"] for row in flat) / len(flat) if flat else None
    spreads = []
    for group in groups:
        totals = [row["reward"] for row in group]
        if len(totals) > 1:
            mu = sum(totals) / len(totals)
            spreads.append(math.sqrt(sum((t - mu) ** 2 for t in totals) / len(totals)))
    return {"mean": means, "full_marks": sum(row["full_marks"] for row in flat) / len(flat) if flat else None,
            "spread": sum(spreads) / len(spreads) if spreads else 0.0}


def verdict(result: dict) -> str:
    """One sentence on whether these rewards give GRPO something to learn from."""
    s = result["summary"]
    full, spread = s.get("full_marks") or 0.0, s.get("spread") or 0.0
    if spread < 1e-6:
        if full >= 0.999:
            return ("Every sampled answer already scores full marks: GRPO has nothing left to improve with these "
                    "rewards; make them stricter.")
        return ("The rewards give every answer to a prompt the same score, so GRPO would learn nothing; use rewards "
                "that tell better answers from worse (partial credit such as json_keys), or sample more answers.")
    return (f"The rewards separate the sampled answers (mean spread {spread:.2f} within a prompt; {full:.0%} score full "
            "marks), so GRPO has a signal to learn from.")
