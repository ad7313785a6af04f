"""Method: should you fine-tune, and how? A short wizard (one question at a time, every term in one
line), then the recommendation with its reasons and what would change it, then the methods side by
side for the project's model: trainable parameters and a memory bar each against the GPU.

What it learns from (SFT, DPO, KTO or GRPO) is asked where it matters (engine.advisor.asks_feedback):
when the project's data are preference pairs, labelled answers or prompts only (the file's format,
read on a thread: the answer is preset from it) or the problem is tone and style. A format or task
problem with too few ideal answers asks whether a program can check an answer
(engine.advisor.asks_checkable): if so, GRPO learns from that checker. The recommended objective
travels to Train with the method and settings (``objective``, ``init_from`` when a finished SFT run
of the model is in view: DPO after SFT; GRPO's answers per prompt, and the demo's rewards on the demo).

What runs where: the model's shapes come from `tunedeck estimate --json` in a child process, once
per model (the app's Architectures: it needs transformers to build the model on the meta device);
everything after that — the memory of
each method for any GPU, and the advice — is plain arithmetic in this process (engine.estimate,
engine.advisor). GPUs are read through engine.gpu (NVML) on a thread.
"""

from __future__ import annotations

from types import SimpleNamespace

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.widgets import Button, ContentSwitcher, RadioButton, RadioSet, Static

from engine import advisor, demo
from engine.data import formats
from engine import estimate as E
from engine.runs import data_label

from ..widgets.bullets import Bullets
from ..widgets.memory_bar import MemoryBar
from ..project import ArchitectureLoaded, LengthsLoaded, Project
from .base import AreaScreen

TERMS = {  # one line each, at 80 columns
    "fine-tuning": "more training on your examples; the model's weights change.",
    "prompting": "instructions and examples in the prompt; nothing is trained.",
    "few-shot": "a handful of complete examples shown in the prompt.",
    "RAG": "fetch relevant documents at question time, put them in the prompt.",
    "example": "one input with the ideal answer you want the model to give.",
    "overfitting": "the model memorises the examples instead of the pattern.",
    "GPU memory": "must hold weights, gradients, optimizer state and activations.",
    "OOM": "out of memory: a step needs more than the GPU has, and training stops.",
    "LoRA": "freeze the model; train thin matrices beside its layers (~0.1-1%).",
    "QLoRA": "LoRA on a base model stored in 4 bits: ~4x less memory for it.",
    "full": "full fine-tuning: train every weight; ~16 bytes/parameter.",
    "rank": "the width of LoRA's matrices (r); 16 is a good start.",
    "latency": "time to an answer; long prompts and retrieval both add to it.",
    "gradient checkpointing": "recompute activations: less memory, ~30% slower.",
    "activations": "what a step keeps for the backward pass; grow with batch x length.",
    "SFT": "learn to write the ideal answers shown (supervised fine-tuning).",
    "DPO": "learn from pairs: make the better answer likelier than the worse one.",
    "KTO": "learn from single answers marked good or bad; no pairs needed.",
    "GRPO": "sample answers, score them with a checker, favour the better ones.",
    "reward": "a function that scores an answer, e.g. 1 if it parses as JSON.",
    "init_from": "start a run from an earlier run's adapter: SFT first, then DPO.",
}


def terms_text(names) -> str:
    return "\n".join(f"[b]{name}[/b]: {escape(TERMS[name])}" for name in names)


@dataclass
class Question:
    key: str
    title: str
    help: str
    options: list[tuple[str, str]]  # (value, label)
    terms: list[str]


GPU_OPTIONS = [
    ("here", "This machine"),
    ("gpu16", "A 16 GB GPU (T4, RTX 4080, V100-16GB)"),
    ("gpu24", "A 24 GB GPU (RTX 3090/4090, A10, L4)"),
    ("gpu48", "A 48 GB GPU (A6000, L40S)"),
    ("gpu80", "An 80 GB GPU (A100-80GB, H100)"),
]
GPU_SIZES = {"gpu16": 16, "gpu24": 24, "gpu48": 48, "gpu80": 80}

QUESTIONS = [
    Question("problem", "What is wrong with the model's answers today?",
             "Pick the main problem: it decides whether training can help at all.",
             list(advisor.PROBLEMS.items()), ["fine-tuning", "RAG", "prompting"]),
    Question("feedback", "What do your examples look like?",
             "This decides what the model learns from: SFT, DPO, KTO or GRPO.",
             list(advisor.FEEDBACK.items()), ["SFT", "DPO", "KTO", "GRPO"]),
    Question("examples", "How many good examples do you have?",
             "Count only inputs paired with the answer you would want.",
             [(k, label) for k, (label, _) in advisor.EXAMPLE_BUCKETS.items()], ["example", "overfitting"]),
    Question("checkable", "Can a program check whether an answer is right?",
             "Too few ideal answers to fine-tune on, but a checker can teach instead: GRPO needs only prompts.",
             list(advisor.CHECKABLE.items()), ["GRPO", "reward"]),
    Question("knowledge_changes", "How often does the information it needs change?",
             "Facts trained into a model stay as they were on the day it was trained.",
             list(advisor.CHANGES.items()), ["RAG", "fine-tuning"]),
    Question("gpu", "Which GPU will train it?",
             "Training must fit in the GPU's memory, or it stops with an OOM error.",
             GPU_OPTIONS, ["GPU memory", "OOM", "QLoRA"]),
    Question("budget", "How much compute can you spend on training?",
             "A LoRA on a 7-8B model with a few thousand examples takes about an hour on one GPU.",
             list(advisor.BUDGETS.items()), ["LoRA", "full"]),
    Question("latency", "How fast must answers be?",
             "Long few-shot prompts and retrieval add time to every answer; a trained model does not.",
             list(advisor.LATENCY.items()), ["latency", "few-shot"]),
]
DEFAULTS = {"feedback": "sft", "examples": "hundreds", "knowledge_changes": "rarely", "gpu": "here", "budget": "small",
            "latency": "relaxed"}
TRAIN_ROWS = ("lora", "qlora", "full")
VERDICT_WORDS = {"fits": "fits", "tight": "tight", "no": "no", "no-gpu": "—"}


def bucket_for(count: int) -> str:
    if count <= 0:
        return "none"
    if count < advisor.MIN_EXAMPLES:
        return "few"
    if count <= 500:
        return "hundreds"
    if count <= 10_000:
        return "thousands"
    return "many"


class Options(RadioSet):
    """The answers to one question: ↑/↓ move, Enter (or a click) selects, and Enter moves on."""

    BINDINGS = [Binding("enter", "choose", "Select", show=False)]

    class Chosen(Message):
        def __init__(self, options: "Options", button_id: str) -> None:
            super().__init__()
            self.options, self.button_id = options, button_id

    def highlight_pressed(self) -> None:
        """Put the keyboard highlight on the chosen answer (RadioSet starts it on the first)."""
        if self.pressed_index >= 0:
            self._selected = self.pressed_index

    def action_choose(self) -> None:
        index = self._selected
        if index is None:
            return
        button = self.query(RadioButton)[index]
        if not button.value:
            button.value = True
        self.post_message(self.Chosen(self, button.id or ""))


class MethodRow(Horizontal):
    """One method in the comparison: name, trainable parameters, memory bar, verdict."""

    DEFAULT_CSS = """
    MethodRow { height: 1; }
    MethodRow .m-name { width: 11; text-style: bold; }
    MethodRow .m-trainable { width: 16; color: $text-muted; }
    MethodRow .m-verdict { width: 6; padding-left: 1; }
    MethodRow .m-verdict.-fits { color: $success; }
    MethodRow .m-verdict.-tight { color: $warning; }
    MethodRow .m-verdict.-no { color: $error; text-style: bold; }
    MethodRow.-recommended .m-name { color: $accent; }
    MethodRow .m-note { width: 1fr; color: $text-muted; }
    MethodRow MemoryBar { max-width: 64; }
    """

    def __init__(self, method: str, name: str) -> None:
        super().__init__(id=f"row-{method}")
        self.method, self.label = method, name

    def compose(self) -> ComposeResult:
        yield Static(self.label, classes="m-name")
        yield Static("", classes="m-trainable")
        if self.method in TRAIN_ROWS:
            yield MemoryBar(id=f"bar-{self.method}")
            yield Static("", classes="m-verdict")
        else:
            yield Static("", classes="m-note")

    def show(self, trainable: str, need: int | None = None, capacity: int | None = None,
             verdict: str = "no-gpu", note: str = "") -> None:
        self.query_one(".m-trainable", Static).update(trainable)
        if self.method in TRAIN_ROWS:
            self.query_one(MemoryBar).show(need, capacity, verdict)
            cell = self.query_one(".m-verdict", Static)
            cell.update(VERDICT_WORDS.get(verdict, verdict) if need is not None else "")
            for v in ("fits", "tight", "no"):
                cell.set_class(v == verdict, f"-{v}")
        else:
            self.query_one(".m-note", Static).update(note)


class MethodScreen(AreaScreen):
    AREA = "method"
    CSS_PATH = "../method.tcss"
    BINDINGS = [
        Binding("n", "next", "Next", id="method-next"),
        Binding("b", "back", "Back", id="method-back"),
        Binding("u", "use_recommended", "Use it", id="method-use"),
        Binding("a", "again", "Answers", id="method-again"),
    ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.step = 0
        self.answers: dict[str, str] = dict(DEFAULTS)
        self.example_count: int | None = None
        self.data_format: str | None = None  # the project's data format, once read (engine.data.formats)
        self.sft_run: str | None = None  # a finished SFT run preference tuning can start from (init_from)
        self.gpus: list | None = None  # None until detected
        self.no_gpu_reason: str | None = None
        self.arch: E.Architecture | None = None
        self.arch_model: str | None = None
        self.arch_error: str | None = None
        self.recommendation: advisor.Recommendation | None = None
        self.estimates: dict[str, E.Estimate] = {}
        self.sized_from_data: list[int] | None = None  # the data's longest rows, once measured
        self.sizing: str | None = None  # what the estimates are sized from; None while the data is measured
        self._read_key: tuple | None = None  # the project's data (and run) the wizard last read
        self._preset_for: str | None = None  # the data the "what are your examples" answer was preset from

    # --- layout ----------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        with ContentSwitcher(initial="wizard", id="method-switcher"):
            with VerticalScroll(id="wizard"):
                yield Static(id="q-step")
                yield Static(id="q-title")
                yield Static(id="q-help")
                with ContentSwitcher(initial="q-problem", id="q-switcher"):
                    for q in QUESTIONS:
                        buttons = [RadioButton(label, value=self.answers.get(q.key) == value,
                                               id=f"opt-{q.key}-{value}") for value, label in q.options]
                        yield Options(*buttons, id=f"q-{q.key}", classes="q-options")
                yield Static(id="q-terms")
                with Horizontal(id="q-nav"):
                    yield Button("← Back", id="q-back", compact=True)
                    yield Button("Next →", id="q-next", variant="primary", compact=True)
                    yield Static("↑↓ move · Enter choose and go on · b back", id="q-hint")
            with VerticalScroll(id="result"):
                yield Static(id="rec-headline")
                yield Static("Why", classes="rec-section")
                yield Bullets(id="rec-reasons")
                yield Bullets("⚠", id="rec-warnings")
                yield Static("What it learns from: SFT, DPO, KTO or GRPO", classes="rec-section", id="objectives-title")
                yield Bullets(id="rec-objectives")
                yield Static("What would change the answer", classes="rec-section")
                yield Bullets(id="rec-change")
                yield Static(id="methods-title", classes="rec-section")
                yield Static(id="methods-where")
                with Vertical(id="methods"):
                    for method in ("prompting", "rag", *TRAIN_ROWS):
                        yield MethodRow(method, advisor.METHOD_NAMES[method] if method != "full" else "Full")
                yield Static(id="rec-settings")
                with Horizontal(id="choose"):
                    for method in TRAIN_ROWS:
                        yield Button(f"Use {advisor.METHOD_NAMES[method] if method != 'full' else 'full'}",
                                     id=f"use-{method}", compact=True)
                    yield Button("Change answers", id="again", compact=True)
                yield Static(id="rec-terms")

    def on_mount(self) -> None:
        self.show_step(0)
        self.detect_gpus()
        self.read_data()
        self.load_architecture()

    def on_screen_resume(self) -> None:
        if self.arch_model != self.project.model:
            self.arch, self.arch_error = None, None
            self.load_architecture()
        if self._data_key() != self._read_key:  # other data (Data, Home), or another run in view
            self.read_data()
        self.refresh_result()  # the max length may have changed on Data

    def project_changed(self, old: Project, new: Project) -> None:
        if new.model != old.model and self.is_current:
            self.on_screen_resume()  # otherwise when this screen is shown again

    # --- the wizard ------------------------------------------------------------------------------
    def questions(self) -> list[Question]:
        """The questions asked: what the examples are (SFT, DPO, KTO or GRPO) only where that choice
        matters (engine.advisor.asks_feedback: judged data or prompts only, or a tone and style problem);
        whether a program can check an answer only for a format or task problem with too few ideal
        answers (engine.advisor.asks_checkable)."""
        ask = advisor.asks_feedback(self.answers.get("problem"), self.data_format)
        questions = [q for q in QUESTIONS if q.key != "feedback" or ask]
        feedback = self.answers.get("feedback", "sft") if ask else "sft"
        if not advisor.asks_checkable(self.answers.get("problem"), self.examples(), feedback):
            questions = [q for q in questions if q.key != "checkable"]
        return questions

    @property
    def question(self) -> Question:
        questions = self.questions()
        return questions[min(self.step, len(questions) - 1)]

    def feedback(self) -> str:
        """What the examples are (the objective), when asked; else SFT."""
        asked = any(q.key == "feedback" for q in self.questions())
        return self.answers.get("feedback", "sft") if asked else "sft"

    def show_step(self, index: int) -> None:
        questions = self.questions()
        self.step = max(0, min(index, len(questions) - 1))
        q = questions[self.step]
        self.query_one("#method-switcher", ContentSwitcher).current = "wizard"
        self.query_one("#q-title", Static).update(q.title)
        self.query_one("#q-switcher", ContentSwitcher).current = f"q-{q.key}"
        self.query_one("#q-terms", Static).update(terms_text(q.terms))
        self.query_one("#q-back", Button).disabled = self.step == 0
        self._show_labels()
        options = self.query_one(f"#q-{q.key}", Options)
        options.highlight_pressed()
        options.focus()

    def _show_labels(self) -> None:
        """What depends on the data and the other answers: the count of questions, the help line."""
        questions = self.questions()
        self.query_one("#q-step", Static).update(f"Question {self.step + 1} of {len(questions)}")
        self.query_one("#q-help", Static).update(self._help_for(self.question))
        self.query_one("#q-next", Button).label = "See advice →" if self.step == len(questions) - 1 else "Next →"

    def _help_for(self, q: Question) -> str:
        text = q.help
        if q.key == "problem" and self.project.data == demo.DEMO:
            text += " On the demo: the base model answers tickets in prose, not the one line of JSON wanted."
        if q.key == "problem" and self.project.data == demo.DEMO_PREFERENCE:
            text += " The demo pairs: the strict JSON chosen over a chatty, fenced or wrong answer."
        if q.key == "feedback" and self.data_format is not None:
            what = formats.DESCRIPTIONS.get(self.data_format, self.data_format)
            text += f" Your data ({data_label(self.project.data)}): {what}."
        if q.key == "examples" and self.feedback() == "grpo":
            text = "For GRPO, count the inputs (prompts) you have: no answers needed."
        if q.key == "examples" and self.example_count is not None:
            unit = {"preference": "pairs", "kto": "labelled answers", "prompt_only": "prompts"}.get(
                self.data_format or "", "examples")
            text += f" Your data ({data_label(self.project.data)}): {self.example_count:,} {unit}."
        if q.key == "gpu" and self.gpus is not None and not self.gpus:
            text += f" Here: {self.no_gpu_reason or 'no NVIDIA GPU found'} — CPU only."
        return escape(text)

    @on(RadioSet.Changed)
    def _answered(self, event: RadioSet.Changed) -> None:
        set_id = event.radio_set.id or ""
        button_id = event.pressed.id or ""
        if set_id.startswith("q-") and button_id.startswith("opt-"):
            key = set_id[2:]
            self.answers[key] = button_id[len(f"opt-{key}-"):]

    @on(Options.Chosen)
    def _chosen(self, event: Options.Chosen) -> None:
        key = (event.options.id or "")[2:]
        if event.button_id.startswith(f"opt-{key}-"):
            self.answers[key] = event.button_id[len(f"opt-{key}-"):]
        self.action_next()

    def action_next(self) -> None:
        if self.query_one("#method-switcher", ContentSwitcher).current != "wizard":
            return
        q = self.question
        if q.key not in self.answers:
            self.notify("Pick one answer first: ↑/↓ to move, Enter to select.", severity="warning")
            return
        if self.step >= len(self.questions()) - 1:
            self.show_result()
        else:
            self.show_step(self.step + 1)

    def action_back(self) -> None:
        if self.query_one("#method-switcher", ContentSwitcher).current != "wizard":
            self.show_step(len(self.questions()) - 1)
        elif self.step > 0:
            self.show_step(self.step - 1)

    def action_again(self) -> None:
        self.show_step(0)

    @on(Button.Pressed, "#q-next")
    def _next_pressed(self) -> None:
        self.action_next()

    @on(Button.Pressed, "#q-back")
    def _back_pressed(self) -> None:
        self.action_back()

    @on(Button.Pressed, "#again")
    def _again_pressed(self) -> None:
        self.action_again()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        in_wizard = self.query_one("#method-switcher", ContentSwitcher).current == "wizard"
        if action in ("next",):
            return in_wizard
        if action in ("use_recommended", "again"):
            return not in_wizard and (action == "again" or bool(self.recommendation and self.recommendation.trains))
        return True

    # --- background work -------------------------------------------------------------------------
    class GpusFound(Message, bubble=False):
        def __init__(self, gpus: list, reason: str | None) -> None:
            super().__init__()
            self.gpus, self.reason = gpus, reason

    class DataRead(Message, bubble=False):
        """What the wizard knows of the project's data: rows, format, and an SFT run to start from."""

        def __init__(self, key: tuple, count: int | None, data_format: str | None, sft_run: str | None) -> None:
            super().__init__()
            self.key, self.count, self.data_format, self.sft_run = key, count, data_format, sft_run

    @work(thread=True, exclusive=True, group="method-gpus", exit_on_error=False)
    def detect_gpus(self) -> None:
        from engine import gpu

        gpus = gpu.list_gpus()
        reason = None if gpus else (gpu.no_gpu_reason() or "no NVIDIA GPU found")
        self.post_message(self.GpusFound(gpus, reason))

    def on_method_screen_gpus_found(self, message: GpusFound) -> None:
        gpus, reason = message.gpus, message.reason
        self.gpus, self.no_gpu_reason = gpus, reason
        button = self.query_one("#opt-gpu-here", RadioButton)
        if gpus:
            best = max(gpus, key=lambda g: g.memory_total - g.memory_used)
            free = (best.memory_total - best.memory_used) / E.GIB
            more = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
            button.label = f"This machine: GPU {best.index} {best.name}, {free:.0f} GiB free{more}"
        else:
            button.label = "This machine (no NVIDIA GPU: trains on the CPU)"
        if self.question.key == "gpu":
            self.query_one("#q-help", Static).update(self._help_for(self.question))
        self.refresh_result()

    def _data_key(self) -> tuple:
        project = self.project
        return (repr(project.data), project.model, project.run_id)

    def read_data(self) -> None:
        """Count the data's rows, detect its format, and look for an SFT run to start from (a thread)."""
        self._read_key = self._data_key()
        self._read_data(self._read_key, self.project.data, self.project.model, self.project.run_id)

    @work(thread=True, exclusive=True, group="method-count", exit_on_error=False)
    def _read_data(self, key: tuple, ref, model: str, run_id: str | None) -> None:
        from pathlib import Path

        from engine import init_from
        from engine.data import dataset
        from engine.errors import TunedeckError

        count = fmt = None
        if isinstance(ref, str):
            try:
                if ref in demo.DEMOS:
                    count = demo.count_lines(demo.data_file(ref))
                elif ref.lower().endswith(".jsonl"):
                    path = Path(ref).expanduser()
                    if path.is_file() and path.stat().st_size < 500 << 20:
                        count = demo.count_lines(path)
            except OSError:
                count = None
            try:
                if dataset.is_local(ref):
                    fmt = dataset.detect_file_format(dataset.open_source(ref))  # the first rows only
            except (TunedeckError, OSError, ValueError):
                fmt = None
        # DPO after SFT: the run in view when it is a finished SFT run of this model; on the demo pairs,
        # the newest SFT run on the demo's ideal answers
        sft_run = init_from.sft_run_for(model, prefer=run_id, data=demo.DEMO if ref == demo.DEMO_PREFERENCE else None,
                                        newest=ref == demo.DEMO_PREFERENCE)
        self.post_message(self.DataRead(key, count, fmt, sft_run))

    def on_method_screen_data_read(self, message: DataRead) -> None:
        if message.key != self._data_key():
            return  # the project moved on; its own read is on its way
        current = self.question.key
        self.data_format, self.sft_run = message.data_format, message.sft_run
        if message.data_format is not None and message.key[0] != self._preset_for:
            # new data: what its format trains is the answer (pairs: DPO, labelled answers: KTO, else SFT)
            self._preset_for = message.key[0]
            feedback = advisor.objective_for_data(message.data_format)
            self.answers["feedback"] = feedback
            self.query_one(f"#opt-feedback-{feedback}", RadioButton).value = True
            self.query_one("#q-feedback", Options).highlight_pressed()
        count = message.count
        self.example_count = count
        if count is not None:
            bucket = bucket_for(count)
            self.answers["examples"] = bucket
            self.query_one(f"#opt-examples-{bucket}", RadioButton).value = True
            self.query_one("#q-examples", Options).highlight_pressed()
        if self.query_one("#method-switcher", ContentSwitcher).current == "wizard":
            keys = [q.key for q in self.questions()]  # the questions may have changed: stay on this one
            if current in keys and keys.index(current) == self.step:
                self._show_labels()
            else:
                self.show_step(keys.index(current) if current in keys else self.step)
        else:
            self.refresh_result()

    def load_architecture(self) -> None:
        """The model's shapes (the app's Architectures: `tunedeck estimate --json` in a helper process,
        once per model), from a daemon thread: quitting the app never waits for it (it builds the
        model on the meta device, a few seconds)."""
        self.app.architectures.fetch_for(self, self.project.model)


    def on_architecture_loaded(self, message: ArchitectureLoaded) -> None:
        model, arch, error = message.model, message.arch, message.error
        if model != self.project.model:
            return
        self.arch_model, self.arch, self.arch_error = model, arch, error
        if error:
            self.notify(f"No memory estimate for {model}: {error}", severity="warning", timeout=8)
        self.refresh_result()

    # --- the recommendation ----------------------------------------------------------------------
    def target(self) -> tuple[str, int | None, str, list, str | None]:
        """(device, capacity bytes, words for it, GPUs to judge against, no-GPU reason)."""
        choice = self.answers.get("gpu", "here")
        if choice in GPU_SIZES:
            size = GPU_SIZES[choice]
            gpu = E.capacity_gpu(size * E.GIB, f"a {size} GB GPU")
            return "cuda", gpu["memory_total"], f"a {size} GB GPU (planned)", [gpu], None
        if self.gpus:
            best = max(self.gpus, key=lambda g: g.memory_total - g.memory_used)
            free = best.memory_total - best.memory_used
            return "cuda", free, f"GPU {best.index} {best.name} ({free / E.GIB:.1f} GiB free)", self.gpus, None
        if self.gpus is None:
            return "cpu", None, "this machine (looking for GPUs…)", [], None
        import psutil

        available = int(psutil.virtual_memory().available)
        reason = self.no_gpu_reason or "no NVIDIA GPU found"
        ram = {"index": 0, "name": "RAM", "memory_total": available, "memory_used": 0}
        return "cpu", available, f"{reason} — CPU only; bars show free RAM ({available / E.GIB:.1f} GiB)", [ram], None

    def examples(self) -> int:
        if self.example_count is not None and self.answers.get("examples") == bucket_for(self.example_count):
            return self.example_count
        return advisor.EXAMPLE_BUCKETS[self.answers.get("examples", "hundreds")][1]

    def compute(self) -> None:
        device, capacity, _, _, _ = self.target()
        examples = self.examples()
        gpu = device == "cuda"
        self.estimates = {}
        method_memory = trainable = checkpointing = None
        model_params = self.arch.total_params if self.arch else None
        objective = advisor.objective_of(self._answers(examples))
        if self.arch is not None:
            shape = advisor.starting_settings("lora", examples=examples, model_params=model_params, gpu=gpu,
                                              max_length=self.chosen_max_length(), objective=objective)
            if self.chosen_max_length():
                shape["max_length"] = self.chosen_max_length()
            self.sized_from_data = lengths = self._lengths(shape["max_length"])
            rows, seq_len, packed, _ = E.longest_batch(
                SimpleNamespace(batch_size=shape["batch_size"], max_length=shape["max_length"], padding_free=True,
                                objective=objective, method="lora"), lengths, arch=self.arch, device=device)
            # DPO/KTO: pairs count twice; from an SFT run, TRL keeps a frozen copy of its adapter
            plan = E.Plan(seq_len=seq_len, batch_size=rows, packed=packed, device=device,
                          gradient_accumulation_steps=shape["gradient_accumulation_steps"], objective=objective,
                          reference_adapter=objective != "sft" and self.sft_run is not None)
            self.estimates = E.best_estimates(self.arch, plan, capacity)
            method_memory = {m: e.memory.total for m, e in self.estimates.items()}
            trainable = {m: e.trainable_params for m, e in self.estimates.items()}
            checkpointing = {m: bool(e.plan.gradient_checkpointing) for m, e in self.estimates.items()}
        answers = self._answers(
            examples, gpu_memory=capacity if gpu else None, method_memory=method_memory if gpu else None,
            model_params=model_params, trainable_params=trainable,
            model_name=self.arch.name if self.arch else self.project.model, method_checkpointing=checkpointing)
        self.recommendation = advisor.recommend(answers)

    def _answers(self, examples: int, **more) -> advisor.Answers:
        """The wizard's answers for the advisor (what was asked; the rest at its defaults)."""
        asked = {q.key for q in self.questions()}
        return advisor.Answers(
            problem=self.answers.get("problem", "format"), examples=examples,
            knowledge_changes=self.answers.get("knowledge_changes", "rarely"),
            budget=self.answers.get("budget", "small"), latency=self.answers.get("latency", "relaxed"),
            feedback=self.feedback(), data_format=self.data_format,
            data_name=data_label(self.project.data) or "your data", sft_run=self.sft_run,
            checkable=self.answers.get("checkable") if "checkable" in asked else None,
            rewards=self.suggested_rewards(), **more)

    def suggested_rewards(self) -> list | None:
        """Rewards GRPO can start from: the demo's (strict JSON with its keys); None for other data."""
        if self.project.data == demo.DEMO:
            from ..data_helper import demo_rewards

            return demo_rewards()
        return None

    def show_result(self) -> None:
        self.query_one("#method-switcher", ContentSwitcher).current = "result"
        self.refresh_result()
        self.query_one("#result", VerticalScroll).scroll_home(animate=False)
        rec = self.recommendation
        if rec is not None and rec.trains:
            self.query_one(f"#use-{rec.method}", Button).focus()
        else:
            self.query_one("#again", Button).focus()

    def refresh_result(self) -> None:
        if not self.is_mounted or self.query_one("#method-switcher", ContentSwitcher).current != "result":
            return
        if "problem" not in self.answers:
            return
        self.compute()
        rec = self.recommendation
        assert rec is not None
        self.query_one("#rec-headline", Static).update(f"Recommendation: {escape(rec.headline)}")
        self.query_one("#rec-reasons", Bullets).set_items(rec.reasons)
        warnings = self.query_one("#rec-warnings", Bullets)
        warnings.set_items(rec.warnings)
        warnings.display = bool(rec.warnings)
        self.query_one("#rec-change", Bullets).set_items(rec.would_change)
        objectives = self.query_one("#rec-objectives", Bullets)
        objectives.set_items(rec.objectives)
        objectives.display = self.query_one("#objectives-title").display = bool(rec.objectives)
        self._show_table()
        self._show_settings()
        terms = ("LoRA", "rank", "QLoRA", "OOM", "gradient checkpointing")
        if rec.objective == "grpo":
            terms = ("LoRA", "rank", "GRPO", "reward", "QLoRA", "OOM")
        elif rec.objective != "sft":
            terms = ("LoRA", "rank", rec.objective.upper(), "init_from", "QLoRA", "OOM")
        self.query_one("#rec-terms", Static).update(terms_text(terms))
        for method in TRAIN_ROWS:
            button = self.query_one(f"#use-{method}", Button)
            button.variant = "primary" if rec.method == method else "default"
        self.refresh_bindings()

    def _show_table(self) -> None:
        device, capacity, words, gpus, reason = self.target()
        model = self.arch.name if self.arch else self.project.model
        self.query_one("#methods-title", Static).update(f"The methods for {escape(model)}")
        # best_estimates turns checkpointing on where a method needs it to fit: say so (else Full < LoRA puzzles)
        checkpointed = ["Full" if m == "full" else advisor.METHOD_NAMES[m] for m in TRAIN_ROWS
                        if m in self.estimates and self.estimates[m].plan.gradient_checkpointing]
        self.query_one("#methods-where", Static).update(
            f"Memory of one training step on {escape(words)}"
            + (" · CPU training in fp32" if device == "cpu" else "")
            + (f" · {self.sizing}" if self.sizing else "")
            + (f" · {', '.join(checkpointed)} with gradient checkpointing" if checkpointed else ""))
        rec = self.recommendation
        for row in self.query(MethodRow):
            row.set_class(rec is not None and rec.method == row.method, "-recommended")
        self.query_one("#row-prompting", MethodRow).show("0 trained", note="no training; a better prompt")
        self.query_one("#row-rag", MethodRow).show("0 trained", note="no training; a document index")
        for method in TRAIN_ROWS:
            row = self.query_one(f"#row-{method}", MethodRow)
            est = self.estimates.get(method)
            if est is None:
                text = "no estimate" if self.arch_error else "counting…"
                row.show(text)
                continue
            fit = E.judge_fit(est.memory.total, gpus, reason)
            verdict = fit.verdict if capacity else "no-gpu"
            pct = 100 * est.trainable_fraction
            row.show(f"{E.human_count(est.trainable_params)} ({pct:.2g}%)" if pct < 100 else
                     f"{E.human_count(est.trainable_params)} (all)", est.memory.total, capacity, verdict)
        if self.arch_error:
            self.query_one("#methods-where", Static).update(f"No estimate: {escape(self.arch_error)}")

    def _lengths(self, max_length: int) -> list[int] | None:
        """The data's longest rows if measured; else start measuring them (the table updates then).
        Sets ``sizing``: what the estimates are sized from."""
        lengths, model, data = self.app.data_lengths, self.project.model, self.project.data
        if not isinstance(data, str):
            self.sizing = "sized for rows of max length (a mix of sources)"
            return None
        known = lengths.known(model, data, max_length)
        failed = lengths.failed(model, data, max_length)
        if known is None and failed is None:
            lengths.fetch_for(self, model, data, max_length)
        self.sizing = ("sized from your data" if known else
                       "sized for rows of max length (your data's lengths could not be measured)" if failed else None)
        return known

    def on_lengths_loaded(self, message: LengthsLoaded) -> None:
        if (message.model, message.data) == (self.project.model, self.project.data):
            self.refresh_result()

    def chosen_max_length(self) -> int | None:
        """The max length set on the Data screen (or carried before), kept as the user chose it."""
        value = self.project.settings.get("max_length")
        return int(value) if isinstance(value, int) and value > 0 else None

    def objective(self) -> str:
        """What the recommended training learns from (sft | dpo | kto | grpo); SFT when it does not train."""
        rec = self.recommendation
        return rec.objective if rec is not None and rec.trains else "sft"

    def settings_for(self, method: str) -> dict:
        """The starting settings for ``method`` with the recommended objective; DPO/KTO on an adapter start
        from the SFT run found (init_from)."""
        device, _, _, _, _ = self.target()
        est = self.estimates.get(method)
        gc = bool(est.plan.gradient_checkpointing) if est is not None else None
        objective = self.objective()
        settings = advisor.starting_settings(
            method, examples=self.examples(), model_params=self.arch.total_params if self.arch else None,
            gpu=device == "cuda", max_length=self.chosen_max_length(), gradient_checkpointing=gc,
            objective=objective)
        if self.chosen_max_length():
            settings["max_length"] = self.chosen_max_length()
        if objective in ("dpo", "kto") and self.sft_run and method in ("lora", "qlora"):
            settings["init_from"] = self.sft_run
        if objective == "grpo" and self.suggested_rewards():
            settings["rewards"] = self.suggested_rewards()
        return settings

    def _show_settings(self) -> None:
        rec = self.recommendation
        method = rec.method if rec and rec.trains else "lora"
        s = self.settings_for(method)
        parts = [f"learning rate {s['learning_rate']:.0e}".replace("e-0", "e-"),
                 f"{s['epochs']} epoch{'' if s['epochs'] == 1 else 's'}",
                 f"batch {s['batch_size']} x {s['gradient_accumulation_steps']} accumulation",
                 f"max length {s['max_length']}"]
        if s.get("gradient_checkpointing"):
            parts.append("gradient checkpointing")
        if "lora" in s:
            lora = s["lora"]
            parts.append(f"rank {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']}, {lora['targets']}")
        carried = "the method"
        if s["objective"] == "grpo":
            parts[:0] = ["GRPO", f"{s['num_generations']} answers a prompt of up to {s['max_completion_length']} "
                         f"tokens", f"beta {s['beta']:g}"]
            carried = "the method, GRPO" + (" with the demo's rewards" if s.get("rewards") else "")
        elif s["objective"] != "sft":
            name = s["objective"].upper()
            start = f"{name} from run {s['init_from']}" if s.get("init_from") else name
            parts[:0] = [start, f"beta {s['beta']:g}"]
            carried = f"the method, {name}"
        prefix = "Starting settings" if rec and rec.trains else "If you train anyway (LoRA)"
        self.query_one("#rec-settings", Static).update(
            f"{prefix}: " + " · ".join(parts) + f"\nEnter on a button carries {carried} and these settings to Train.")

    # --- choosing ---------------------------------------------------------------------------------
    @on(Button.Pressed, "#use-lora")
    def _use_lora(self) -> None:
        self.choose("lora")

    @on(Button.Pressed, "#use-qlora")
    def _use_qlora(self) -> None:
        self.choose("qlora")

    @on(Button.Pressed, "#use-full")
    def _use_full(self) -> None:
        self.choose("full")

    def action_use_recommended(self) -> None:
        if self.recommendation is not None and self.recommendation.trains:
            self.choose(self.recommendation.method)

    def choose(self, method: str) -> None:
        settings = self.settings_for(method)
        self.set_project(method=method, settings=settings)
        with_objective = "" if settings["objective"] == "sft" else f" with {settings['objective'].upper()}"
        self.notify(f"{advisor.METHOD_NAMES[method]}{with_objective} and its starting settings are on the Train "
                    "screen.", timeout=4)
        self.app.open_area("train", pane="setup")  # the settings to look at, not the last run's monitor
