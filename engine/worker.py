"""The training process: ``python -m engine.worker RUN_DIR [--resume]``.

Started detached by ``engine.launch`` (its own session, stdin /dev/null, stdout and stderr to
``worker.log``); everything a viewer needs goes to the run folder:

- ``events.jsonl``: a ``start`` event when the training loop begins (``step`` is where it begins:
  0, or the checkpoint step when resuming, see ``engine.run_state.effective_events``), a ``log`` event at
  every logging step (flushed), ``eval``, ``checkpoint``, ``status`` (progress while loading),
  ``error`` and a final ``end``.
- ``status.json``: state, pid, step, max_steps, last_loss, tokens_per_second, best_eval_loss.

``tokens_per_second`` counts *input* tokens: every non-padding token of each training sequence
(prompt and completion alike), divided by the time spent in training steps since the previous log
(evaluation and checkpoint saving are left out).

Objectives (``objective`` in the config): ``sft`` trains TRL's ``SFTTrainer``, ``dpo`` its
``DPOTrainer`` on chosen/rejected pairs, ``kto`` its ``KTOTrainer`` on answers labelled good or bad
(pairs are split into one of each), ``grpo`` its ``GRPOTrainer`` on prompts and reward functions (see
GRPO below); ``build_trainer`` picks the trainer, everything else (events, status, stop, resume,
NaN/OOM sentences, several processes) is the same code for all four. Every
trainer gets rows tokenised by ``engine.data.encode`` (the one mask): ``input_ids`` +
``completion_mask`` for SFT; ``chosen_input_ids``/``chosen_completion_mask`` and the rejected ones for
DPO; ``input_ids``/``completion_mask``/``label`` for KTO. TRL 1.16's DPO and KTO trainers tokenise
their data themselves (``_prepare_dataset``); here that step is skipped and a collator builds the
batches TRL's loss reads (``input_ids``, ``attention_mask``, ``completion_mask``, and KTO's
``KL_*`` sequences and ``label``), so they score exactly the tokens the Data screen shows as trained.
The reference model: with LoRA/QLoRA and a new adapter the same base with the adapter disabled (the
model goes to TRL unwrapped with a ``peft_config``, so TRL keeps no reference model: no second copy
of the weights); started from an earlier run's adapter (``init_from``) TRL keeps a frozen copy of that
adapter as the reference (the SFT model, as DPO after SFT wants; adapter-sized, not model-sized); full
fine-tuning keeps a second, frozen copy of the model. DPO and KTO batches are padded (TRL 1.16 has no
padding-free path for them); the log says so. The events carry TRL's metric names as they are:
``rewards/accuracies``, ``rewards/margins``, ``rewards/chosen``, ``rewards/rejected``,
``logps/chosen``, ``logps/rejected``, ``kl`` (KTO), and ``eval_`` + each in eval events.

GRPO (``objective: grpo``): rows are prompts (``{"prompt": messages, "reference"}``, any layout the data
reads; TRL renders them with the chat template), TRL's ``GRPOTrainer`` (``grpo_trainer``) samples
``num_generations`` answers per prompt with transformers' ``generate`` (no vLLM): one batched call per
step for the whole batch (``batch_size`` answers), the KV cache on, at most ``max_completion_length``
tokens each, and scores them with the run's rewards (engine.rewards; a ``reward_file`` is loaded only
when named). The reference (beta > 0) is the base with the adapter disabled, as for DPO; TRL's default
beta 0 keeps none. Log events carry TRL's names: ``reward``, ``reward_std``, ``rewards/<name>/mean``,
``completions/mean_length``, ``kl`` (beta > 0), plus Tunedeck's ``full_marks`` (the share of the step's
answers at the highest possible total); a ``samples`` event at each logging step holds up to
``SAMPLES_SHOWN`` of the step's answers ``{prompt, completion, scores, reward}``; status.json gets
``reward`` and ``full_marks``. A reward that raises ends the run ``failed`` with one sentence.

Replay (``replay: 0.1``, SFT): before training, the base model (adapter off) answers general prompts
once; its answers are cached in the run folder as ``replay.jsonl`` (a resume reuses them) and mixed
into the training rows at the asked share (engine.replay).

Checkpoints: every ``save_steps`` steps, and also once ``CHECKPOINT_EVERY_SECONDS`` have passed since
the last one (slow machines), and at the end of the step in which a stop was asked for.

Signals: SIGHUP is ignored; SIGTERM (or SIGINT) asks for a stop: the current step finishes, a
checkpoint is saved, the adapter (or model) is written, and the run ends ``stopped``. A NaN/inf loss
ends the run ``failed`` with a sentence saying what to try; so does running out of memory; any other
exception ends it ``failed`` with the exception's one-line message, the traceback only in worker.log.

Several processes (started by ``accelerate launch``/torchrun, which set ``RANK`` and ``WORLD_SIZE``):
every process trains; only the main one (global rank 0) writes events.jsonl, status.json, the
``[tunedeck …]`` lines of worker.log and the final adapter (the trainer itself saves checkpoints from
the main process only). The recorded pid stays the launcher's. Decisions that end or interrupt
training are agreed at the end of every step with one small all-reduce, so all processes stop at the
same step and none is left waiting in a collective: a stop request (torchrun forwards SIGTERM to
every worker, but not necessarily within the same step) and the time-based checkpoint (each process
has its own clock); the NaN check at log steps too (its inputs are already all-gathered, the
all-reduce makes the agreement explicit). One process trains with none of these collectives. A
worker whose launcher disappears (killed) ends itself, so no orphan trains on.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from .batching import LargestBatch, liger_available, padding_free_is_exact
from .packing import attention_implementation
from .config import METHOD_NAMES, OBJECTIVE_NAMES, RunConfig
from .errors import DataError, TunedeckError
from .data.dataset import mix_label
from .run_state import effective_events
from .runs import BEST_FILE, Run, RunBusy, lock_run, process_identity, swap_in, write_json_atomic

# Besides every ``save_steps`` steps, a checkpoint is saved when this long has passed since the last
# one, so a crash on a slow machine never loses more than about this much training.
def checkpoint_seconds() -> float:
    """TUNEDECK_CHECKPOINT_SECONDS: a checkpoint at least this often (default 600). ``tunedeck train``
    refuses a bad value before it starts; a worker started by hand falls back to the default."""
    try:
        value = float(os.environ.get("TUNEDECK_CHECKPOINT_SECONDS", "600"))
    except ValueError:
        return 600.0
    return value if value > 0 and math.isfinite(value) else 600.0


CHECKPOINT_EVERY_SECONDS = checkpoint_seconds()
# status.json is rewritten at most this often while training (viewers poll about once a second);
# events.jsonl still gets every log step at once.
STATUS_EVERY_SECONDS = 0.5


def _say(text: str) -> None:
    print(f"[tunedeck {time.strftime('%H:%M:%S')}] {text}", flush=True)


def world() -> tuple[int, int, int]:
    """(global rank, world size, local rank) as torchrun sets them; (0, 1, 0) for one process."""
    env = os.environ
    return int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0"))


def several_processes(cfg: RunConfig) -> bool:
    return cfg.processes > 1 or bool(cfg.accelerate_config) or world()[1] > 1


# --- data --------------------------------------------------------------------------------------
def load_examples(ref, *, split: str = "train", seed: int | None = None, objective: str | None = None) -> list[dict]:
    """The examples of a data reference (hub ids and mixes included) read for ``objective``: data of
    another kind is refused with one sentence (RefusedData), e.g. pairs for SFT or chat data for DPO."""
    from .data import dataset, hub

    seed = dataset.DEFAULT_SEED if seed is None else seed
    if isinstance(ref, (list, tuple)):
        return dataset.load_mix(ref, lambda one, split: load_examples(one, split=split, objective=objective),
                                split=split, seed=seed)
    if dataset.is_local(ref):
        return dataset.load_examples(ref, split=split, objective=objective)
    return dataset.load_examples(hub.open_hub(ref.strip(), split), split=split, objective=objective)


def load_splits(cfg: RunConfig) -> tuple[list[dict], list[dict]]:
    """(train examples, eval examples): ``split_examples`` without the test set."""
    train, evaluation, _ = split_examples(cfg)
    return train, evaluation


def split_examples(cfg: RunConfig, *, with_eval: bool | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, eval, test examples), the one place a run's data is split. ``data`` may be a list of
    sources: they are mixed, seeded by ``seed`` (engine.data.dataset.mix). The test set comes first:
    ``test_data``, or ``test_split`` of the rows (seeded); no training decision sees it. The eval set
    (which guides early stopping and the best weights) is, in order of preference: ``eval_data``, the
    data's own validation split, or ``eval_split`` of the remaining rows (seeded); none when eval is
    off (``with_eval`` overrides). Rows are read for the run's objective."""
    from .data import has_validation_split

    objective = cfg.objective
    train = load_examples(cfg.data, split="train", seed=cfg.seed, objective=objective)
    test: list[dict] = []
    if cfg.test_data:
        test = load_examples(cfg.test_data, split="train", objective=objective)
    elif cfg.test_split > 0 and len(train) > 2:
        train, test = _hold_out(train, cfg.test_split, seed=cfg.seed + 1)
    if not (cfg.eval_steps != 0 if with_eval is None else with_eval):
        return train, [], test
    if cfg.eval_data:
        return train, load_examples(cfg.eval_data, split="train", objective=objective), test
    if has_validation_split(cfg.data):
        return train, load_examples(cfg.data, split="validation", objective=objective), test
    if cfg.eval_split <= 0 or len(train) < 2:
        return train, [], test
    train, evaluation = _hold_out(train, cfg.eval_split, seed=cfg.seed)
    return train, evaluation, test


def _hold_out(rows: list[dict], share: float, *, seed: int) -> tuple[list[dict], list[dict]]:
    """(the rows kept, ``share`` of them held out), chosen by ``seed``; at least one of each."""
    import random

    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n = min(len(rows) - 1, max(1, round(len(rows) * share)))
    held = set(order[:n])
    return [ex for i, ex in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def encode_rows(tokenizer, examples: list[dict], max_length: int, *,
                special_token_text: str = "literal") -> tuple[list[dict], dict]:
    """Training rows ({input_ids, completion_mask}) through the one mask code path, plus counts of
    what was truncated or skipped (rows left with no trained token train nothing). A DataError (one
    sentence) when the rows need what the tokenizer cannot do, such as tools its template ignores.
    ``special_token_text`` is the run's setting of that name (literal: such text stays text)."""
    from .data.encode import encode

    rows, truncated, empty = [], 0, 0
    for example in examples:
        enc = encode(tokenizer, example, max_length, special_token_text=special_token_text)
        truncated += enc.truncated
        if not any(enc.trained):
            empty += 1
            continue
        rows.append(enc.as_training_row())
    return rows, {"truncated": truncated, "skipped": empty}


PAIR_COLUMNS = ("chosen_input_ids", "chosen_completion_mask", "rejected_input_ids", "rejected_completion_mask")
LABELLED_COLUMNS = ("input_ids", "completion_mask", "label")


def encode_preference_rows(tokenizer, examples: list[dict], cfg: RunConfig, *,
                           shuffle: bool = False) -> tuple[list[dict], dict]:
    """Training rows for DPO (``PAIR_COLUMNS``: prompt + chosen and prompt + rejected, each with its
    mask) or KTO (``LABELLED_COLUMNS``; a pair gives a good and a bad answer), through the one mask
    code path (engine.data.encode), plus counts: truncated, skipped (a side with no trained token
    left), pairs, good, bad. KTO rows are shuffled (seeded) when ``shuffle``: TRL reads them in order,
    as the KL term pairs each prompt with the answer of the row before it in the batch."""
    from .data import formats
    from .data.encode import encode_sides

    limits = {"max_prompt_length": cfg.max_prompt_length, "max_completion_length": cfg.max_completion_length,
              "special_token_text": cfg.special_token_text}
    rows, counts = [], {"truncated": 0, "skipped": 0, "pairs": 0, "good": 0, "bad": 0}
    for example in examples:
        if cfg.objective == "dpo":
            chosen, rejected = encode_sides(tokenizer, example, cfg.max_length, **limits)
            counts["truncated"] += chosen.truncated or rejected.truncated
            if not any(chosen.trained) or not any(rejected.trained):
                counts["skipped"] += 1
                continue
            counts["pairs"] += 1
            rows.append({"chosen_input_ids": chosen.input_ids, "chosen_completion_mask": [int(t) for t in chosen.trained],
                         "rejected_input_ids": rejected.input_ids,
                         "rejected_completion_mask": [int(t) for t in rejected.trained]})
            continue
        for answer in formats.unpair(example):
            enc = encode_sides(tokenizer, answer, cfg.max_length, **limits)[0]
            counts["truncated"] += enc.truncated
            if not any(enc.trained):
                counts["skipped"] += 1
                continue
            counts["good" if answer["label"] else "bad"] += 1
            rows.append({**enc.as_training_row(), "label": bool(answer["label"])})
    if shuffle and cfg.objective == "kto":
        import random

        random.Random(cfg.seed).shuffle(rows)
    return rows, counts


def row_lengths(rows: list[dict]) -> list[int]:
    """The token length of every sequence the rows train (a pair: chosen and rejected)."""
    out = []
    for row in rows:
        out += [len(row[k]) for k in ("input_ids", "chosen_input_ids", "rejected_input_ids") if k in row]
    return out


def _first_trained(mask: list[int]) -> int:
    return next((k for k, m in enumerate(mask) if m), len(mask))


def _pad(seqs: list[list[int]], masks: list[list[int]], pad_id: int, prefix: str = "") -> dict:
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    comp = torch.zeros((len(seqs), width), dtype=torch.long)
    for k, (seq, mask) in enumerate(zip(seqs, masks)):
        ids[k, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        att[k, :len(seq)] = 1
        comp[k, :len(mask)] = torch.tensor(mask, dtype=torch.long)
    return {f"{prefix}input_ids": ids, f"{prefix}attention_mask": att, f"{prefix}completion_mask": comp}


@dataclasses.dataclass
class PairCollator:
    """A DPO batch as TRL 1.16's DPOTrainer reads it: the chosen sequences then the rejected ones, padded
    on the right, ``completion_mask`` the encode() mask of each (TRL scores the tokens it marks)."""

    pad_token_id: int

    def __call__(self, rows: list[dict]) -> dict:
        seqs = [r["chosen_input_ids"] for r in rows] + [r["rejected_input_ids"] for r in rows]
        masks = [r["chosen_completion_mask"] for r in rows] + [r["rejected_completion_mask"] for r in rows]
        return _pad(seqs, masks, self.pad_token_id)


@dataclasses.dataclass
class LabelledCollator:
    """A KTO batch as TRL 1.16's KTOTrainer reads it: the answers with their masks and labels, and the
    KL sequences: each prompt with the answer of the row before it in the batch (the first with the
    last), TRL's own pairing, built from the same encoded tokens."""

    pad_token_id: int
    kl: bool = True
    max_length: int | None = None

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        seqs, masks = [r["input_ids"] for r in rows], [r["completion_mask"] for r in rows]
        out = _pad(seqs, masks, self.pad_token_id)
        if self.kl:
            cuts = [_first_trained(m) for m in masks]
            prompts = [s[:c] for s, c in zip(seqs, cuts)]
            answers = [(s[c:], m[c:]) for s, m, c in zip(seqs, masks, cuts)]
            answers = answers[-1:] + answers[:-1]
            kl_seqs = [(p + a)[:self.max_length] for p, (a, _) in zip(prompts, answers)]
            kl_masks = [([0] * len(p) + m)[:self.max_length] for p, (_, m) in zip(prompts, answers)]
            out.update(_pad(kl_seqs, kl_masks, self.pad_token_id, prefix="KL_"))
        out["label"] = torch.tensor([bool(r["label"]) for r in rows])
        return out


# --- the trainer -------------------------------------------------------------------------------
def device_plan() -> dict:
    """Where and in which precision to train: bf16 only where the hardware supports it."""
    import torch

    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        index = world()[2]  # this process's GPU under torchrun; 0 alone
        return {"device": "cuda", "name": f"cuda:{index} ({torch.cuda.get_device_name(index)})", "bf16": bf16,
                "fp16": not bf16, "dtype": torch.bfloat16 if bf16 else torch.float16,
                "attention": attention_implementation("cuda"), "liger": liger_available("cuda")}
    return {"device": "cpu", "name": "cpu", "bf16": False, "fp16": False, "dtype": torch.float32,
            "attention": attention_implementation("cpu"), "liger": False}


def training_device(plan: dict) -> str:
    """The device this process trains on: its own GPU under torchrun (LOCAL_RANK), else the CPU."""
    return f"cuda:{world()[2]}" if plan["device"] == "cuda" else "cpu"


def resolve_init_from(cfg: RunConfig) -> tuple[Path, dict]:
    """(the adapter folder ``init_from`` names, what it is for the start event). Run.weights() finds it:
    the run's final adapter, else its newest checkpoint. One sentence when it is not an adapter of
    this run's base model."""
    from .config import ConfigError
    from .runs import get_run

    ref = cfg.init_from
    try:
        earlier = get_run(ref)
        weights = earlier.weights()
    except TunedeckError as exc:
        raise ConfigError(f"init_from: {exc}") from None
    if not weights.is_adapter:
        raise ConfigError(f"init_from: run {earlier.id} was fully fine-tuned (its {weights.label}/ holds a whole model, "
                          "no adapter); to start from it, set model: to that folder and remove init_from.")
    theirs = str(earlier.config().get("model") or "")

    def same(a: str, b: str) -> bool:
        pa, pb = Path(a).expanduser(), Path(b).expanduser()
        return a == b or (pa.exists() and pb.exists() and pa.resolve() == pb.resolve())

    if theirs and not same(theirs, cfg.model):
        raise ConfigError(f"init_from: run {earlier.id} trained an adapter for the model {theirs}, but this run's model "
                          f"is {cfg.model}; an adapter only fits the model it was trained on, so use model: {theirs}.")
    return weights.path, {"run": earlier.id, "weights": weights.label, "path": str(weights.path)}


def lora_config(cfg: RunConfig):
    from peft import LoraConfig

    lora = cfg.lora
    targets = lora.targets if isinstance(lora.targets, str) else list(lora.targets)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")


def load_model_for(cfg: RunConfig, plan: dict, progress=None, *, init_adapter: Path | None = None):
    """(model ready to train, tokenizer with a chat template) for ``cfg.method``.

    With ``init_from`` (or ``init_adapter``, its folder) the earlier run's adapter is loaded trainable
    on the base. For DPO/KTO with a new adapter the base comes back unwrapped: ``build_trainer`` gives
    TRL the LoRA config, so TRL's reference is this base with the adapter disabled (no copy); so for GRPO."""
    import torch

    from . import models
    from .data.encode import ensure_chat_template

    kwargs: dict = {}
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        compute = plan["dtype"] if plan["device"] == "cuda" else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["device_map"] = {"": world()[2] if plan["device"] == "cuda" else "cpu"}
        dtype = compute
    elif cfg.method == "lora" and plan["device"] == "cuda":
        dtype = plan["dtype"]  # frozen base in half precision; adapters stay float32
    else:
        dtype = torch.float32  # full fine-tuning keeps float32 master weights (autocast on GPUs)
    kwargs["attn_implementation"] = plan.get("attention") or attention_implementation(plan["device"])
    model, tokenizer = models.load_model(cfg.model, dtype=dtype, progress=progress, **kwargs)
    ensure_chat_template(tokenizer)

    if cfg.method == "qlora":
        from peft import prepare_model_for_kbit_training

        _keep_4bit_layout_trainable(model)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    if cfg.uses_adapter and (cfg.init_from or init_adapter is not None):
        from peft import PeftModel

        folder = init_adapter if init_adapter is not None else resolve_init_from(cfg)[0]
        model = PeftModel.from_pretrained(model, str(folder), is_trainable=True)
    elif cfg.uses_adapter and cfg.objective == "sft":
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg))
    return model, tokenizer


def _keep_4bit_layout_trainable(model) -> None:
    """bitsandbytes 0.50 repacks 4-bit weights into an inference-only CPU layout the first time a layer
    runs in eval mode without gradients (AVX512-BF16 CPUs), and that repacking fails for layers whose
    width is not a multiple of 64. Evaluation happens in the middle of training here, so keep the
    training layout."""
    try:
        import bitsandbytes as bnb
    except ImportError:  # pragma: no cover - qlora is refused before start without it
        return
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def sft_config(cfg: RunConfig, output_dir: Path, plan: dict, *, has_eval: bool, padding_free: bool = False):
    """``padding_free``: rows concatenated per batch (already truncated to max_length by encode(), so
    TRL is given no max_length to enforce); otherwise padded to the longest row of each batch."""
    from trl import SFTConfig

    return _trainer_args(SFTConfig, cfg, output_dir, plan, has_eval=has_eval,
                         max_length=None if padding_free else cfg.max_length,
                         completion_only_loss=True,  # labels from our completion_mask (the encode() mask)
                         packing=False,
                         padding_free=padding_free,
                         # transformers 5: group_by_length became one of the training sampling strategies
                         **({"train_sampling_strategy": "group_by_length"} if cfg.group_by_length else {}),
                         use_liger_kernel=bool(plan.get("liger")))


def preference_config(cfg: RunConfig, output_dir: Path, plan: dict, *, has_eval: bool, balance: tuple | None = None):
    """TRL's DPOConfig or KTOConfig for the run: the same training arguments as SFT, plus beta and the
    loss. Sequences arrive cut by encode() (max_length and the prompt/answer limits), so TRL is given no
    max_length. KTO reads its rows in order (its KL term pairs neighbours); ``balance`` is KTO's
    (desirable_weight, undesirable_weight)."""
    if cfg.objective == "dpo":
        from trl import DPOConfig

        return _trainer_args(DPOConfig, cfg, output_dir, plan, has_eval=has_eval, max_length=None, beta=cfg.beta,
                             loss_type=[cfg.loss], padding_free=False)
    from trl import KTOConfig

    desirable, undesirable = balance or (1.0, 1.0)
    return _trainer_args(KTOConfig, cfg, output_dir, plan, has_eval=has_eval, max_length=None, beta=cfg.beta,
                         loss_type=cfg.loss, desirable_weight=desirable, undesirable_weight=undesirable,
                         train_sampling_strategy="sequential")


def trainer_config(cfg: RunConfig, output_dir: Path, plan: dict, *, has_eval: bool, padding_free: bool = False):
    """The TRL config of the run's objective (SFTConfig, DPOConfig or KTOConfig)."""
    if cfg.is_preference:
        return preference_config(cfg, output_dir, plan, has_eval=has_eval)
    return sft_config(cfg, output_dir, plan, has_eval=has_eval, padding_free=padding_free)


def _trainer_args(config_class, cfg: RunConfig, output_dir: Path, plan: dict, *, has_eval: bool, **specific):
    """The training arguments every objective shares, in ``config_class``, with the objective's own."""
    steps = {"max_steps": cfg.max_steps} if cfg.max_steps else {"num_train_epochs": cfg.epochs}
    # transformers 5 renamed gradient checkpointing; the old name still works but warns
    names = {f.name for f in dataclasses.fields(config_class)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    steps[checkpointing] = cfg.gradient_checkpointing
    return config_class(
        output_dir=str(output_dir),
        **steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        **specific,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN must reach our callback, not be averaged away
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps if has_eval else None,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=plan["bf16"],
        fp16=plan["fp16"] and cfg.method != "qlora",
        use_cpu=plan["device"] == "cpu",
        dataloader_num_workers=0,
        dataloader_pin_memory=plan["device"] == "cuda",
        # DDP: LoRA uses every trainable weight at every step; looking for unused ones costs a graph walk
        # per step and breaks with gradient checkpointing (the default for a PEFT model is to look).
        ddp_find_unused_parameters=False if several_processes(cfg) else None,
        report_to=tracker_setup(cfg, output_dir) or "none",
        disable_tqdm=True,
    )


def tracker_setup(cfg: RunConfig, output_dir: Path) -> list[str]:
    """The run's ``report_to`` trackers, with offline-friendly places in the run folder (``output_dir``'s
    parent): TensorBoard event files in tensorboard/, W&B offline (synced later with ``wandb sync``) when
    the Hub is offline or its server cannot be reached, MLflow's file store in mlruns/. A variable the
    user set wins."""
    trackers = list(getattr(cfg, "report_to", None) or [])
    run_dir = Path(output_dir).parent
    if "tensorboard" in trackers:
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run_dir / "tensorboard"))
    if "wandb" in trackers:
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        os.environ.setdefault("WANDB_NAME", run_dir.name)
        if "WANDB_MODE" not in os.environ and not _reachable("api.wandb.ai"):
            os.environ["WANDB_MODE"] = "offline"
    if "mlflow" in trackers:
        os.environ.setdefault("MLFLOW_TRACKING_URI", (run_dir / "mlruns").as_uri())
        os.environ.setdefault("MLFLOW_RUN_NAME", run_dir.name)
    if "trackio" in trackers:
        os.environ.setdefault("TRACKIO_DIR", str(run_dir / "trackio"))
    return trackers


def _reachable(host: str, port: int = 443, timeout: float = 1.5) -> bool:
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def build_trainer(cfg: RunConfig, model, tokenizer, train_rows: list[dict], eval_rows: list[dict],
                  output_dir: Path, plan: dict | None = None, callbacks=(), *, padding_free: bool = False):
    """The run's trainer over already tokenised rows, picked by objective. SFT: an SFTTrainer; TRL
    turns ``completion_mask`` into labels (-100 off the mask) when ``completion_only_loss`` is on, so
    training uses exactly the encode() mask. DPO/KTO: ``preference_trainer``. GRPO: ``grpo_trainer``."""
    from datasets import Dataset
    from trl import SFTTrainer

    plan = plan or device_plan()
    train_ds = Dataset.from_list(train_rows)
    eval_ds = Dataset.from_list(eval_rows) if eval_rows and cfg.eval_steps > 0 else None
    if cfg.is_preference:
        return preference_trainer(cfg, model, tokenizer, train_ds, eval_ds, output_dir, plan, callbacks)
    if cfg.is_grpo:
        return grpo_trainer(cfg, model, tokenizer, train_ds, eval_ds, output_dir, plan, callbacks)
    return SFTTrainer(
        model=model,
        args=sft_config(cfg, output_dir, plan, has_eval=eval_ds is not None, padding_free=padding_free),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )


def preference_trainer(cfg: RunConfig, model, tokenizer, train_ds, eval_ds, output_dir: Path, plan: dict,
                       callbacks=()):
    """TRL's DPOTrainer or KTOTrainer over rows encode() tokenised (``PAIR_COLUMNS``/``LABELLED_COLUMNS``).
    A base model without an adapter gets the run's LoRA config here, so that TRL itself wraps it and
    takes the reference from the same weights with the adapter disabled (``ref_model`` stays None)."""
    from accelerate.utils import is_peft_model

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad = tokenizer.pad_token_id
    peft_config = lora_config(cfg) if cfg.uses_adapter and not is_peft_model(model) else None
    balance = None
    if cfg.objective == "kto":
        from .data.formats import kto_weights

        labels = train_ds["label"]
        balance = kto_weights(sum(labels), len(labels) - sum(labels))
        collator = LabelledCollator(pad, kl=cfg.loss != "apo_zero_unpaired", max_length=cfg.max_length)
    else:
        collator = PairCollator(pad)
    trainer_class = _preference_trainer_class(cfg.objective)
    return trainer_class(
        model=model,
        ref_model=None,  # LoRA: the adapter disabled; init_from: TRL's frozen copy of it; full: TRL loads a copy
        args=preference_config(cfg, output_dir, plan, has_eval=eval_ds is not None, balance=balance),
        data_collator=collator,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=peft_config,
    )


_TRAINER_CLASSES: dict = {}


def _preference_trainer_class(objective: str):
    """TRL's DPOTrainer/KTOTrainer, told that the rows are already tokenised (their ``_prepare_dataset``
    would tokenise prompt/chosen/rejected text again) and which columns to keep."""
    if objective not in _TRAINER_CLASSES:
        from trl import DPOTrainer, KTOTrainer

        base, columns = (DPOTrainer, PAIR_COLUMNS) if objective == "dpo" else (KTOTrainer, LABELLED_COLUMNS)

        class Trainer(base):
            def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
                return dataset  # engine.data.encode did it: the one mask

            def _set_signature_columns_if_needed(self):
                if self._signature_columns is None:
                    self._signature_columns = list(columns)

        Trainer.__name__ = Trainer.__qualname__ = f"Tunedeck{base.__name__}"
        _TRAINER_CLASSES[objective] = Trainer
    return _TRAINER_CLASSES[objective]


# --- GRPO ---------------------------------------------------------------------------------------
SAMPLES_SHOWN = 4  # sampled answers written with each log step (a ``samples`` event)
# What GRPO logs besides the loss (TRL's names), and rewards/<name>/mean for each reward function;
# full_marks is Tunedeck's: the share of the step's answers whose weighted total is the highest possible.
GRPO_METRICS = ("reward", "reward_std", "full_marks", "completions/mean_length", "completions/clipped_ratio",
                "frac_reward_zero_std", "entropy")


# Held-out prompts GRPO evaluates on during training: each is answered num_generations times (sampled), so
# the demo's 60 took 105 s per evaluation on an H200 and would take many minutes on a CPU.
GRPO_EVAL_PROMPTS = 16


def grpo_metric(name: str) -> bool:
    return name in GRPO_METRICS or (name.startswith("rewards/") and name.endswith("/mean"))


def grpo_rows(tokenizer, examples: list[dict], cfg: RunConfig) -> tuple[list[dict], dict]:
    """GRPO's rows ``{"prompt": messages, "reference": str | None}`` (TRL renders each prompt with the chat
    template and samples ``num_generations`` answers to it), plus counts: prompts, with_reference, and
    ``too_long`` (a prompt that leaves fewer than max_completion_length tokens of max_length: skipped);
    ``lengths`` is each kept prompt's tokens plus max_completion_length (for the memory estimate)."""
    budget = cfg.max_length - cfg.max_completion_length
    rows, lengths, too_long = [], [], 0
    for ex in examples:
        text = tokenizer.apply_chat_template(ex["prompt"], tokenize=False, add_generation_prompt=True)
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if n > budget:
            too_long += 1
            continue
        rows.append({"prompt": ex["prompt"], "reference": ex.get("reference")})
        lengths.append(n + cfg.max_completion_length)
    return rows, {"prompts": len(rows), "with_reference": sum(r["reference"] is not None for r in rows),
                  "too_long": too_long, "lengths": lengths}


def grpo_config(cfg: RunConfig, output_dir: Path, plan: dict, *, has_eval: bool, weights: list[float]):
    """TRL's GRPOConfig for the run: generation with transformers (no vLLM), batched: every step samples
    ``batch_size`` answers (batch_size / num_generations prompts) in one ``generate`` call with the KV
    cache, at most max_completion_length tokens each; beta and the reward weights from the config."""
    from trl import GRPOConfig

    return _trainer_args(GRPOConfig, cfg, output_dir, plan, has_eval=has_eval, num_generations=cfg.num_generations,
                         max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                         beta=cfg.beta, reward_weights=weights,
                         use_vllm=False, log_completions=False, remove_unused_columns=False,
                         generation_kwargs={"use_cache": True})


def grpo_trainer(cfg: RunConfig, model, tokenizer, train_ds, eval_ds, output_dir: Path, plan: dict, callbacks=()):
    """TRL's GRPOTrainer over prompt rows, with the run's rewards (engine.rewards; a reward_file is loaded
    here, only because the config names it). A base model without an adapter gets the LoRA config, so TRL
    wraps it and its reference (beta > 0) is the same weights with the adapter disabled."""
    from accelerate.utils import is_peft_model

    from .rewards import build

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rewards = build(cfg.rewards, cfg.reward_file)
    peft_config = lora_config(cfg) if cfg.uses_adapter and not is_peft_model(model) else None
    return _grpo_trainer_class()(
        model=model,
        reward_funcs=rewards,
        args=grpo_config(cfg, output_dir, plan, has_eval=eval_ds is not None, weights=[r.weight for r in rewards]),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=peft_config,
    )


def _grpo_trainer_class():
    """GRPOTrainer that also measures the share of answers with full marks (a metric TRL logs with the
    others) and keeps a few of the step's sampled answers with their scores (the ``samples`` event)."""
    if "grpo" not in _TRAINER_CLASSES:
        from trl import GRPOTrainer

        from .rewards import completion_text, full_marks, prompt_text

        class TunedeckGRPOTrainer(GRPOTrainer):
            tunedeck_samples: dict | None = None

            def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
                per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
                mode = "train" if self.model.training else "eval"
                funcs = self.reward_funcs
                rows = [[None if math.isnan(v) else v for v in row] for row in per_func.tolist()]
                totals = [sum(r.weight * v for r, v in zip(funcs, row) if v is not None) for row in rows]
                if rows:
                    self._metrics[mode]["full_marks"].append(sum(full_marks(funcs, row) for row in rows) / len(rows))
                if mode == "train" and self.accelerator.is_main_process:
                    n, group = len(prompts), self.num_generations
                    picks = list(range(0, n, group))[:SAMPLES_SHOWN]  # one answer to each prompt first
                    picks += [i for i in range(n) if i not in picks][:SAMPLES_SHOWN - len(picks)]
                    self.tunedeck_samples = {"items": [
                        {"prompt": prompt_text(prompts[i]), "completion": completion_text(completions[i]),
                         "scores": {r.__name__: rows[i][k] for k, r in enumerate(funcs)}, "reward": totals[i]}
                        for i in sorted(picks)]}
                return per_func

        _TRAINER_CLASSES["grpo"] = TunedeckGRPOTrainer
    return _TRAINER_CLASSES["grpo"]


def reference_description(cfg: RunConfig) -> str:
    """What the run's reference model is, in words (for the start event and the log)."""
    if cfg.is_grpo and cfg.beta == 0:
        return "none (beta 0: no KL term, TRL's default)"
    if not (cfg.is_preference or cfg.is_grpo):
        return ""
    if not cfg.uses_adapter:
        return "a second, frozen copy of the model (full fine-tuning)"
    if cfg.init_from:
        return "the init_from adapter, frozen (TRL keeps a copy of the adapter, not of the model)"
    return "the same base with the adapter disabled (no second copy)"


def known_architecture(ref: str):
    """The estimate's Architecture of the model (engine.estimate), or None for one it does not know."""
    from . import model_shapes

    try:
        return model_shapes.architecture_for(ref)
    except TunedeckError:
        return None


def packing_pays(cfg: RunConfig, lengths: list[int], model, plan: dict, arch) -> tuple[bool, str]:
    """(pack?, why): the estimates' rule (engine.estimate.longest_batch) on this run's own rows; for a
    model the estimate does not know (``arch`` None), weighed on the loaded model's shape."""
    from . import estimate as E
    from .batching import model_shape

    shape = model_shape(model, full=cfg.method == "full") if arch is None else None
    return E.longest_batch(cfg, lengths, arch=arch, shape=shape, device=plan["device"])[2:]


def estimate_memory(cfg: RunConfig, plan: dict, lengths: list[int], arch) -> tuple[int | None, str | None]:
    """(the memory estimate for this run's largest real batch, the model's type): recorded beside the
    measured peak, and what later estimates are calibrated by. ``cfg.padding_free``: the worker's decision,
    taken as it is; ``arch``: known_architecture()."""
    from . import estimate as E

    if arch is None:  # an architecture the estimate does not know: no estimate, training goes on
        return None, None
    try:
        return E.estimate(arch, E.plan_for(cfg, device=plan["device"], lengths=lengths)).memory.total, arch.model_type
    except TunedeckError:
        return None, None


def peak_memory(plan: dict) -> dict:
    """What this process has used at most so far: on a GPU torch's allocator peak and what NVML says
    the process holds (context and cache included); on a CPU the resident set's high-water mark."""
    if plan["device"] == "cuda":
        import torch

        out = {"peak_memory": int(torch.cuda.max_memory_allocated()), "peak_memory_kind": "gpu"}
        from . import gpu

        held = gpu.process_memory(os.getpid())
        if held:
            out["peak_memory_nvml"] = held
        return out
    import resource

    return {"peak_memory": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak_memory_kind": "ram"}


def count_params(model) -> tuple[int, int]:
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":  # packed: two 4-bit weights per byte
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


# --- messages ----------------------------------------------------------------------------------
def oom_message(cfg: RunConfig, step: int, where: str) -> str:
    pairs = (f"; DPO runs each pair's chosen and rejected answers together, {2 * cfg.batch_size} sequences"
             if cfg.objective == "dpo" else "")
    knobs = [f"lower batch_size (now {cfg.batch_size}{pairs}) and raise gradient_accumulation_steps to keep the "
             f"effective batch", f"lower max_length (now {cfg.max_length})"]
    if cfg.is_grpo:
        knobs[1:1] = [f"lower max_completion_length (now {cfg.max_completion_length}) or num_generations (now "
                      f"{cfg.num_generations})"]
    if not cfg.gradient_checkpointing:
        knobs.append("set gradient_checkpointing: true")
    if cfg.method != "qlora":
        knobs.append("use method: qlora")
    return f"Out of memory on {where} at step {step}: " + ", ".join(knobs[:-1]) + f", or {knobs[-1]}."


def nan_message(cfg: RunConfig, step: int, what: str, value: float) -> str:
    suggest = min(cfg.learning_rate / 10, RunConfig.defaults_for(cfg.method, cfg.objective).learning_rate)
    return (f"The {what} became {value} at step {step}: training diverged; lower learning_rate "
            f"(now {cfg.learning_rate:g}, try {suggest:g}) and start again.")


def is_disk_full(exc: BaseException, folder: Path) -> bool:
    """ENOSPC, or a failed write (torch's zip writer says only "file write failed") with the disk
    nearly full: less free than the reserve we set aside."""
    import errno

    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc):
        return True
    try:
        return shutil.disk_usage(folder).free < RESERVE_BYTES
    except OSError:
        return False


def disk_full_message(run: Run, step: int) -> str:
    free = shutil.disk_usage(run.dir).free / 2**20
    cp = run.latest_checkpoint()
    resume = (f"`tunedeck resume {run.id}` continues from {cp.name}" if cp is not None
              else f"`tunedeck resume {run.id}` restarts from step 0")
    return (f"Disk full at {run.dir} ({free:.0f} MB free) at step {step}; free some space (`tunedeck delete` "
            f"removes old runs; a larger save_steps saves checkpoints less often) and {resume}.")


RESERVE_BYTES = 1 << 20  # kept free in the run folder so that a full disk can still be recorded


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) > 300:
        first = first[:297] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# --- the process -------------------------------------------------------------------------------
class Worker:
    def __init__(self, run: Run, *, resume: bool = False) -> None:
        self.run = run
        self.resume = resume
        self.cfg: RunConfig | None = None
        self.stop_requested = False
        self.failure: str | None = None
        self.step = 0
        self.max_steps: int | None = None
        self._writing = False
        self._pending_stop = False
        self.training = False
        self.stopped_early: int | None = None  # the step early stopping ended the run at
        self.rank, self.world, self.local_rank = world()
        self._parent = os.getppid()  # with several processes: the torchrun agent that started us
        self.main_process = self.rank == 0  # writes events, status and the adapter; every process trains

    # status and events -------------------------------------------------------------------------
    def status(self, **fields) -> None:
        if not self.main_process:
            return
        if self.stop_requested and fields.get("state") == "running":
            fields["state"] = "stopping"
        self._writing = True
        try:
            self.run.write_status(**fields)
        finally:
            self._writing = False
        if self._pending_stop:
            self._pending_stop = False
            self._write_stopping()

    def event(self, **event) -> None:
        if self.main_process:
            self.run.append_event(event)

    def say(self, text: str) -> None:
        if self.main_process:
            _say(text)

    def progress(self, message: str, fraction: float | None = None) -> None:
        self.say(message)
        self.event(type="status", message=message)
        self.status(message=message)

    # signals ----------------------------------------------------------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)

    def _on_stop_signal(self, signum, frame) -> None:
        if self.stop_requested:
            return
        self.stop_requested = True
        self.say(f"Received {signal.Signals(signum).name}: stopping after the current step.")
        if self._writing:
            self._pending_stop = True
        else:
            self._write_stopping()

    def _write_stopping(self) -> None:
        message = ("Stopping: finishing the current step, then saving a checkpoint."
                   if self.training else "Stopping before training begins.")
        self.status(state="stopping", message=message)

    @property
    def launcher_pid(self) -> int:
        """The pid a viewer watches: this process, or with several the torchrun agent that started them."""
        return os.getpid() if self.world == 1 else os.getppid()

    def _hold_lock(self) -> bool:
        """One worker per run folder. Started by ``engine.launch`` we inherited its lock (and hold it
        by living); started by hand we take it, and end at once if another worker has it."""
        inherited = os.environ.get("TUNEDECK_LOCK_FD")
        if inherited and inherited.isdigit():
            try:
                os.fstat(int(inherited))
                self._lock = int(inherited)
                return True
            except OSError:
                pass  # a process of several under a launcher: the launcher holds it
        if not self.main_process or self.world > 1:
            return True
        try:
            self._lock = lock_run(self.run)
        except RunBusy as exc:
            print(f"tunedeck worker: {exc}", flush=True)
            return False
        return True

    def _calibrate(self) -> None:
        """Teach later estimates of this kind of run what this one really used."""
        from . import calibration
        from .estimate import calibration_method

        status, info = self.run.read_status(), self.trainer_info
        largest = getattr(self, "largest_batch", None)
        if largest is None or not largest.lengths:
            return
        # the estimate for the largest batch this run really trained, against what the process held (on a GPU
        # NVML's figure: the estimate includes the CUDA context, torch's allocator peak does not)
        estimated, _ = estimate_memory(self.estimate_config, self.plan, largest.lengths, self.arch)
        measured = status.get("peak_memory_nvml") or status.get("peak_memory")
        self.status(estimated_memory_seen=estimated, largest_batch=len(largest.lengths),
                    largest_batch_tokens=largest.tokens)
        try:
            calibration.record(self.plan["device"], info.get("model_type"),
                               calibration_method(self.cfg.method, self.cfg.objective), estimated, measured)
        except OSError:
            pass  # a calibration not saved never fails a run

    def _tidy_run_folder(self) -> None:
        """We hold the run's lock: put back an output a kill left mid-swap, remove what killed saves
        left behind, and set aside a little disk space to record a full disk with."""
        run = self.run
        run.recover_outputs()
        for leftover in [*run.dir.glob(".adapter-*"), *run.dir.glob(".model-*"), *run.dir.glob(".best-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            with open(run.dir / ".reserve", "wb") as f:
                f.write(b"\0" * RESERVE_BYTES)
        except OSError:
            pass

    def _wait_for_launcher(self, timeout: float = 10.0) -> None:
        """The launcher records the pid (ours, or our torchrun parent's) in status.json right after
        starting it; wait for that write so two processes never write status.json at the same time.
        Started by hand (not by engine.launch) there is nobody to wait for."""
        if not self.main_process or not os.environ.get("TUNEDECK_SPAWNED"):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run.read_status().get("pid") == self.launcher_pid:
                return
            time.sleep(0.02)

    def _watch_launcher(self) -> None:
        """With several processes: end this one when its launcher is gone (killed), like a process that
        was itself killed; otherwise it would train on as an orphan no viewer can see or stop."""
        parent = self._parent

        def watch() -> None:
            while True:
                time.sleep(1.0)
                if os.getppid() != parent:
                    print(f"[tunedeck rank {self.rank}] the launcher (pid {parent}) is gone; ending.", flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, name="launcher-watch", daemon=True).start()

    def agree(self, flags: list[bool], device) -> list[bool]:
        """Each flag set if any process has it set (one all-reduce). Only with several processes."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def _check_same_start(self, trainer, checkpoint: Path | None) -> None:
        """Every process must resume from the same checkpoint (on several machines each reads its own
        copy of the run folder); otherwise they would train different steps and wait on each other."""
        import torch
        import torch.distributed as dist

        step = int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint is not None else 0
        t = torch.tensor([step, -step], dtype=torch.int64, device=trainer.args.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        high, low = int(t[0]), -int(t[1])
        if high != low:
            raise TunedeckError(
                f"The processes would resume from different checkpoints (steps {low} to {high}): with several "
                f"machines every one needs the main machine's {self.run.checkpoints_dir.name}/ folder (a shared "
                f"folder, or a copy of checkpoint-{high}) before resuming.")

    def stop_agreed(self) -> None:
        """Another process was asked to stop: so are we."""
        if not self.stop_requested:
            self.stop_requested = True
            self._write_stopping()

    def _init_adapter(self, cfg: RunConfig) -> tuple[Path | None, dict | None]:
        """The adapter ``init_from`` starts from: the one a previous attempt of this run started from
        (so a resume keeps the same reference even if ``latest`` now means another run), else resolved now."""
        if not cfg.init_from:
            return None, None
        for event in reversed(self.run.events()):
            recorded = event.get("init_from") if event.get("type") == "start" else None
            if isinstance(recorded, dict) and Path(str(recorded.get("path"))).is_dir():
                return Path(recorded["path"]), recorded
        path, info = resolve_init_from(cfg)
        self.say(f"Starting from the adapter of run {info['run']} ({info['weights']}); its LoRA settings apply"
                 + (" and it stays, frozen, as the reference model." if cfg.is_preference else "."))
        return path, info

    # the run ----------------------------------------------------------------------------------
    def main(self) -> int:
        if not self._hold_lock():
            return 1
        self.install_signals()
        if self.world > 1:
            self._watch_launcher()
        self._wait_for_launcher()
        try:
            self._train()
        except BaseException as exc:  # noqa: BLE001 - every ending is recorded
            return self._fail_from(exc)
        return 0

    def _fail_from(self, exc: BaseException) -> int:
        if self.world > 1 and os.getppid() != self._parent:
            # The launcher was killed and a peer that noticed first is gone: end as they did (the run
            # shows crashed), rather than report the broken connection as the run's failure.
            print(f"[tunedeck rank {self.rank}] the launcher (pid {self._parent}) is gone; ending.", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        if is_disk_full(exc, self.run.dir):
            (self.run.dir / ".reserve").unlink(missing_ok=True)  # room to write how it ended
            message = disk_full_message(self.run, self.step)
        elif isinstance(exc, TunedeckError):
            message = str(exc)
        elif is_oom(exc):
            plan = getattr(self, "plan", None) or {"name": "this device"}
            message = oom_message(self.cfg or RunConfig(), self.step, plan["name"])
        elif self.world > 1 and (type(exc).__name__ == "DistBackendError" or "closed by peer" in str(exc)):
            message = (f"Another of the {self.world} training processes ended unexpectedly at step {self.step} "
                       "(killed, or out of memory?); worker.log has each process's last lines.")
        elif self.world > 1:
            message = f"{one_line(exc)} (process {self.rank} of {self.world}; the traceback is in worker.log)."
        else:
            message = f"{one_line(exc)} (the traceback is in worker.log)."
        self._finish("failed", message, error=True)
        try:  # after the status: on a full disk even the log may refuse it
            if not self.main_process:  # its own failure is news: say which process it was
                print(f"[tunedeck rank {self.rank}] failed: {message}", flush=True)
            traceback.print_exc()
        except OSError:
            pass
        return 1

    def _finish(self, state: str, message: str, *, error: bool = False) -> None:
        if state in ("completed", "stopped") and self.main_process and getattr(self, "trainer", None) is not None:
            self._calibrate()
        if error:
            self.event(type="error", step=self.step, message=message)
        self.event(type="end", step=self.step, state=state, message=message)
        self.status(state=state, message=message, step=self.step, ended=round(time.time(), 3))
        try:
            self.say(f"{state}: {message}")
        except OSError:  # the log's disk may be full; the status already says how it ended
            pass

    def _train(self) -> None:
        run = self.run
        extra = {"processes": self.world} if self.world > 1 else {}
        if not os.environ.get("TUNEDECK_SPAWNED") and self.world == 1:  # started by hand: no launcher recorded us
            extra.update(process_identity(os.getpid()))
        self.status(state="starting", started=round(time.time(), 3), ended=None, message="Loading libraries…",
                    **extra)
        if self.main_process:
            self._tidy_run_folder()
        self.cfg = cfg = RunConfig.load(run.config_path)
        checkpoint = run.latest_checkpoint() if self.resume else None
        if checkpoint is not None:
            self.step = int(checkpoint.name.rsplit("-", 1)[1])
        if self.resume:  # where training picks up, not where the previous attempt got to
            self.status(step=self.step)
        self.progress("Loading libraries…")
        if cfg.method != "qlora":
            # Only QLoRA needs bitsandbytes, and importing it costs seconds (it loads torch's compiler);
            # peft and transformers import it whenever it is installed. Mark it absent for this run.
            sys.modules.setdefault("bitsandbytes", None)
        import torch  # noqa: F401 - the slow import, timed in the log
        import transformers

        # the other processes' warnings would only repeat the main one's
        (transformers.logging.set_verbosity_warning if self.main_process else transformers.logging.set_verbosity_error)()
        self.plan = plan = device_plan()
        if cfg.objective != "sft" or not cfg.liger_kernels:
            # DPO/KTO: TRL's trainers patch the LM head themselves (Liger is SFT's). SFT: opt-in, since on an
            # H200 (bench/gpu_check.py) Liger made LoRA 1.6-2.2x slower than plain SDPA.
            plan["liger"] = False
        init_adapter, init_info = self._init_adapter(cfg)
        self.progress(f"Loading model {cfg.model} for {METHOD_NAMES[cfg.method]} on {plan['name']}…")
        model, tokenizer = load_model_for(cfg, plan, progress=self.progress, init_adapter=init_adapter)
        self.progress(f"Reading data {mix_label(cfg.data)}…")
        train_ex, eval_ex, test_ex = split_examples(cfg)
        self.progress(f"Tokenising {len(train_ex) + len(eval_ex)} examples…")
        notes = [f"{len(test_ex)} examples kept apart as the test set"] if test_ex else []
        replay_info = None
        lengths = None
        if cfg.is_grpo:
            train_rows, counts = grpo_rows(tokenizer, train_ex, cfg)
            eval_rows, _ = grpo_rows(tokenizer, eval_ex, cfg)
            if len(eval_rows) > GRPO_EVAL_PROMPTS:  # each is sampled num_generations times at every evaluation
                notes.append(f"evaluation during training samples {GRPO_EVAL_PROMPTS} of the {len(eval_rows)} held-out "
                             "prompts (tunedeck eval uses them all)")
                eval_rows = eval_rows[:GRPO_EVAL_PROMPTS]
            lengths = counts["lengths"]
            if not train_rows:
                raise DataError(f"None of the {len(train_ex)} prompts of {mix_label(cfg.data)} leaves room for an answer "
                                f"of max_completion_length={cfg.max_completion_length} tokens within max_length="
                                f"{cfg.max_length}; raise max_length or shorten the prompts.")
            if counts["too_long"]:
                notes.append(f"{counts['too_long']} prompts longer than max_length - max_completion_length were skipped")
        elif cfg.is_preference:
            train_rows, counts = encode_preference_rows(tokenizer, train_ex, cfg, shuffle=True)
            eval_rows, _ = encode_preference_rows(tokenizer, eval_ex, cfg)
            unit = "pairs" if cfg.objective == "dpo" else "answers"
            if not train_rows:
                raise DataError(f"None of the {len(train_ex)} training examples of {mix_label(cfg.data)} keeps an answer "
                                f"token to train after the cut at max_length={cfg.max_length}; raise max_length (or "
                                "max_prompt_length) or shorten the prompts.")
            if counts["truncated"]:
                notes.append(f"{counts['truncated']} {unit} were cut to the length limits")
            if counts["skipped"]:
                notes.append(f"{counts['skipped']} {unit} kept no answer token after the cut and were skipped")
        else:
            train_rows, counts = encode_rows(tokenizer, train_ex, cfg.max_length,
                                             special_token_text=cfg.special_token_text)
            eval_rows, _ = encode_rows(tokenizer, eval_ex, cfg.max_length, special_token_text=cfg.special_token_text)
            if not train_rows:
                raise DataError(f"None of the {len(train_ex)} training examples of {cfg.data} has a token to train "
                                f"after truncation to max_length={cfg.max_length}; raise max_length or check that "
                                "the examples have assistant replies.")
            if counts["truncated"]:
                notes.append(f"{counts['truncated']} examples were cut to max_length={cfg.max_length}")
            if counts["skipped"]:
                notes.append(f"{counts['skipped']} examples had no token to train and were skipped")
            if cfg.replay:
                train_rows, replay_info = self._mix_replay(cfg, model, tokenizer, plan, train_rows)
                if replay_info["mixed"]:
                    notes.append(f"{replay_info['mixed']} of them general examples answered by the base model (replay)")
        padding_free = False
        sizes = lengths if lengths is not None else row_lengths(train_rows)
        self.arch = known_architecture(cfg.model)
        if cfg.is_grpo:
            self.say(f"Generation: {cfg.batch_size} answers a step ({cfg.batch_size // cfg.num_generations} prompts x "
                     f"{cfg.num_generations}) sampled at temperature {cfg.temperature:g} in one batched generate() "
                     f"call with the KV cache, at most {cfg.max_completion_length} tokens each; then scored by "
                     f"{len(cfg.rewards)} reward functions.")
        elif cfg.is_preference:
            self.say(f"Padding each batch (not padding-free): TRL 1.16's {OBJECTIVE_NAMES[cfg.objective]} trainer scores "
                     f"{'the chosen and the rejected answer' if cfg.objective == 'dpo' else 'each answer'} as a row of "
                     "a padded batch; it has no padding-free path for this objective.")
        elif cfg.padding_free:
            padding_free, why = packing_pays(cfg, sizes, model, plan, self.arch)
            if padding_free:
                padding_free, exact = padding_free_is_exact(model, train_rows, training_device(plan))
                why = f"{exact}; {why}" if padding_free else exact
            self.say(("Padding-free batching: " if padding_free else "Padding each batch (not padding-free): ") + why)
        kernels = [f"attention {plan['attention']}", "bf16" if plan["bf16"] else "fp16" if plan["fp16"] else "fp32"]
        if plan.get("liger"):
            kernels.append("Liger kernels")
        self.say("Kernels: " + ", ".join(kernels))
        self.estimate_config = dataclasses.replace(cfg, padding_free=padding_free)
        estimated, model_type = estimate_memory(self.estimate_config, plan, sizes, self.arch)
        info = {
            "num_examples": len(train_rows), "num_eval_examples": len(eval_rows), "method": cfg.method,
            "objective": cfg.objective, "device": plan["name"],
            "resumed_from": checkpoint.name if checkpoint is not None else None, "notes": notes,
            "batching": "padding-free" if padding_free else "padded", "kernels": kernels,
            "estimated_memory": estimated, "model_type": model_type,
        }
        if cfg.is_preference:
            info.update(loss_type=cfg.loss, beta=cfg.beta, reference=reference_description(cfg))
            info.update({k: counts[k] for k in ("pairs", "good", "bad") if counts[k]})
        if cfg.is_grpo:
            from .rewards import reward_names, rewards_text

            info.update(beta=cfg.beta, reference=reference_description(cfg), num_generations=cfg.num_generations,
                        max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                        rewards=reward_names(cfg.rewards),
                        rewards_text=rewards_text(cfg.rewards), with_reference=counts["with_reference"])
            if cfg.reward_file:
                info["reward_file"] = str(Path(cfg.reward_file).expanduser())
        if init_info:
            info["init_from"] = init_info
        if replay_info:
            info["replay"] = {k: replay_info[k] for k in ("share", "wanted", "mixed", "cached")}
        if checkpoint is not None:
            info["tokens_before"] = tokens_logged_until(run, self.step)
        if self.world > 1:
            info["device"] = f"{plan['device']} × {self.world} processes"
            info["processes"] = self.world
        self.trainer_info = info
        callback = events_callback(self, info=info)
        trainer = build_trainer(cfg, model, tokenizer, train_rows, eval_rows, run.checkpoints_dir, plan, [callback],
                                padding_free=padding_free)
        self.trainer, self.tokenizer = trainer, tokenizer
        self.largest_batch = LargestBatch(trainer, packed=padding_free, lengths_of=row_lengths)
        # counted on the trainer's model: for DPO/KTO with a new adapter TRL adds it
        info["trainable_params"], info["total_params"] = count_params(trainer.model)
        if cfg.is_preference and getattr(trainer, "ref_model", None) is not None:
            info["reference_params"] = count_params(trainer.ref_model)[1]
        if self.world > 1:
            info["backend"] = trainer.accelerator.state.backend
            self._check_same_start(trainer, checkpoint)
            if self.agree([self.stop_requested], trainer.args.device)[0]:  # all start training, or none
                self.stop_agreed()
        if self.stop_requested:
            self._finish("stopped", "Stopped before training began; nothing new to save"
                         + (f" ({checkpoint.name} is still there to resume from)." if checkpoint else "."))
            return
        self.training = True
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
        self.training = False
        self.step = trainer.state.global_step

        if self.failure:
            self._finish("failed", self.failure, error=True)
            return
        out_dir = run.adapter_dir if cfg.uses_adapter else run.model_dir
        what = "adapter" if cfg.uses_adapter else "model"
        best = self.best_to_keep()
        if best is not None and not self.stop_requested:
            # the best evaluation's weights become the run's output; the last stay in the newest checkpoint
            self.progress(f"Keeping the best {what} (step {best['step']}) in {out_dir.name}/…")
            if self.main_process:
                swap_in(run.best_dir, out_dir)
        else:
            self.progress(f"Saving the {what} to {out_dir.name}/…")
            if self.world > 1:
                save_output_distributed(trainer, tokenizer, out_dir, main=self.main_process)
            else:
                save_output(trainer, tokenizer, out_dir)
        if self.stop_requested and self.step < (self.max_steps or 0):
            cp = run.latest_checkpoint()
            self._finish("stopped", f"Stopped at step {self.step} of {self.max_steps}; "
                         f"{cp.name if cp else 'no checkpoint'} and {out_dir.name}/ are saved; "
                         f"`tunedeck resume {run.id}` continues.")
        else:
            if self.main_process:
                shutil.rmtree(run.best_dir, ignore_errors=True)  # kept in out_dir, or the last step was the best
            self._finish("completed", self.completion_message(what, out_dir, best))

    # replay (against forgetting) ------------------------------------------------------------------
    def _mix_replay(self, cfg: RunConfig, model, tokenizer, plan: dict, train_rows: list[dict]):
        """The training rows with ``cfg.replay`` of general examples answered by the base model mixed
        in (engine.replay; generated once and cached in the run folder as replay.jsonl). Every process
        of a multi-process run reads or makes the same greedy answers; only the main one writes them."""
        import torch

        from .replay import describe, replay_examples

        sharded = several_processes(cfg) and (cfg.distributed != "ddp" or cfg.accelerate_config)
        if plan["device"] == "cuda" and cfg.method != "qlora" and not sharded:  # generate where it will train
            model.to(torch.device("cuda", self.local_rank))
        examples, info = replay_examples(self.run.dir, model, tokenizer, task_rows=len(train_rows), share=cfg.replay,
                                         seed=cfg.seed, say=self.progress, write=self.main_process)
        rows, _ = encode_rows(tokenizer, examples, cfg.max_length, special_token_text=cfg.special_token_text)
        info["message"], info["mixed"] = describe(info, len(rows)), len(rows)
        self.say(info["message"])
        self.event(type="status", message=info["message"])
        return train_rows + rows, info

    # the best checkpoint (keep: best, early_stopping_patience) -----------------------------------
    def keep_best(self, step: int, eval_loss: float) -> None:
        """An evaluation improved on every earlier one: save these weights as the run's best (every
        process takes part with several). Only with ``keep: best``."""
        if self.cfg is None or self.cfg.keep != "best":
            return
        target = self.run.best_dir
        if self.world > 1:
            save_output_distributed(self.trainer, self.tokenizer, target, main=self.main_process)
        else:
            save_output(self.trainer, self.tokenizer, target)
        if self.main_process:
            write_json_atomic(target / BEST_FILE, {"step": step, "eval_loss": eval_loss})

    def best_to_keep(self) -> dict | None:
        """The saved best weights' step and eval loss, when they are not the last step's."""
        if self.cfg is None or self.cfg.keep != "best":
            return None
        best = self.run.best()
        return best if best is not None and best["step"] < self.step else None

    def completion_message(self, what: str, out_dir: Path, best: dict | None) -> str:
        cfg = self.cfg
        if self.stopped_early is not None:
            head = (f"Stopped early at step {self.stopped_early} of {self.max_steps}: eval loss did not improve for "
                    f"{cfg.early_stopping_patience} evaluations")
        else:
            head = f"Completed {self.step} steps"
        if best is not None:
            return (f"{head}; best at step {best['step']} (eval loss {best['eval_loss']:.4f}): the {what} in "
                    f"{out_dir} is that step's (keep: best).")
        return f"{head}; the {what} is in {out_dir}."


def tokens_logged_until(run: Run, step: int) -> float:
    """The input tokens trained up to ``step``, as the events of earlier attempts counted them."""
    logged = [e for e in effective_events(run.events()) if e.get("type") == "log"
              and isinstance(e.get("num_tokens"), (int, float)) and (e.get("step") or 0) <= step]
    return max((e["num_tokens"] for e in logged), default=0)


def save_output(trainer, tokenizer, target: Path) -> None:
    """Write the adapter (or full model) and the tokenizer with its chat template, atomically: a
    reader sees the old folder or the new one, never half of one."""
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        trainer.save_model(str(tmp))
        _drop_reference_adapter(tmp)
        tokenizer.save_pretrained(str(tmp))
        swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_output_distributed(trainer, tokenizer, target: Path, *, main: bool) -> None:
    """``save_output`` with several processes: every process takes part in ``save_model`` (FSDP and
    DeepSpeed gather the sharded weights; the trainer writes from the main process only), into a
    folder with a fixed name so they all use the same one; the main process then renames it."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}-saving")
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    trainer.accelerator.wait_for_everyone()
    tmp.mkdir(exist_ok=True)  # another machine's processes write nothing here, but may look for it
    trainer.save_model(str(tmp))
    trainer.accelerator.wait_for_everyone()
    if not main:
        return
    try:
        _drop_reference_adapter(tmp)
        tokenizer.save_pretrained(str(tmp))
        swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _drop_reference_adapter(folder: Path) -> None:
    """DPO/KTO from an earlier adapter: TRL saves its frozen reference copy beside the trained adapter
    (``ref/``); the run's output is the trained adapter alone (the reference is the init_from run's)."""
    ref = Path(folder) / "ref"
    if (ref / "adapter_config.json").is_file():
        shutil.rmtree(ref, ignore_errors=True)


_CALLBACK_CLASS = None


def events_callback(worker: "Worker", info: dict):
    """The TrainerCallback that writes events and status (its class is built on first use, so that
    importing this module stays light)."""
    global _CALLBACK_CLASS
    if _CALLBACK_CLASS is None:
        _CALLBACK_CLASS = _make_callback_class()
    return _CALLBACK_CLASS(worker, info)


def _make_callback_class():
    from transformers import TrainerCallback

    class _EventsCallback(TrainerCallback):
        """Writes the run's events and status from inside the training loop."""

        def __init__(self, worker: Worker, info: dict) -> None:
            self.worker = worker
            self.info = info
            self.last_tokens = None  # TRL's running count of input tokens at the previous log
            self.train_time = 0.0  # seconds in training steps since the previous log
            self.t_begin = None
            self.t_last_end = None
            self.interrupted = True  # an eval or a save since the last step ended
            self.best_eval = self.best_step = None
            self.evals_without_gain = 0  # evaluations since the best one (early_stopping_patience)
            self.last_save = time.monotonic()
            self.pending: dict = {}
            self.next_status = 0.0

        def _status(self, force: bool = False, **fields) -> None:
            self.pending.update(fields)
            now = time.monotonic()
            if force or now >= self.next_status or self.worker.stop_requested:
                self.worker.status(state="running", **self.pending)
                self.pending = {}
                self.next_status = now + STATUS_EVERY_SECONDS

        def on_train_end(self, args, state, control, **kw):
            if self.pending:
                self._status(force=True)

        def on_train_begin(self, args, state, control, **kw):
            w = self.worker
            w.step, w.max_steps = state.global_step, state.max_steps
            status = w.run.read_status()
            self.best_eval, self.best_step = status.get("best_eval_loss"), status.get("best_step")
            resumed = self.info["resumed_from"]
            cfg = w.cfg
            if resumed:
                message = f"Resumed from {resumed} at step {state.global_step} of {state.max_steps}"
            elif cfg.is_grpo:
                message = (f"Training {METHOD_NAMES[cfg.method]} with GRPO on {self.info['num_examples']} prompts "
                           f"({cfg.num_generations} answers each, up to {cfg.max_completion_length} tokens; rewards: "
                           f"{self.info['rewards_text']}; beta {cfg.beta:g}), {state.max_steps} steps, on "
                           f"{self.info['device']}")
            elif cfg.is_preference:
                unit = "pairs" if cfg.objective == "dpo" else "answers labelled good or bad"
                message = (f"Training {METHOD_NAMES[cfg.method]} with {OBJECTIVE_NAMES[cfg.objective]} on "
                           f"{self.info['num_examples']} {unit} (beta {cfg.beta:g}, {cfg.loss} loss; reference: "
                           f"{self.info['reference']}), {state.max_steps} steps, on {self.info['device']}")
            else:
                message = (f"Training {METHOD_NAMES[cfg.method]} on {self.info['num_examples']} examples, "
                           f"{state.max_steps} steps, on {self.info['device']}")
            notes = self.info.get("notes") or []
            if notes:
                message += " (" + "; ".join(notes) + ")"
            event = {k: v for k, v in self.info.items() if k != "notes"}
            w.event(type="start", step=state.global_step, max_steps=state.max_steps, message=message, **event)
            w.status(state="running", step=state.global_step, max_steps=state.max_steps, message=message,
                     estimated_memory=self.info.get("estimated_memory"), batching=self.info.get("batching"))
            w.say(message)

        def on_step_begin(self, args, state, control, **kw):
            self.t_begin = time.perf_counter()

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            self.interrupted = True
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            loss = float(loss)
            extra = {k: _num(v) for k, v in metrics.items() if k.startswith("eval_") and k != "eval_loss"
                     and (k[5:] in OBJECTIVE_METRICS or grpo_metric(k[5:])) and isinstance(v, (int, float))}
            w = self.worker
            if w.cfg.is_grpo:  # GRPO's loss says nothing of quality (about 0 by construction): its eval is the reward
                w.event(type="eval", step=state.global_step, **extra)
                return control
            w.event(type="eval", step=state.global_step, eval_loss=_num(loss), **extra)
            if math.isfinite(loss) and (self.best_eval is None or loss < self.best_eval):
                self.best_eval, self.best_step, self.evals_without_gain = loss, state.global_step, 0
                w.keep_best(state.global_step, loss)
            else:
                self.evals_without_gain += 1
                patience = w.cfg.early_stopping_patience
                if patience and self.evals_without_gain >= patience and state.global_step < state.max_steps:
                    w.stopped_early = state.global_step
                    w.say(f"Eval loss has not improved for {patience} evaluations (best {self.best_eval:.4f} at step "
                          f"{self.best_step}): stopping early.")
                    control.should_training_stop = True
                    control.should_save = True
            w.status(best_eval_loss=self.best_eval, best_step=self.best_step)
            return control

        def on_save(self, args, state, control, **kw):
            self.interrupted = True
            self.last_save = time.monotonic()
            name = f"checkpoint-{state.global_step}"
            self.worker.event(type="checkpoint", step=state.global_step, path=f"checkpoints/{name}")

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            if self.interrupted or self.t_last_end is None:
                self.train_time += now - (self.t_begin or now)
            else:
                self.train_time += now - self.t_last_end
            self.t_last_end = now
            self.interrupted = False
            w = self.worker
            w.step = state.global_step
            stop = w.stop_requested
            save_for_time = time.monotonic() - self.last_save > CHECKPOINT_EVERY_SECONDS
            if w.world > 1:  # the same decisions in every process (see the module docstring)
                stop, save_for_time = w.agree([stop, save_for_time], args.device)
                if stop:
                    w.stop_agreed()
            if stop and state.global_step < state.max_steps:
                control.should_save = True
                control.should_log = True
                control.should_training_stop = True
            elif save_for_time:
                control.should_save = True
            if not control.should_log:
                self._status(step=state.global_step)
            return control

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs:
                return
            w = self.worker
            loss = float(logs["loss"])
            grad_norm = logs.get("grad_norm")
            # TRL's num_tokens is gathered over all processes, so with several this counts every
            # process's input tokens (divided by the main process's training time).
            tokens = logs.get("num_tokens")
            tps = None
            if tokens is not None:
                if self.last_tokens is not None and self.train_time > 0:
                    tps = (tokens - self.last_tokens) / self.train_time
                elif self.train_time > 0:
                    tps = tokens / self.train_time
                self.last_tokens = tokens
            self.train_time = 0.0
            event = {
                "step": state.global_step, "loss": _num(loss), "learning_rate": logs.get("learning_rate"),
                "grad_norm": _num(grad_norm), "epoch": round(state.epoch or 0.0, 4),
                "tokens_per_second": round(tps, 1) if tps is not None else None,
            }
            if "mean_token_accuracy" in logs:
                event["mean_token_accuracy"] = _num(logs["mean_token_accuracy"])
            event.update({k: _num(logs[k]) for k in OBJECTIVE_METRICS if k in logs})
            event.update({k: _num(v) for k, v in logs.items() if grpo_metric(k) and isinstance(v, (int, float))})
            if tokens is not None:  # TRL counts from 0 in each attempt: count on from the checkpoint
                event["num_tokens"] = _num(tokens + self.info.get("tokens_before", 0))
            peak = peak_memory(w.plan)
            event.update(peak)
            w.event(type="log", **event)
            rewards = {name: event[key] for key, name in (("rewards/accuracies", "reward_accuracy"),
                                                           ("rewards/margins", "reward_margin"),
                                                           ("reward", "reward"), ("full_marks", "full_marks"))
                       if key in event}
            samples = getattr(getattr(w, "trainer", None), "tunedeck_samples", None)
            if samples:  # the answers sampled for this step, with their scores (GRPO)
                w.trainer.tunedeck_samples = None
                w.event(type="samples", step=state.global_step,
                        items=[{**item, "scores": {k: _num(v) for k, v in item["scores"].items()},
                                "reward": _num(item["reward"])} for item in samples["items"]])
            self._status(step=state.global_step, last_loss=_num(loss), tokens_per_second=event["tokens_per_second"],
                         **peak, **rewards)
            bad = None
            if not math.isfinite(loss):
                bad = ("loss", loss)
            elif grad_norm is not None and not math.isfinite(float(grad_norm)) and not args.fp16:
                bad = ("gradient norm", float(grad_norm))
            if w.world > 1 and not w.agree([bad is not None], args.device)[0]:
                bad = None
            elif w.world > 1 and bad is None:  # another process saw what this one did not
                bad = ("loss", float("nan"))
            if bad:
                w.failure = nan_message(w.cfg, state.global_step, bad[0], bad[1])
                control.should_training_stop = True
                control.should_save = False
                control.should_evaluate = False
            return control

    return _EventsCallback


# What DPO and KTO log besides the loss, under TRL's own (stable) names; eval events carry each with
# an ``eval_`` prefix. rewards/* are beta x (log-probability under the model - under the reference).
OBJECTIVE_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen",
                     "logps/rejected", "kl")


def _num(x):
    """A float for JSON: NaN and infinities become strings (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def quiet_cpu_threads() -> None:
    """Let idle OpenMP threads sleep instead of spinning. Measured on the 2-core dev machine while
    other jobs ran (load 6): the demo model trained at 5-6 tokens/s with torch's default spinning
    threads and 35-44 tokens/s with passive ones (first step 50 s -> 7 s); the tiny model 270-600 ->
    4600-4800 tokens/s. Spinning threads descheduled mid-barrier stall each other. On a GPU the
    CPU threads hardly matter. Must run before torch is imported (OpenMP reads it at load); a value
    the user set wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    quiet_cpu_threads()
    os.umask(0o077)  # checkpoints, adapter, logs: the user's alone, like the run folder (0700)
    parser = argparse.ArgumentParser(prog="python -m engine.worker", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    args = parser.parse_args(argv)
    run = Run(Path(args.run_dir))
    if not run.config_path.is_file():
        print(f"tunedeck worker: {run.dir} holds no config.yaml", file=sys.stderr)
        return 2
    return Worker(run, resume=args.resume).main()


if __name__ == "__main__":
    sys.exit(main())
