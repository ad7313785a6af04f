"""Should you fine-tune at all, and how? Answers in, a recommendation out — pure functions, no I/O,
no ML imports, so the TUI calls them directly.

The rules, in plain words (background: the LoRA paper, Hu et al. 2021, arXiv:2106.09685; QLoRA,
Dettmers et al. 2023, arXiv:2305.14314; and the common lesson "fine-tuning changes behaviour, not
knowledge"):

1. Missing knowledge is answered with retrieval (RAG), never with fine-tuning — above all when the
   knowledge changes: facts baked into weights go stale and cannot be cited.
2. Too few examples (under ``MIN_EXAMPLES``) to fine-tune: improve the prompt (few-shot examples,
   explicit format) and collect more data. No training budget: also prompting.
3. Behaviour (format, style, following a task) or inference cost with enough examples: LoRA if it
   fits the GPU, QLoRA if only that fits, full fine-tuning only with lots of data
   (``FULL_MIN_EXAMPLES``), a large budget and the memory for it.
4. What it learns from (the objective, beside the method) follows what the examples are: ideal
   answers -> SFT; two answers to one input, one better -> DPO; single answers marked good or bad
   -> KTO (Rafailov et al. 2023, arXiv:2305.18290; Ethayarajh et al. 2024, arXiv:2402.01306). DPO
   and KTO only shift the odds between answers the model can already give, so a model that does
   not yet write the wanted form is trained with SFT first and preference-tuned from that run
   (``init_from``).
5. When a program can check an answer (it parses as JSON with the right keys, matches a pattern, gives
   the right number, passes a test) but ideal answers are scarce, the checker itself can teach: GRPO
   (Shao et al. 2024, arXiv:2402.03300) samples several answers to each prompt, scores them with
   reward functions and makes the better ones likelier. It needs prompts, not answers; it only
   reinforces what the model already sometimes gets right, so the base model's sampled answers
   must sometimes score (the Data screen's "try the rewards" shows whether they do).

Every recommendation carries its reasons, what would change it, warnings, and — for the methods
that train — starting hyper-parameters whose keys are those of ``engine.config.RunConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import config

MIN_EXAMPLES = 50  # below this, a fine-tune memorises rather than generalises
SMALL_EXAMPLES = 200  # enough for a narrow LoRA, but thin
FULL_MIN_EXAMPLES = 10_000  # full fine-tuning pays off only with a lot of data
FIT_MARGIN = 0.85  # the same margin as engine.estimate: "fits" below 85 % of free memory
CPU_TRAINABLE_PARAMS = 1_500_000_000  # above this, training on a CPU is impractically slow

PROBLEMS = {
    "knowledge": "It lacks facts it needs (products, documents, recent events)",
    "format": "Wrong output format (invalid JSON, wrong fields or structure)",
    "style": "Wrong tone or style (too long, too formal, not our voice)",
    "task": "Doesn't do the task reliably (ignores instructions, misclassifies)",
    "cost": "Works, but too slow or costly to run (long prompts, big model)",
}
CHANGES = {
    "often": "Every day or week (prices, stock, tickets, news)",
    "sometimes": "Every month or so (product docs, policies)",
    "rarely": "Rarely or never (a fixed domain, a format, a style)",
}
BUDGETS = {
    "none": "None: no GPU time or money for training",
    "small": "Small: a few GPU-hours (one rented GPU for an afternoon)",
    "large": "Large: days of GPU time, or several GPUs",
}
LATENCY = {
    "relaxed": "Relaxed: a second more or less does not matter",
    "strict": "Strict: every millisecond and every prompt token counts",
}
FEEDBACK = {  # what the examples say about the answers; each key is the objective that learns from it
    "sft": "Ideal answers: each input with the answer you want",
    "dpo": "Pairs: two answers to one input, one marked better",
    "kto": "Single answers, each marked good or bad",
    "grpo": "Inputs only; a program can check an answer (JSON, a number)",
}
CHECKABLE = {  # can a program tell a right answer from a wrong one? (GRPO learns from such a checker)
    "yes": "Yes: a program can check it (valid JSON, a pattern, a right number)",
    "no": "No: judging an answer takes a person",
}
CHECKABLE_PROBLEMS = ("format", "task")  # problems where a checker is common (format above all)
# The objective a data file's format trains (engine.data.formats): pairs -> DPO, labels -> KTO,
# prompts without answers -> GRPO.
FORMAT_OBJECTIVES = {"preference": "dpo", "kto": "kto", "prompt_only": "grpo"}
OBJECTIVE_WORDS = {  # SFT vs DPO vs KTO in plain words, one line each
    "sft": "SFT (supervised fine-tuning) learns from ideal answers: for each input, the answer you want, "
           "which it learns to write. Use it when you can write or collect the right answer.",
    "dpo": "DPO learns from pairs: two answers to the same input, one marked better. It makes the better one "
           "likelier than the worse one. Use it when you can say which of two answers is better.",
    "kto": "KTO learns from single answers marked good or bad (thumbs up or down), no pairs needed. Use it "
           "when feedback comes one answer at a time, even with more of one kind than the other.",
    "grpo": "GRPO learns from a checker instead of examples: it samples several answers to each prompt, scores "
            "them with reward functions (valid JSON, the right keys, a matching number) and makes the better ones "
            "likelier. Use it when a program can check an answer but ideal answers are scarce.",
}
OBJECTIVE_HEADLINES = {"dpo": " on preference pairs (DPO)", "kto": " on answers marked good or bad (KTO)",
                       "grpo": " and rewards from a checker (GRPO)"}
GRPO_GENERATIONS = 4  # answers sampled per prompt: enough to compare, cheap enough for a CPU
GRPO_COMPLETION = 64  # tokens per sampled answer: short answers keep generation practical on a CPU
EXAMPLE_BUCKETS = {  # what the wizard offers -> a representative count
    "none": ("None yet", 0),
    "few": ("Fewer than 50", 20),
    "hundreds": ("50 to 500", 300),
    "thousands": ("500 to 10,000", 3000),
    "many": ("More than 10,000", 20000),
}

# Names as headings show them: the training methods' own names, capitalised.
METHOD_NAMES = {"prompting": "Prompting", "rag": "RAG",
                **{m: name[0].upper() + name[1:] for m, name in config.METHOD_NAMES.items()}}
TRAINING_METHODS = config.METHODS


@dataclass
class Answers:
    problem: str  # a key of PROBLEMS
    examples: int  # good input -> ideal-output examples available
    knowledge_changes: str = "rarely"  # a key of CHANGES
    budget: str = "small"  # a key of BUDGETS
    latency: str = "relaxed"  # a key of LATENCY
    gpu_memory: int | None = None  # bytes free on the GPU that will train; None: no GPU (CPU only)
    method_memory: dict[str, int] | None = None  # estimated peak bytes per training method
    model_params: int | None = None  # total parameters of the model
    trainable_params: dict[str, int] | None = None  # per training method
    max_length: int | None = None  # from the data (tokens of a long example), if known
    model_name: str = "the model"
    method_checkpointing: dict[str, bool] | None = None  # gradient checkpointing each memory figure assumed
    feedback: str = "sft"  # a key of FEEDBACK: what the examples are, i.e. the objective that learns from them
    data_format: str | None = None  # the project's data format (engine.data.formats), when known
    data_name: str = "your data"
    sft_run: str | None = None  # a finished SFT run of this model (an adapter) that preference tuning can start from
    checkable: str | None = None  # a key of CHECKABLE, when asked: can a program check an answer?
    rewards: list | None = None  # reward functions to suggest for GRPO (e.g. the demo's), config form


@dataclass
class Recommendation:
    method: str  # prompting | rag | lora | qlora | full
    headline: str
    reasons: list[str]
    would_change: list[str]
    warnings: list[str] = field(default_factory=list)
    settings: dict | None = None  # starting hyper-parameters (training methods only)
    objective: str = "sft"  # what it learns from (training methods only): sft | dpo | kto | grpo
    objectives: list[str] = field(default_factory=list)  # SFT vs DPO vs KTO vs GRPO in plain words, when that choice matters

    @property
    def trains(self) -> bool:
        return self.method in TRAINING_METHODS

    @property
    def name(self) -> str:
        return METHOD_NAMES[self.method]

    def to_dict(self) -> dict:
        return {"method": self.method, "objective": self.objective, "headline": self.headline,
                "reasons": self.reasons, "would_change": self.would_change, "warnings": self.warnings,
                "settings": self.settings, "objectives": self.objectives}


def _gib(n: int | float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def _check(a: Answers) -> None:
    for value, allowed, what in ((a.problem, PROBLEMS, "problem"), (a.knowledge_changes, CHANGES, "knowledge_changes"),
                                 (a.budget, BUDGETS, "budget"), (a.latency, LATENCY, "latency"),
                                 (a.feedback, FEEDBACK, "feedback"), (a.checkable or "no", CHECKABLE, "checkable")):
        if value not in allowed:
            raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    if a.examples < 0:
        raise ValueError(f"examples must be >= 0, got {a.examples}")


# --- hyper-parameters -----------------------------------------------------------------------------
def starting_settings(method: str, *, examples: int, model_params: int | None = None, gpu: bool = True,
                      max_length: int | None = None, gradient_checkpointing: bool | None = None,
                      objective: str = "sft") -> dict:
    """Starting hyper-parameters for ``method`` and ``objective``, keyed like ``RunConfig`` (``lora``
    only for adapters).

    LoRA/QLoRA: lr 2e-4 (1e-4 above 30B parameters, as the QLoRA paper did for 33B/65B), r=16,
    alpha=2r, dropout 0.05 on every linear layer (the QLoRA paper found all layers necessary to match
    full fine-tuning). Full: lr 2e-5 below 3B parameters, 1e-5 above. Epochs fall as data grows:
    small sets need several passes, large ones one. On a GPU 4 x 4 accumulation (effective batch
    16); on a CPU batch 8 (the demo trains at a few seconds a step). DPO/KTO move the model a little
    away from a reference: the schema's lower learning rate (LoRA 5e-5, full 5e-7), beta 0.1, and one
    pass over a few hundred examples or more (two below), since the preferred answer's margin keeps
    growing long after the model has learnt the preference. GRPO: the schema's learning rate and beta,
    one pass over the prompts, ``GRPO_GENERATIONS`` answers per prompt of ``GRPO_COMPLETION`` tokens
    at most, and a batch that holds whole groups of answers (batch_size counts answers); the weights
    it ends with are the last (its eval loss is no score).
    """
    if method not in TRAINING_METHODS:
        raise ValueError(f"no hyper-parameters for {method!r}: it does not train")
    if objective not in config.OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(config.OBJECTIVES)}, got {objective!r}")
    big = (model_params or 0) > 30e9
    if examples < 300:
        epochs = 3
    elif examples < 3000:
        epochs = 2
    else:
        epochs = 1
    batch, accum = (4, 4) if gpu else (8, 1)
    if examples and examples < batch * accum * 4:  # keep at least a handful of optimizer steps per epoch
        accum = max(1, examples // (batch * 4))
    length = max_length or (1024 if gpu else 512)
    length = max(128, min(8192, _round_up(length, 128)))
    if method == "full":
        lr = 2e-5 if (model_params or 0) < 3e9 else 1e-5
        settings = {"learning_rate": lr, "epochs": min(epochs, 2), "batch_size": batch,
                    "gradient_accumulation_steps": accum, "max_length": length}
    else:
        settings = {"learning_rate": 1e-4 if big else 2e-4, "epochs": epochs, "batch_size": batch,
                    "gradient_accumulation_steps": accum, "max_length": length,
                    "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "targets": "all-linear"}}
    settings["objective"] = objective
    if objective in config.PREFERENCE_OBJECTIVES:
        settings["learning_rate"] = config.FIELD["learning_rate"].default_for(method, objective)
        settings["epochs"] = 2 if examples < 300 else 1
        settings["beta"] = config.FIELD["beta"].default_for(method, objective)
    if objective == "grpo":
        generations = GRPO_GENERATIONS
        settings["learning_rate"] = config.FIELD["learning_rate"].default_for(method, objective)
        settings["epochs"] = 1
        settings["batch_size"] = generations * (4 if gpu else 2)  # whole groups: 2 (CPU) or 4 prompts a step
        settings["gradient_accumulation_steps"] = 1
        settings["num_generations"] = generations
        settings["max_completion_length"] = config.FIELD["max_completion_length"].default_for(method, objective) \
            or GRPO_COMPLETION
        settings["beta"] = config.FIELD["beta"].default_for(method, objective)
        settings["keep"] = "last"
    if gradient_checkpointing is not None:
        settings["gradient_checkpointing"] = bool(gradient_checkpointing)
    elif method == "qlora":
        settings["gradient_checkpointing"] = True
    return settings


def objective_for_data(data_format: str | None) -> str:
    """The objective a data file of this format trains: pairs -> dpo, labelled answers -> kto, prompts
    without answers -> grpo, else sft."""
    return FORMAT_OBJECTIVES.get(data_format or "", "sft")


def asks_feedback(problem: str | None, data_format: str | None) -> bool:
    """Whether the wizard asks what the examples are (SFT, DPO, KTO or GRPO): when the data are pairs,
    labelled answers or prompts only, or the problem is tone and style (where "which answer is better"
    is often easier to give than the ideal answer). Never for missing knowledge: no objective trains
    facts in."""
    if problem == "knowledge":
        return False
    return problem == "style" or data_format in FORMAT_OBJECTIVES


def asks_checkable(problem: str | None, examples: int, feedback: str = "sft") -> bool:
    """Whether the wizard asks if a program can check an answer: a format or task problem with too few
    ideal answers to fine-tune on (under ``MIN_EXAMPLES``), where a checker can teach instead (GRPO)."""
    return problem in CHECKABLE_PROBLEMS and examples < MIN_EXAMPLES and feedback == "sft"


def objective_of(a: Answers) -> str:
    """What the model learns from: the examples' kind when asked (feedback); GRPO when ideal answers are
    scarce but a program can check an answer; else SFT."""
    if a.feedback != "sft":
        return a.feedback
    if a.checkable == "yes" and asks_checkable(a.problem, a.examples, a.feedback):
        return "grpo"
    return "sft"


def _round_up(n: int, step: int) -> int:
    return ((int(n) + step - 1) // step) * step


# --- the decision ---------------------------------------------------------------------------------
def _fits(a: Answers, method: str) -> str | None:
    """"fits" | "tight" | "no", or None when memory is unknown."""
    if a.gpu_memory is None or not a.method_memory or method not in a.method_memory:
        return None
    need = a.method_memory[method]
    if need <= FIT_MARGIN * a.gpu_memory:
        return "fits"
    return "tight" if need <= a.gpu_memory else "no"


def _behaviour_reason(problem: str) -> str:
    return {
        "format": "A wrong output format is behaviour, and behaviour is what fine-tuning changes well: "
                  "examples of the exact output make it reliable where instructions alone slip.",
        "style": "Tone and style are behaviour: the model picks them up from examples far more "
                 "consistently than from a description in the prompt.",
        "task": "Examples of the task done right teach the model what instructions alone did not, "
                "and it then needs no long prompt to do it.",
        "cost": "A fine-tuned model no longer needs the long instructions and few-shot examples you now send "
                "with every request, so prompts get shorter, faster and cheaper; a smaller model trained "
                "on good answers (including a bigger model's) can replace a big one.",
    }[problem]


def recommend(a: Answers) -> Recommendation:
    """The method to use, with reasons, what would change the answer, warnings and starting settings."""
    _check(a)
    if a.problem == "knowledge":
        return _rag(a)
    if a.examples < MIN_EXAMPLES and objective_of(a) != "grpo":  # GRPO needs prompts, not ideal answers
        return _prompting_small_data(a)
    if a.budget == "none":
        return _prompting_no_budget(a)
    return _train(a)


def _rag(a: Answers) -> Recommendation:
    reasons = ["Fine-tuning teaches behaviour, not facts: a model trained on your documents still makes up "
               "the details it did not memorise, and you cannot tell which ones."]
    if a.knowledge_changes == "often":
        reasons.append("Your knowledge changes every day or week: with RAG you update the documents and the "
                       "next answer uses them; facts trained into the weights would be stale until you train "
                       "again, every time.")
    elif a.knowledge_changes == "sometimes":
        reasons.append("Your knowledge changes every month or so: RAG picks up a new document at once, while "
                       "each change would otherwise mean a new training run.")
    reasons.append("RAG can show which document an answer came from, so people can check it.")
    would = ["If the facts come out right but in the wrong format or tone, that part is behaviour: add a LoRA "
             "trained on good answers, on top of RAG (never to store the facts)."]
    if a.knowledge_changes == "often":
        would.append("Nothing about how often the facts change will make fine-tuning right for them; only the "
                     "kind of problem can change this answer.")
    else:
        would.append("If the model already knows the facts but phrases or structures answers badly, the problem "
                     "is behaviour: pick format, style or task instead.")
    warnings = []
    if a.latency == "strict":
        warnings.append("RAG adds a retrieval step and a longer prompt to every request: keep the index close, "
                        "retrieve few, short passages, and cache what repeats.")
    return Recommendation("rag", "Use RAG: retrieve the facts at question time", reasons, would, warnings)


def _prompting_small_data(a: Answers) -> Recommendation:
    n = a.examples
    have = "no examples" if n == 0 else f"{n} example{'s' if n != 1 else ''}"
    reasons = [f"With {have}, the data is too small to fine-tune: under {MIN_EXAMPLES} examples a model "
               "memorises them instead of learning the pattern, and there is nothing left to check it on."]
    if a.problem == "format":
        reasons.append("State the exact format in the prompt and show 2-5 complete examples; for JSON, a schema "
                       "or constrained decoding guarantees valid output.")
    elif a.problem == "cost":
        reasons.append("Shorten the prompt first (fewer, shorter examples), and cache the shared prefix of "
                       "your requests; collect the good answers you get as future training data.")
    else:
        reasons.append("Put your best examples in the prompt (few-shot) and say plainly what you want; "
                       "that is free and takes minutes to try.")
    would = [f"With {MIN_EXAMPLES}+ good examples (better: a few hundred) a LoRA usually makes the behaviour "
             "reliable — the answers prompting gets right are a good start for that data.",
             "If the problem is missing knowledge rather than behaviour, RAG is the answer."]
    return Recommendation("prompting", "Improve the prompt; the data is too small to fine-tune", reasons, would,
                          [f"Too little data to fine-tune ({have}; the minimum is about {MIN_EXAMPLES})."])


def _prompting_no_budget(a: Answers) -> Recommendation:
    reasons = ["Without GPU time for training, the prompt is the lever you have: explicit instructions, "
               "a few complete examples, and (for structured output) a schema.",
               _behaviour_reason(a.problem) + " That is worth a small budget later."]
    cheapest = ""
    if a.method_memory and "qlora" in a.method_memory:
        cheapest = f" (QLoRA on {a.model_name} needs about {_gib(a.method_memory['qlora'])} of GPU memory)"
    would = [f"A few GPU-hours on one rented GPU are enough for a LoRA with {a.examples} examples{cheapest}.",
             "If the problem is missing knowledge, RAG rather than fine-tuning."]
    return Recommendation("prompting", "Start with the prompt: there is no training budget", reasons, would)


def _train(a: Answers) -> Recommendation:
    warnings: list[str] = []
    fits = {m: _fits(a, m) for m in TRAINING_METHODS}
    gpu = a.gpu_memory is not None
    mem = a.method_memory or {}

    want_full = a.examples >= FULL_MIN_EXAMPLES and a.budget == "large"
    if want_full and fits["full"] in ("fits", None) and gpu:
        method = "full"
    elif fits["lora"] in ("fits", None):
        method = "lora"
    elif fits["qlora"] in ("fits", "tight"):
        method = "qlora"
    elif fits["lora"] == "tight":
        method = "lora"
    else:
        method = "qlora"

    reasons = [_behaviour_reason(a.problem)]
    trainable = (a.trainable_params or {}).get(method)
    if method == "full":
        reasons.append(f"With {a.examples:,} examples and a large budget, training every weight gives the most "
                       "capacity, and the GPU has the memory for it"
                       + (f" ({_gib(mem['full'])} of {_gib(a.gpu_memory)})." if "full" in mem else "."))
        warnings.append("Full fine-tuning can make the model forget general skills (catastrophic forgetting): "
                        "keep a held-out set of general questions and a low learning rate.")
    elif method == "lora":
        frac = ""
        if trainable and a.model_params:
            frac = f" ({trainable:,} parameters, {100 * trainable / a.model_params:.2f}% of the model)"
        reasons.append(f"LoRA trains two thin matrices beside each layer{frac} and freezes the rest, so it needs "
                       "far less memory than full fine-tuning and rarely makes the model forget what it knew.")
        if "lora" in mem and gpu:
            reasons.append(f"It needs about {_gib(mem['lora'])} and the GPU has {_gib(a.gpu_memory)} free.")
        if want_full and fits["full"] in ("no", "tight"):
            reasons.append(f"Full fine-tuning would suit this much data, but needs {_gib(mem['full'])}: more than "
                           "the GPU has.")
    else:
        if "lora" in mem and gpu:
            reasons.append(f"LoRA needs about {_gib(mem['lora'])}, more than the {_gib(a.gpu_memory)} free on the "
                           f"GPU; QLoRA keeps the frozen weights in 4 bits and needs about {_gib(mem['qlora'])}.")
        reasons.append("QLoRA trains the same small adapter as LoRA and comes close to its quality, a little "
                       "slower per step.")
        if fits["qlora"] == "tight":
            warnings.append(f"Even QLoRA only just fits ({_gib(mem['qlora'])} of {_gib(a.gpu_memory)}): lower "
                            "max_length or batch size if it runs out of memory (OOM).")
        elif fits["qlora"] == "no":
            warnings.append(f"Even QLoRA needs {_gib(mem['qlora'])}, more than the {_gib(a.gpu_memory)} free: pick "
                            "a smaller model, shorten max_length, or train on a bigger GPU.")
    objective = objective_of(a)
    if a.examples < SMALL_EXAMPLES and objective != "grpo":
        warnings.append(f"{a.examples} examples is on the small side: keep a validation split, watch the eval loss "
                        "for overfitting (keep: best ends with the best weights), add examples where the model still "
                        "fails, and on data this narrow set replay: 0.1 so the model keeps its general answers.")
    if a.latency == "strict":
        reasons.append("A LoRA can be merged into the model: no added latency per request, unlike long "
                       "few-shot prompts or a retrieval step.")
    if not gpu:
        if a.model_params is None:
            warnings.append("No NVIDIA GPU here: training runs on the CPU, which is practical only for small "
                            "models such as the demo.")
        elif a.model_params <= CPU_TRAINABLE_PARAMS:
            warnings.append("No NVIDIA GPU here: this trains on the CPU — fine for a small model like this one "
                            "(minutes), far too slow for 7B models.")
        else:
            warnings.append("No NVIDIA GPU here: a model this size needs a GPU to train; pick the GPU you will "
                            "rent to see whether it fits.")

    would = []
    if method != "full":
        would.append(f"With {FULL_MIN_EXAMPLES:,}+ examples, a large budget and a GPU with room for it, full "
                     "fine-tuning may squeeze out more quality.")
    if method == "lora" and "qlora" in mem:
        would.append(f"On a GPU with less than {_gib(mem['lora'] / FIT_MARGIN)} free, QLoRA (about "
                     f"{_gib(mem['qlora'])}).")
    if method == "qlora" and "lora" in mem:
        would.append(f"On a GPU with {_gib(mem['lora'] / FIT_MARGIN)} or more free, plain LoRA: faster per step.")
    if method == "full":
        would.append("With fewer examples or a smaller budget, LoRA: most of the gain for a fraction of the memory.")
    would.append("If prompting with a few examples already gets it right most of the time, that is cheaper — "
                 "and if the real problem is missing knowledge, use RAG.")

    explain = objective != "sft" or a.problem == "style" or a.data_format in FORMAT_OBJECTIVES
    if explain:
        _objective_advice(a, method, reasons, would, warnings)
    gc = (a.method_checkpointing or {}).get(method)
    settings = starting_settings(method, examples=a.examples, model_params=a.model_params, gpu=gpu,
                                 max_length=a.max_length, gradient_checkpointing=gc, objective=objective)
    if objective in config.PREFERENCE_OBJECTIVES and a.sft_run and method in ("lora", "qlora"):
        settings["init_from"] = a.sft_run
    if objective == "grpo" and a.rewards:
        settings["rewards"] = a.rewards
    headline = {"lora": "Fine-tune with LoRA", "qlora": "Fine-tune with QLoRA (LoRA on a 4-bit model)",
                "full": "Full fine-tuning"}[method] + OBJECTIVE_HEADLINES.get(objective, "")
    words = [OBJECTIVE_WORDS[o] for o in config.OBJECTIVES] if explain else []
    return Recommendation(method, headline, reasons, would, warnings, settings, objective, words)


def _objective_advice(a: Answers, method: str, reasons: list[str], would: list[str], warnings: list[str]) -> None:
    """What it learns from: why this objective, whether the data fit it, and when to do SFT first."""
    objective, fmt, data = objective_of(a), a.data_format, a.data_name
    if objective == "grpo":
        _grpo_advice(a, reasons, would, warnings)
        return
    if objective == "dpo":
        reasons.insert(1, "You can say which of two answers is better: DPO trains on exactly that, making the chosen "
                          "answer likelier than the rejected one while staying close to the model it starts from.")
        would.insert(0, "With answers marked good or bad one at a time (no pairs), KTO; with the ideal answer for "
                        "each input, plain SFT.")
    elif objective == "kto":
        reasons.insert(1, "Your feedback is single answers marked good or bad: KTO learns from that directly, no "
                          "pairs needed, and copes with more good than bad answers (or the reverse).")
        would.insert(0, "With two answers to each input and one marked better, DPO uses each comparison more "
                        "directly; with the ideal answer for each input, plain SFT.")
    else:
        reasons.insert(1, "You have the ideal answers, so SFT is the direct way: the model learns to write them. "
                          "Tone and style come across well from a few hundred such answers.")
        would.insert(0, "If you can only say which of two answers is better, DPO learns from that (or KTO, from "
                        "answers marked good or bad), best started from an SFT run (init_from).")

    # do the data fit the objective? (the engine refuses a run whose data do not)
    if objective == "sft" and fmt == "preference":
        warnings.append(f"{data} holds preference pairs: SFT cannot train on them as they are; choose DPO, or keep "
                        "only the chosen answers (prompt + completion) to fine-tune on them.")
    elif objective == "sft" and fmt == "kto":
        warnings.append(f"{data} holds answers marked good or bad: SFT would learn the bad ones too; choose KTO, or "
                        "keep only the good answers to fine-tune on them.")
    elif objective == "dpo" and fmt == "kto":
        warnings.append(f"{data} holds single answers marked good or bad, not pairs: DPO needs two answers to one "
                        "input; choose KTO for these.")
    elif objective in ("dpo", "kto") and fmt is not None and fmt not in FORMAT_OBJECTIVES:
        wants = "pairs (prompt, chosen, rejected)" if objective == "dpo" else "answers marked good or bad (prompt, " \
                "completion, label) or pairs"
        warnings.append(f"{data} holds ideal answers, not judged ones: {objective.upper()} needs {wants}; open such "
                        "a file on Data, or train SFT on these.")
    elif objective == "kto" and fmt == "preference":
        reasons.append("KTO splits each pair into a good and a bad answer; DPO would compare them directly.")

    if objective == "sft":
        return
    name = objective.upper()
    if a.sft_run and method in ("lora", "qlora"):
        reasons.append(f"It starts from your SFT run {a.sft_run} (init_from): SFT taught the model the form of the "
                       f"answers; {name} now teaches which answers are better, measured against that run.")
    elif a.sft_run:
        warnings.append(f"Starting from your SFT run {a.sft_run} needs its adapter, so LoRA or QLoRA; full "
                        "fine-tuning starts from the base model (or set the model to a fully fine-tuned one).")
    else:
        warnings.append(f"{name} only shifts the odds between answers the model can already give. If it does not "
                        "yet answer in the form you want (try the base model on Chat), train SFT first, on the "
                        f"chosen answers or on ideal ones, then come back: {name} starts from that run (init_from).")



def _grpo_advice(a: Answers, reasons: list[str], would: list[str], warnings: list[str]) -> None:
    """GRPO: why a checker can teach here, what it needs (prompts, rewards that separate answers), and
    what the data hold."""
    fmt, data = a.data_format, a.data_name
    scarce = a.examples < MIN_EXAMPLES and a.feedback == "sft"
    reasons.insert(1, ("Ideal answers are scarce, but a program can check an answer: " if scarce else
                       "A program can check an answer: ")
                   + "GRPO learns from that checker. It samples several answers to each prompt, scores them with "
                     "reward functions (json_valid, json_keys, regex, matches_reference, or your own) and makes the "
                     "better ones likelier. It needs prompts, not ideal answers.")
    would.insert(0, f"With {MIN_EXAMPLES}+ ideal answers (better: a few hundred), SFT is simpler and faster: it learns "
                    "to write them directly; GRPO can then polish the result against the checker.")
    warnings.append("GRPO only reinforces answers the model already sometimes gets right: before training, use "
                    "\"try the rewards\" on Data (key r) to see that the base model's sampled answers get different "
                    "scores. If all score 0, loosen the rewards (json_valid before json_keys) or train SFT first on "
                    "a few ideal answers.")
    if a.gpu_memory is None:
        warnings.append(f"GRPO writes {GRPO_GENERATIONS} answers to every prompt at each step: on a CPU keep them "
                        f"short (max_completion_length {GRPO_COMPLETION}) and the model small, such as the demo's.")
    if fmt in ("preference", "kto"):
        warnings.append(f"{data} holds judged answers: {'DPO' if fmt == 'preference' else 'KTO'} learns from those "
                        "judgements directly; GRPO would use only their prompts.")
    elif fmt == "prompt_only":
        reasons.append(f"{data} holds prompts without answers: exactly what GRPO trains on.")
    elif fmt is not None:
        reasons.append(f"GRPO uses the prompts of {data}; their answers, where there are any, can serve as the "
                       "reference for the matches_reference reward.")
    if not a.rewards:
        warnings.append("Name the reward functions on Train (Rewards, e.g. \"json_valid, json_keys:name|date\"): "
                        "GRPO has nothing to learn from without them.")
