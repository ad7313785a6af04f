"""The chat engine: a base model loaded once, a run's adapter attached, answers streamed token by token.

``ChatEngine`` runs in-process: the CLI (``tunedeck chat``) uses it directly, and the chat process
(engine/chat_server.py, which the TUI talks to through engine/chat_client.py) wraps it. Heavy
libraries are imported inside the methods that need them.

Loading: the run's base model (config.yaml ``model:``, or ``model`` when there is no run) and the
weights ``Run.weights(checkpoint)`` finds: an adapter is attached, a full fine-tune loaded beside the
base. A base model already loaded is kept; only the adapter is swapped.

Compare mode answers with the base and the fine-tuned model in ONE batched generation: PEFT runs
each row of a batch with its own adapter (``adapter_names=["__base__", name]``), so every decoding
step reads the weights once for both answers and both panes grow token by token together. On a
2-core CPU that costs little more than one answer (the step is memory-bound), where two processes
would load the model twice and fight over the two cores, and two threads would contend for the same
torch thread pool and the GIL. Full fine-tunes (two separate models) answer one after the other.

The chat template is the one saved with the run's adapter (the one training rendered with); a run
without tokenizer files falls back to the base tokenizer's, or to the built-in ChatML template.

Tool calls: when an answer is a tool call in the template's own markup (``<tool_call>{...}</tool_call>``
for Qwen-style templates), its end carries ``tool_calls`` ([{"name", "arguments"}]) and ``content``
(the text around the calls). Where transformers has a response template (the tokenizer's own, or
the one its server keeps for the model family, e.g. Qwen), ``parse_response`` reads the answer;
otherwise the markup is learned from the chat template itself (``tool_call_markup`` renders a probe
call) and ``parse_tool_calls`` reads what the model wrote. Anything that does not parse stays text.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import TunedeckError

SIDES = ("base", "tuned")
DEFAULTS = {"max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0, "min_new_tokens": 0}
# End-of-turn tokens of common chat templates; a model's template may end turns with one of these
# even when its tokenizer's eos_token is something else (e.g. Llama 3's <|eot_id|>).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>")


class ChatError(TunedeckError):
    pass


@dataclass
class Settings:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    min_new_tokens: int = 0
    system: str | None = None

    @classmethod
    def from_request(cls, req: dict) -> "Settings":
        def number(key, kind, low, high):
            value = req.get(key, DEFAULTS[key])
            try:
                value = kind(value)
            except (TypeError, ValueError):
                raise ChatError(f"Chat setting {key} must be a number, got {value!r}.") from None
            if not low <= value <= high:
                raise ChatError(f"Chat setting {key} must be between {low} and {high}, got {value}.")
            return value

        return cls(
            max_new_tokens=number("max_new_tokens", int, 1, 32768),
            temperature=number("temperature", float, 0.0, 5.0),
            top_p=number("top_p", float, 0.01, 1.0),
            min_new_tokens=number("min_new_tokens", int, 0, 32768),
            system=req.get("system") or None,
        )


# --------------------------------------------------------------------------------------------------
# Tool calls in generated text

_PROBE_NAME, _PROBE_VALUE = "tunedeck_probe_tool", "tunedeck-probe-value"
_PROBE_TOOLS = [{"type": "function", "function": {
    "name": _PROBE_NAME, "description": "Looks something up.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]
_PROBE_PROMPT = [{"role": "user", "content": "Look it up."}]
_PROBE_CALL = {"role": "assistant", "content": "", "tool_calls": [{
    "id": "a1b2c3d4e", "type": "function", "function": {"name": _PROBE_NAME, "arguments": {"query": _PROBE_VALUE}}}]}


@dataclass(frozen=True)
class ToolMarkup:
    """How a chat template writes a tool call: ``open`` before the call's JSON ("" when the call is
    bare JSON), ``close`` after it (may be ""); ``listed``: the calls are a JSON list after ``open``."""

    open: str
    close: str = ""
    listed: bool = False


def tool_call_markup(tokenizer, end_tokens=END_OF_TURN_TOKENS) -> ToolMarkup | None:
    """The markup this tokenizer's chat template wraps a tool call in, found by rendering a probe call
    after a prompt; None when the template does not render tool calls as JSON."""
    try:
        prompt = tokenizer.apply_chat_template(_PROBE_PROMPT, tools=_PROBE_TOOLS, tokenize=False,
                                               add_generation_prompt=True)
        full = tokenizer.apply_chat_template([*_PROBE_PROMPT, _PROBE_CALL], tools=_PROBE_TOOLS, tokenize=False)
    except Exception:  # a template raises what it likes
        return None
    common = 0
    while common < min(len(prompt), len(full)) and prompt[common] == full[common]:
        common += 1
    answer = full[common:]
    at = answer.find(f'"{_PROBE_NAME}"')
    brace = answer.rfind("{", 0, at) if at >= 0 else -1
    if brace < 0:
        return None
    try:
        call, end = json.JSONDecoder().raw_decode(answer, brace)
    except ValueError:
        return None
    if _call(call) is None:
        return None
    opening = answer[:brace].strip()
    listed = opening.endswith("[")
    if listed:
        opening = opening[:-1].strip()
        rest = answer[end:].lstrip()
        end += len(answer[end:]) - len(rest)
        end += 1 if rest.startswith("]") else 0
    closing = answer[end:]
    for token in (*end_tokens, getattr(tokenizer, "eos_token", None)):
        cut = closing.find(token) if token else -1
        if cut >= 0:
            closing = closing[:cut]
    return ToolMarkup(opening, closing.strip(), listed)


def _call(value) -> dict | None:
    """{"name", "arguments"} from a call as templates and models write it, or None."""
    if not isinstance(value, dict):
        return None
    fn = value.get("function") if isinstance(value.get("function"), dict) else value
    name = fn.get("name")
    args = fn.get("arguments", fn.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            pass  # shown as the model wrote it
    if not isinstance(name, str) or not name.strip():
        return None
    return {"name": name, "arguments": args}


def parse_tool_calls(text: str, markup: ToolMarkup | None) -> dict | None:
    """``{"content", "tool_calls": [{"name", "arguments"}]}`` when ``text`` (what the model wrote)
    holds tool calls in ``markup``; None when it holds none, or something that does not parse."""
    if markup is None:
        return None
    decoder = json.JSONDecoder()
    calls: list[dict] = []
    kept: list[str] = []
    if not markup.open:  # the call is the whole answer, as bare JSON
        stripped = text.strip()
        try:
            value, end = decoder.raw_decode(stripped)
        except ValueError:
            return None
        values = value if isinstance(value, list) else [value]
        found = [_call(v) for v in values]
        if end != len(stripped) or not found or None in found or not all(
                isinstance(v, dict) and set(v) <= {"name", "arguments", "parameters", "id", "type", "function"}
                for v in values):
            return None
        return {"content": "", "tool_calls": found}
    at = 0
    while True:
        start = text.find(markup.open, at)
        if start < 0:
            kept.append(text[at:])
            break
        kept.append(text[at:start])
        pos = start + len(markup.open)
        while pos < len(text) and text[pos].isspace():
            pos += 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return None  # markup without a call after it: leave the answer as text
        values = value if isinstance(value, list) else [value]
        found = [_call(v) for v in values]
        if not found or None in found:
            return None
        calls += found
        rest = text[pos:]
        if markup.close and rest.lstrip().startswith(markup.close):
            pos += len(rest) - len(rest.lstrip()) + len(markup.close)
        at = pos
    if not calls:
        return None
    return {"content": "".join(kept).strip(), "tool_calls": calls}


@dataclass
class SideResult:
    text: str = ""
    tokens: int = 0
    seconds: float = 0.0
    first_token_seconds: float | None = None
    stop: str = "length"
    dropped_turns: int = 0  # oldest exchanges left out to fit the context
    ids: list[int] = field(default_factory=list)
    tool_calls: list[dict] | None = None  # the answer's tool calls, parsed ([{"name", "arguments"}])
    content: str | None = None  # the answer without them

    def to_dict(self) -> dict:
        tps = self.tokens / self.seconds if self.seconds > 0 else 0.0
        calls = {"tool_calls": self.tool_calls, "content": self.content or ""} if self.tool_calls else {}
        return {
            **calls,
            "text": self.text,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_second": round(tps, 2),
            "first_token_seconds": None if self.first_token_seconds is None else round(self.first_token_seconds, 3),
            "stop": self.stop,
            "dropped_turns": self.dropped_turns,
        }


def describe_error(exc: BaseException) -> str:
    """One sentence for the user; the traceback goes to stderr only."""
    if isinstance(exc, TunedeckError):
        return str(exc)
    text = str(exc)
    name = type(exc).__name__
    if name == "OutOfMemoryError" or "out of memory" in text.lower() or "can't allocate memory" in text:
        return (
            "Out of memory while chatting; lower max new tokens, clear the conversation, "
            "or stop other programs using the GPU, then try again."
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"The chat process failed: {name}{': ' + first if first else ''}."


def _has_tokenizer(path: Path | None) -> bool:
    return path is not None and (path / "tokenizer_config.json").is_file()


# --------------------------------------------------------------------------------------------------
# The engine


class ChatEngine:
    def __init__(self, device: str | None = None) -> None:
        self.device_request = device or os.environ.get("TUNEDECK_CHAT_DEVICE") or None
        self.device = None
        self.model_ref: str | None = None
        self.model_display: str | None = None
        self.base = None  # the base model (PEFT layers injected in place when an adapter is attached)
        self.peft = None  # PeftModel wrapping self.base, or None
        self.full = None  # a fully fine-tuned model, or None
        self.adapter_name: str | None = None
        self.base_tokenizer = None
        self.tokenizer = None
        self.template = "model"
        self.run_id: str | None = None
        self.label: str | None = None  # "adapter" | "checkpoint-N" | "model" | None
        self.eos_ids: set[int] = set()
        self.tool_markup: ToolMarkup | None = None  # how the template writes a tool call
        self.response_template: dict | None = None  # transformers' parser spec for this model family
        self._adapters_made = 0
        self.threads: int | None = None

    # --- loading -------------------------------------------------------------------------------
    @property
    def has_tuned(self) -> bool:
        return self.peft is not None or self.full is not None

    def sides(self) -> list[str]:
        return ["base", "tuned"] if self.has_tuned else ["base"]

    def _pick_device(self):
        import torch

        if self.device_request:
            return torch.device(self.device_request)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def _dtype(self):
        import torch

        if self.device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    def load(self, *, run: str | None = None, checkpoint: int | None = None, model: str | None = None,
             progress: Callable[[str, float | None], None] | None = None, warmup: bool = True) -> dict:
        from . import models, runs

        say = progress or (lambda message, fraction=None: None)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        mark = [started]

        def lap(name: str) -> None:
            now = time.perf_counter()
            timings[name] = round(now - mark[0], 3)
            mark[0] = now

        run_obj = runs.get_run(run) if run else None
        kind, path, label = (None, None, None)
        if run_obj is not None:
            weights = run_obj.weights(checkpoint)
            kind, path, label = weights.kind, weights.path, weights.label
            model = model or run_obj.config().get("model")
            if not model:
                raise ChatError(f"{run_obj.config_path}: no 'model:' key, so the base model is unknown.")
        model = model or "demo"
        src = models.resolve(model)
        if self.model_ref != model or self.base is None:
            self._unload_all()
            say(f"Loading {src.display}…", None)
            import peft  # noqa: F401 - timed apart: the first load pays for importing the libraries
            import torch  # noqa: F401
            import transformers  # noqa: F401
            from transformers import AutoModelForCausalLM  # noqa: F401

            lap("imports")
            self.device = self._pick_device()
            base, tokenizer = models.load_model(model, dtype=self._dtype(), progress=say)
            base.to(self.device).eval()
            self.base, self.base_tokenizer = base, tokenizer
            self.model_ref, self.model_display = model, src.display
            lap("base")
        self._detach()
        self.run_id = self.label = None
        try:
            if kind == "adapter":
                say(f"Attaching {label} of run {run_obj.id}…", None)
                self._attach_adapter(path)
            elif kind == "full":
                say(f"Loading the fine-tuned model {label} of run {run_obj.id}…", None)
                from transformers import AutoModelForCausalLM

                self.full = AutoModelForCausalLM.from_pretrained(
                    str(path), dtype=self._dtype(), trust_remote_code=False
                ).to(self.device).eval()
            self._choose_tokenizer(path)
            lap("adapter" if kind else "tokenizer")
        except BaseException:
            self._detach()  # what stays loaded is the base model alone, with its own template
            self._choose_tokenizer(None)
            raise
        self.run_id = run_obj.id if run_obj else None
        self.label = label
        if warmup:
            say("Warming up…", None)
            self._warmup()
            lap("warmup")
        return {
            "model": self.model_display,
            "model_ref": self.model_ref,
            "run": self.run_id,
            "checkpoint": label,
            "adapter": kind,
            "sides": self.sides(),
            "template": self.template,
            "device": str(self.device),
            "seconds": round(time.perf_counter() - started, 3),
            "timings": timings,
        }

    def _unload_all(self) -> None:
        self.base = self.peft = self.full = None
        self.adapter_name = None
        self.model_ref = None
        try:
            import gc

            import torch

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass

    def _detach(self) -> None:
        if self.peft is not None:
            self.base = self.peft.unload()  # removes the LoRA layers (nothing merged)
            self.peft = None
            self.adapter_name = None
        self.full = None

    def _attach_adapter(self, path: Path) -> None:
        from peft import PeftModel

        self._adapters_made += 1
        name = f"tuned{self._adapters_made}"
        try:
            self.peft = PeftModel.from_pretrained(self.base, str(path), adapter_name=name, is_trainable=False)
        except Exception as exc:
            raise ChatError(
                f"Could not attach the adapter in {path} to {self.model_display}: {str(exc).splitlines()[0]}; "
                "was it trained on this base model?"
            ) from None
        self.peft.to(self.device).eval()
        self.adapter_name = name

    def _choose_tokenizer(self, tuned_path: Path | None) -> None:
        from transformers import AutoTokenizer

        from .data.encode import ensure_chat_template

        tokenizer = None
        if _has_tokenizer(tuned_path):
            tokenizer = AutoTokenizer.from_pretrained(str(tuned_path), trust_remote_code=False)
            if not getattr(tokenizer, "chat_template", None):
                tokenizer = None
        if tokenizer is not None:
            self.template = "run"
        else:
            tokenizer = self.base_tokenizer
            self.template = "model" if getattr(tokenizer, "chat_template", None) else "fallback"
            ensure_chat_template(tokenizer)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.eos_ids = self._end_of_turn_ids()
        self.tool_markup = tool_call_markup(tokenizer)
        self.response_template = self._known_response_template()

    def _known_response_template(self) -> dict | None:
        """transformers' response template for this model family when the tokenizer ships none (the
        one its own server parses replies with), or None."""
        try:
            from transformers.cli.serving.utils import get_response_template

            return get_response_template(self.tokenizer, self.base)
        except Exception:  # an older or newer transformers without it: the template's markup is used
            return None

    def tool_calls_of(self, ids: list[int], prompt_ids: list[int]) -> dict | None:
        """The tool calls of an answer (token ids after the prompt): {"content", "tool_calls"}, or None.
        transformers' ``parse_response`` when there is a response template for this tokenizer, else
        the markup the chat template writes calls in."""
        tok = self.tokenizer
        try:
            text = tok.decode(ids, skip_special_tokens=False)
        except Exception:
            return None
        schema = getattr(tok, "response_template", None) or self.response_template
        if schema is not None and hasattr(tok, "parse_response"):
            try:
                message = tok.parse_response(text, schema, prefix=tok.decode(prompt_ids, skip_special_tokens=False))
            except Exception:  # a reply the parser cannot read: try the template's markup
                message = None
            if isinstance(message, dict):
                calls = [c for c in map(_call, message.get("tool_calls") or []) if c is not None]
                content = message.get("content")
                return {"content": content.strip() if isinstance(content, str) else "", "tool_calls": calls} \
                    if calls else None
        try:
            return parse_tool_calls(text, self.tool_markup)
        except Exception:  # a reply that does not parse is shown as the text it is
            return None

    def _end_of_turn_ids(self) -> set[int]:
        tok = self.tokenizer
        ids: set[int] = set()
        if tok.eos_token_id is not None:
            ids.add(int(tok.eos_token_id))
        gen_eos = getattr(getattr(self.base, "generation_config", None), "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif isinstance(gen_eos, (list, tuple)):
            ids.update(int(i) for i in gen_eos)
        # The token the template closes an assistant turn with.
        try:
            rendered = tok.apply_chat_template(
                [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], tokenize=False
            )
        except Exception:
            rendered = ""
        vocab = tok.get_vocab()
        for text in END_OF_TURN_TOKENS:
            if text in rendered and text in vocab:
                ids.add(int(vocab[text]))
        return ids

    def _warmup(self) -> None:
        """One tiny generation so the first real answer does not pay for lazy initialisation."""
        try:
            self.generate([{"role": "user", "content": "Hi"}], mode="compare" if self.has_tuned else "base",
                          settings=Settings(max_new_tokens=2))
        except Exception:
            pass

    # --- prompts -------------------------------------------------------------------------------
    def _with_system(self, messages: list[dict], system: str | None) -> list[dict]:
        clean = [{"role": m["role"], "content": m["content"]} for m in messages]
        if system:
            if clean and clean[0]["role"] == "system":
                clean[0] = {"role": "system", "content": system}
            else:
                clean.insert(0, {"role": "system", "content": system})
        return clean

    def render(self, messages: list[dict], system: str | None = None) -> str:
        """The prompt exactly as the model sees it: the run's chat template, generation prompt added."""
        self._need_loaded()
        try:
            return self.tokenizer.apply_chat_template(
                self._with_system(messages, system), tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:
            raise ChatError(f"The chat template could not render this conversation: {exc}.") from None

    def encode(self, messages: list[dict], system: str | None = None) -> list[int]:
        # Rendered to text then tokenised without extra special tokens: the same path training used
        # (engine.data.encode), so the model sees the same token sequence it was trained on.
        text = self.render(messages, system)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _need_loaded(self) -> None:
        if self.tokenizer is None or self.base is None:
            raise ChatError("No model is loaded yet; send a load request first.")

    # --- logits (tests and diagnostics) ---------------------------------------------------------
    def next_token_logits(self, messages: list[dict], *, adapter: bool, system: str | None = None):
        import torch

        ids = torch.tensor([self.encode(messages, system)], device=self.device)
        with torch.inference_mode():
            if adapter:
                model = self._tuned_model()
                return model(input_ids=ids).logits[0, -1].float().cpu()
            with self._base_context() as model:
                return model(input_ids=ids).logits[0, -1].float().cpu()

    def _tuned_model(self):
        if self.full is not None:
            return self.full
        if self.peft is not None:
            return self.peft
        raise ChatError("No fine-tuned adapter is loaded; pick a run with an adapter, or chat with the base model.")

    def _base_context(self):
        from contextlib import contextmanager

        @contextmanager
        def ctx():
            if self.peft is not None:
                with self.peft.disable_adapter():
                    yield self.peft
            else:
                yield self.base

        return ctx()

    # --- generation ----------------------------------------------------------------------------
    def generate(self, messages, *, mode: str = "tuned", settings: Settings | None = None,
                 on_token: Callable[[str, str], None] | None = None, cancel: threading.Event | None = None,
                 on_end: Callable[[str, dict], None] | None = None) -> dict:
        """Answer ``messages`` (a list, or {side: list}) with the sides of ``mode``; stream via on_token;
        ``on_end(side, figures)`` as soon as a side's answer is over (in compare mode one side often
        ends its turn well before the other)."""
        self._need_loaded()
        settings = settings or Settings()
        if mode not in ("tuned", "base", "compare"):
            raise ChatError(f"Unknown chat mode {mode!r}; use tuned, base or compare.")
        sides = ["base", "tuned"] if mode == "compare" else [mode]
        if "tuned" in sides and not self.has_tuned:
            raise ChatError("No fine-tuned adapter is loaded; pick a run with an adapter, or chat with the base model.")
        per_side = {s: messages.get(s, []) if isinstance(messages, dict) else messages for s in sides}
        for side, msgs in per_side.items():
            if not msgs or not isinstance(msgs, list):
                raise ChatError(f"Nothing to answer for {side}: the request has no messages.")
        limit = getattr(self.base.config, "max_position_embeddings", None) or 0
        prompts, dropped = {}, {}
        for side in sides:
            prompts[side], dropped[side] = self._fit(per_side[side], settings, limit)
        if limit:  # what is left of the context after the longest prompt
            room = limit - max(len(ids) for ids in prompts.values())
            if room < settings.max_new_tokens:
                settings = dataclasses.replace(settings, max_new_tokens=room,
                                               min_new_tokens=min(settings.min_new_tokens, room))
        cancel = cancel or threading.Event()
        emit = on_token or (lambda side, text: None)
        ended = on_end or (lambda side, figures: None)
        results = {s: SideResult(dropped_turns=dropped[s]) for s in sides}
        started = time.perf_counter()
        if self.full is not None and len(sides) == 2:
            # Two different models cannot share a batch: answer one after the other.
            for side in sides:
                self._run([side], prompts, settings, results, emit, ended, cancel)
        else:
            self._run(sides, prompts, settings, results, emit, ended, cancel)
        total_tokens = sum(r.tokens for r in results.values())
        threads = self.threads
        seconds = time.perf_counter() - started
        firsts = [r.first_token_seconds for r in results.values() if r.first_token_seconds is not None]
        return {
            "tokens": total_tokens,
            "seconds": round(seconds, 3),
            "tokens_per_second": round(total_tokens / seconds, 2) if seconds > 0 else 0.0,
            "first_token_seconds": round(min(firsts), 3) if firsts else None,
            "stopped": "cancelled" if any(r.stop == "cancelled" for r in results.values()) else
            ("length" if any(r.stop == "length" for r in results.values()) else "eos"),
            "sides": {s: r.to_dict() for s, r in results.items()},
            "threads": threads,
        }

    @staticmethod
    def _cpu_threads() -> int:
        """How many threads to decode with on the CPU: every core when the machine is idle, fewer when
        other processes are running (a training worker, say). Decoding a small model is a long chain
        of short parallel regions; with more threads than free cores each region waits for a
        descheduled thread, and decoding gets several times slower than with one thread (measured
        here: 8 tok/s with 1 thread against 1.5 with 2, while other processes kept the cores busy).
        TUNEDECK_CHAT_THREADS forces a number."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        forced = os.environ.get("TUNEDECK_CHAT_THREADS", "").strip()
        if forced.isdigit() and int(forced) > 0:
            return min(int(forced), cores)
        samples = []
        try:
            for _ in range(3):
                with open("/proc/loadavg", encoding="ascii") as f:
                    running = int(f.read().split()[3].split("/")[0])
                samples.append(max(0, running - 1))  # this thread is one of them
                time.sleep(0.003)
            others = sorted(samples)[1]
        except (OSError, ValueError, IndexError):
            others = max(0, round(os.getloadavg()[0]) - 1) if hasattr(os, "getloadavg") else 0
        return max(1, min(cores, cores - others))

    def _fit(self, messages: list[dict], settings: Settings, limit: int) -> tuple[list[int], int]:
        """The prompt tokens, after dropping the oldest exchanges if the conversation leaves less than
        max new tokens (or, for a long one, a quarter of the context) to answer in."""
        ids = self.encode(messages, settings.system)
        if not limit:
            return ids, 0
        want = min(settings.max_new_tokens, max(limit // 4, 1))
        system = [m for m in messages[:1] if m["role"] == "system"]
        turns = messages[len(system):]
        dropped = 0
        while len(ids) + want > limit and len(turns) > 1:
            # drop the oldest exchange: everything up to the second user message
            nxt = next((i for i, m in enumerate(turns) if i > 0 and m["role"] == "user"), len(turns) - 1)
            turns = turns[nxt:]
            dropped += 1
            ids = self.encode(system + turns, settings.system)
        if len(ids) + min(16, want) > limit:
            raise ChatError(
                f"The message is {len(ids)} tokens, too long for the model's context of {limit} tokens; "
                "shorten it."
            )
        return ids, dropped

    def _run(self, sides, prompts, settings, results, emit, ended, cancel) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(self.eos_ids), 0)
        width = max(len(prompts[s]) for s in sides)
        rows = [[pad] * (width - len(prompts[s])) + prompts[s] for s in sides]  # left padding
        mask = [[0] * (width - len(prompts[s])) + [1] * len(prompts[s]) for s in sides]
        input_ids = torch.tensor(rows, device=self.device)
        attention_mask = torch.tensor(mask, device=self.device)
        eos_ids = self.eos_ids
        finished = [False] * len(sides)
        side_start = time.perf_counter()

        def close(i: int, stop: str, now: float) -> None:
            finished[i] = True
            r = results[sides[i]]
            r.stop = stop
            r.seconds = now - side_start
            # the final text, even if the last token left an incomplete character pending
            final = tok.decode(r.ids, skip_special_tokens=True)
            if final != r.text and final.startswith(r.text):
                emit(sides[i], final[len(r.text):])
            r.text = final
            parsed = self.tool_calls_of(r.ids, prompts[sides[i]])
            if parsed is not None:
                r.tool_calls, r.content = parsed["tool_calls"], parsed["content"]
            ended(sides[i], r.to_dict())

        class Streamer(BaseStreamer):
            prompt_seen = False

            def put(self, value):
                if not self.prompt_seen:  # generate() first passes the prompt
                    self.prompt_seen = True
                    return
                now = time.perf_counter()
                values = value.view(-1).tolist()
                for i, token in enumerate(values):
                    if finished[i]:
                        continue
                    r = results[sides[i]]
                    if token in eos_ids:
                        close(i, "eos", now)
                        continue
                    r.ids.append(int(token))
                    r.tokens += 1
                    if r.first_token_seconds is None:
                        r.first_token_seconds = now - side_start
                    r.seconds = now - side_start
                    text = tok.decode(r.ids, skip_special_tokens=True)
                    if text.endswith("\ufffd"):
                        continue  # an incomplete UTF-8 sequence: wait for its next byte
                    if text.startswith(r.text):
                        piece = text[len(r.text):]
                    else:  # the decoder revised earlier text (rare); send what is new by length
                        piece = text[len(r.text):] if len(text) > len(r.text) else ""
                    r.text = text
                    if piece:
                        emit(sides[i], piece)

            def end(self):
                pass

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        kwargs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=settings.max_new_tokens,
            min_new_tokens=min(settings.min_new_tokens, settings.max_new_tokens) or None,
            eos_token_id=sorted(eos_ids) or None,
            pad_token_id=pad,
            streamer=Streamer(),
            stopping_criteria=StoppingCriteriaList([Cancelled()]),
        )
        if settings.temperature > 0:
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        self.threads = self._cpu_threads() if self.device.type == "cpu" else None
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            if sides == ["tuned"]:
                self._tuned_model().generate(**kwargs)
            elif sides == ["base"]:
                with self._base_context() as model:
                    model.generate(**kwargs)
            else:  # both sides, one batch, each row with its own adapter
                self.peft.generate(**kwargs, adapter_names=["__base__" if s == "base" else self.adapter_name
                                                            for s in sides])
        for i in range(len(sides)):
            if not finished[i]:
                close(i, "cancelled" if cancel.is_set() else "length", time.perf_counter())
