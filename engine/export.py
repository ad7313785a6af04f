"""Take a run's result elsewhere: no Tunedeck needed to load what this writes.

* ``export_run(run, to)``: the LoRA/QLoRA adapter in PEFT format (adapter_config.json +
  adapter_model.safetensors) with the tokenizer and its chat template; the adapter's
  ``base_model_name_or_path`` names a base that loads on this machine, so
  ``AutoModelForCausalLM.from_pretrained(DIR)`` with peft installed, or
  ``PeftModel.from_pretrained(base, DIR)``, both work.
* ``export_run(run, to, merged=True)``: the adapter merged into the base weights
  (``merge_and_unload``), saved as safetensors with tokenizer, chat template and generation
  config: a plain transformers model folder.
* ``export_gguf`` (engine/gguf_export.py): one GGUF file for llama.cpp / Ollama with a Modelfile, and
  the check that it is prompted as trained.
* ``push_to_hub(folder, ORG/NAME)``: upload an export with huggingface_hub. Every export writes the
  model card (README.md, engine/model_card.py).
* ``write_launch_script(run, file)``: a bash script (and the config files beside it) that runs the
  run's training on several machines with ``accelerate launch`` or ``torchrun``.
* ``write_trl_config(run, file)``: a YAML that ``trl sft --config FILE`` accepts, plus the run's
  data in TRL's conversational prompt/completion form next to it, so TRL trains the same tokens.
  A DPO run gets a config for ``trl dpo`` and its pairs as TRL's conversational prompt / chosen /
  rejected; a KTO run one for ``trl kto`` with prompt / completion / label (or its pairs, which
  ``trl kto`` splits itself).

Nothing is overwritten: the target folder must be new or empty, and it is written under a
temporary name first and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from .errors import TunedeckError

Say = Callable[[str], None]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json")


class ExportError(TunedeckError):
    pass


def _check_target(to: Path) -> None:
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise ExportError(f"{to} already exists and is not an empty folder; choose a new folder for --to.")
    if not to.parent.exists():
        raise ExportError(f"The folder {to.parent} does not exist; create it or choose another --to.")
    if not os.access(to.parent, os.W_OK):
        raise ExportError(f"Cannot write in {to.parent}; choose a folder you can write to for --to.")


def _finish(tmp: Path, to: Path) -> None:
    if to.exists():
        to.rmdir()  # empty (checked): replace it
    os.replace(tmp, to)


def _tokenizer(folder: Path, base_location: str):
    from transformers import AutoTokenizer

    from .data.encode import ensure_chat_template

    source = str(folder) if (folder / "tokenizer_config.json").is_file() else base_location
    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    ensure_chat_template(tok)  # the template the run trained with travels with the weights
    return tok


def _write_card(run, folder: Path, base_location: str, what: str, config: dict) -> None:
    """The model card as README.md (and model-card.md in the run folder); the old short README when
    the run's data cannot be read any more (moved): the weights still export."""
    from . import model_card
    from .evaluate import eval_examples

    try:
        train, held_out, split = eval_examples(config, str(run.config_path), split="validation")
        rows = {"train": len(train), "held_out": len(held_out), "split": split}
    except TunedeckError:
        rows = None
    model_card.write(run, folder, base_model=base_location, export=what, data_rows=rows)


def check_push(repo_id: str) -> None:
    """One sentence, before anything is exported, when ``repo_id`` is not ORG/NAME, the Hub is offline
    or nobody is logged in."""
    import re

    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ExportError(f"--push {repo_id}: give the repository as ORG/NAME (e.g. my-team/support-json-lora).")
    from huggingface_hub import get_token
    from huggingface_hub.constants import HF_HUB_OFFLINE

    if HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ExportError(f"Cannot push to {repo_id}: the Hugging Face Hub is offline here (HF_HUB_OFFLINE is set); "
                          f"export with --to DIR now and push that folder later from a connected machine.")
    if not get_token():
        raise ExportError(f"Cannot push to {repo_id}: not logged in to the Hugging Face Hub; run `hf auth login` "
                          f"(or set HF_TOKEN) and export again with --push.")


def push_to_hub(folder: Path, repo_id: str, *, say: Say | None = None) -> str:
    """Upload an exported folder to the Hugging Face Hub as ``repo_id`` (ORG/NAME), a private repository;
    its URL. One sentence when offline, not logged in or refused."""
    from huggingface_hub import HfApi

    say = say or (lambda message: None)
    check_push(repo_id)
    api = HfApi()
    try:
        say(f"Uploading {folder} to {repo_id}…")
        api.create_repo(repo_id, exist_ok=True, private=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                                 commit_message="Upload from Tunedeck")
    except Exception as exc:  # network down, no write access, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"Cannot push to {repo_id} ({first[:160]}); check the network and your write access "
                          f"to it, then export again with --push.") from None
    return getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}"


def export_run(run_ref: str, to: str | Path, *, merged: bool = False, say: Say | None = None) -> dict:
    """Write the run's adapter (or merged model) to ``to``; returns what was written."""
    from .models import materialize
    from .runs import get_run

    say = say or (lambda message: None)
    run = get_run(run_ref)
    to = Path(to).expanduser().resolve()
    _check_target(to)
    weights = run.weights()
    kind, folder = weights.label, weights.path
    config = run.config()
    if not config.get("model"):
        raise ExportError(f"{run.config_path}: the run's config has no 'model'; cannot tell which base it needs.")
    full = not weights.is_adapter
    base_location = materialize(config["model"], lambda m, f: say(m))
    tmp = Path(tempfile.mkdtemp(prefix=f".{to.name}.partial-", dir=to.parent))
    try:
        if full:
            say(f"Copying the fully fine-tuned model from {folder.name}/…")
            _copy_full_model(folder, tmp, base_location)
            what = "model"
        elif merged:
            _merge(folder, tmp, config["model"], base_location, say)
            what = "merged"
        else:
            say(f"Copying the adapter from {folder.name}/…")
            for name in ("adapter_model.safetensors", "adapter_model.bin"):
                if (folder / name).is_file():
                    shutil.copy2(folder / name, tmp / name)
            adapter_config = json.loads((folder / "adapter_config.json").read_text())
            adapter_config["base_model_name_or_path"] = base_location
            (tmp / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
            _tokenizer(folder, base_location).save_pretrained(str(tmp))
            what = "adapter"
        _write_card(run, tmp, base_location, what, config)
        (tmp / "tunedeck-export.json").write_text(json.dumps({
            "run": run.id, "from": kind, "export": what, "base_model": base_location,
            "method": config.get("method"), "created": round(time.time(), 3)}, indent=1) + "\n")
        _finish(tmp, to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(p.name for p in to.iterdir())
    size = sum(p.stat().st_size for p in to.iterdir() if p.is_file())
    say(f"Wrote {what} to {to}")
    return {"run": run.id, "to": str(to), "export": what, "from": kind, "base_model": base_location,
            "files": files, "bytes": size}


def _copy_full_model(folder: Path, tmp: Path, base_location: str) -> None:
    skip = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"}
    for p in folder.iterdir():
        if p.is_file() and p.name not in skip and not p.name.startswith("rng_state"):
            shutil.copy2(p, tmp / p.name)
    if not (tmp / "tokenizer_config.json").is_file():
        _tokenizer(folder, base_location).save_pretrained(str(tmp))


def _merge(folder: Path, tmp: Path, model_ref: str, base_location: str, say: Say) -> None:
    import torch
    from peft import PeftModel

    from .models import load_model

    say("Loading the base model in full precision…")
    base, _ = load_model(model_ref, dtype=torch.float32)
    say("Merging the adapter into the base weights…")
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    saved_dtype = _config_dtype(base_location)
    if saved_dtype in ("bfloat16", "float16"):
        merged = merged.to(getattr(torch, saved_dtype))
    tok = _tokenizer(folder, base_location)
    if merged.generation_config is not None and tok.eos_token_id is not None:
        # Generation stops at the chat template's end-of-turn token, as in Tunedeck's chat.
        eos = merged.generation_config.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        if tok.eos_token_id not in ids:
            merged.generation_config.eos_token_id = ids + [tok.eos_token_id] if ids else tok.eos_token_id
    say("Writing safetensors…")
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))


def _config_dtype(location: str) -> str | None:
    try:
        cfg = json.loads((Path(location) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg.get("dtype") or cfg.get("torch_dtype")


# --------------------------------------------------------------------------------------------
# TRL config
# --------------------------------------------------------------------------------------------


def _prompt_completion(example: dict) -> dict | None:
    from .evaluate import split_example

    if "chosen" in example or "completion" in example:  # preference: TRL's own columns, conversational
        row = {k: example[k] for k in ("prompt", "chosen", "rejected", "completion", "label") if k in example}
        if example.get("tools"):
            row["tools"] = json.dumps(example["tools"])  # TRL reads a JSON string as the tools too
        return row
    if "messages" not in example:
        return {"text": example["text"]} if "text" in example else None
    split = split_example(example)
    if split is None:
        return None
    prompt, answer = split
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _run_device(run) -> str | None:
    """'cpu' or 'cuda' as the run's start event recorded it, if it did."""
    from .run_state import RunHistory

    device = RunHistory().extend(run.events()).device
    return None if not device else "cuda" if str(device).startswith("cuda") else "cpu"


def _plain(value):
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):
        return value.value  # enums (eval_strategy, save_strategy, ...)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


TRL_COMMANDS = {"sft": "sft", "dpo": "dpo", "kto": "kto"}


def trl_settings(cfg, plan: dict, model_location: str, data_dir: Path, output_dir: Path, has_eval: bool,
                 balance: tuple | None = None) -> dict:
    """The arguments of ``trl sft`` / ``trl dpo`` / ``trl kto`` (ScriptArguments, the objective's config,
    ModelConfig) for a RunConfig.

    The config part is the worker's own (``sft_config`` / ``preference_config``): every field it sets
    differently from a plain one is written, so the YAML follows the worker when it changes. The
    worker hands DPO/KTO sequences already cut to max_length; TRL cuts them itself from the file."""
    from .worker import preference_config, sft_config

    if cfg.is_preference:
        from trl import DPOConfig, KTOConfig

        config_class = DPOConfig if cfg.objective == "dpo" else KTOConfig
        ours = preference_config(cfg, output_dir, plan, has_eval=has_eval, balance=balance).to_dict()
        ours["max_length"] = cfg.max_length
    else:
        from trl import SFTConfig as config_class

        ours = sft_config(cfg, output_dir, plan, has_eval=has_eval).to_dict()
    device_args = {"bf16": plan["bf16"], "fp16": plan["fp16"] and cfg.method != "qlora",
                   "use_cpu": plan["device"] == "cpu"}
    plain = config_class(output_dir=str(output_dir), **device_args).to_dict()
    s: dict = {
        "model_name_or_path": model_location,
        "dtype": {"cpu": "float32"}.get(plan["device"], "bfloat16" if plan["bf16"] else "float16")
        if cfg.method != "full" else "float32",
        "dataset_name": str(data_dir),
        "dataset_train_split": "train",
    }
    if has_eval:
        s["dataset_test_split"] = "validation"
    s.update({k: v for k, v in device_args.items()})
    skip = {"logging_dir", "disable_tqdm", "do_eval"}  # derived, or a display concern
    always = ("learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size",
              "gradient_accumulation_steps", "max_length", "packing", "completion_only_loss", "seed",
              "save_strategy", "eval_strategy", "report_to", "beta", "loss_type")  # written even when TRL's default agrees
    for key, value in ours.items():
        if key not in skip and value is not None and (value != plain.get(key) or key in always):
            s[key] = _plain(value)
    s.pop("max_steps" if cfg.epochs else "num_train_epochs", None)
    s["output_dir"] = str(output_dir)
    if cfg.uses_adapter:
        lora = cfg.lora
        s.update(use_peft=True, lora_r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                 lora_target_modules=lora.targets if isinstance(lora.targets, str) else list(lora.targets))
    if cfg.method == "qlora":
        s.update(load_in_4bit=True, bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True)
    return s


def write_trl_config(run_ref: str, path: str | Path, *, say: Say | None = None) -> dict:
    """Write ``path`` (YAML for ``trl sft|dpo|kto --config``, by the run's objective) and
    ``<stem>-data/{train,validation}.jsonl``."""
    import yaml

    from .evaluate import eval_examples, run_config
    from .models import materialize
    from .replay import read_cache
    from .worker import device_plan
    from .runs import get_run

    say = say or (lambda message: None)
    run = get_run(run_ref)
    path = Path(path).expanduser().resolve()
    if path.exists():
        raise ExportError(f"{path} already exists; choose a new file name for --trl-config.")
    if not path.parent.is_dir():
        raise ExportError(f"The folder {path.parent} does not exist; create it or choose another --trl-config path.")
    data_dir = path.parent / f"{path.stem}-data"
    if data_dir.exists():
        raise ExportError(f"{data_dir} already exists; move it away or choose another --trl-config name.")
    config = run.config()
    if not config.get("model"):
        raise ExportError(f"{run.config_path}: the run's config has no 'model'.")
    cfg = run_config(config, str(run.config_path))
    say("Reading the run's data…")
    train, held_out, source = eval_examples(config, str(run.config_path), split="validation")
    train_rows = [r for r in map(_prompt_completion, train) if r is not None]
    replayed = read_cache(run.dir) if cfg.replay and not cfg.is_preference else None
    if replayed:  # what the run trained on: the task's rows and the base model's general answers
        train_rows += [r for r in map(_prompt_completion, replayed) if r is not None]
    eval_rows = [r for r in map(_prompt_completion, held_out) if r is not None]
    multi_turn = sum(1 for e in train if sum(m.get("role") == "assistant" for m in e.get("messages", [])) > 1)
    model_location = materialize(config["model"], lambda m, f: say(m))
    plan = device_plan()
    recorded = _run_device(run)
    if recorded == "cpu" and plan["device"] != "cpu":
        plan = {"device": "cpu", "bf16": False, "fp16": False}
    elif recorded == "cuda" and plan["device"] == "cpu":
        plan = {"device": "cuda", "bf16": True, "fp16": False}  # trained on a GPU: keep its precision
    balance = None
    if cfg.objective == "kto":
        from .data.formats import kto_weights, unpair

        labels = [a["label"] for e in train for a in unpair(e)]
        balance = kto_weights(sum(labels), len(labels) - sum(labels))
    settings = trl_settings(cfg, plan, model_location, data_dir, path.parent / f"{path.stem}-output",
                            bool(eval_rows), balance=balance)
    command = TRL_COMMANDS[cfg.objective]
    form = {"sft": "prompt/completion form so only the answers are trained",
            "dpo": "conversational prompt/chosen/rejected form",
            "kto": "conversational prompt/completion/label form (pairs as prompt/chosen/rejected, which trl kto "
                   "splits into a good and a bad answer)"}[cfg.objective]
    notes = [
        f"Reproduces Tunedeck run {run.id} outside Tunedeck:",
        f"  trl {command} --config {path.name}",
        f"Data: {data_dir.name}/train.jsonl ({len(train_rows)} rows) and validation.jsonl ({len(eval_rows)} rows, "
        f"from the {source}), in TRL's {form}.",
    ]
    if cfg.is_preference:
        notes.append("TRL tokenises the answers itself; its mask also scores the newline some chat templates write "
                     "after the end-of-turn token, which Tunedeck leaves out.")
        if cfg.max_prompt_length or cfg.max_completion_length:
            notes.append("TRL 1.16 has no separate prompt/answer limits: max_prompt_length and max_completion_length "
                         "are not reproduced, only max_length.")
        if cfg.init_from:
            notes.append(f"The run started from the adapter of run {cfg.init_from} (init_from), which trl "
                         f"{command} cannot load: merge that run first (tunedeck export {cfg.init_from} --to DIR "
                         "--merged) and set model_name_or_path to DIR.")
    if multi_turn:
        notes.append(f"{multi_turn} examples have several assistant turns: TRL trains the last one; "
                     "Tunedeck trained them all.")
    if replayed:
        notes.append(f"The last {len(replayed)} rows of train.jsonl are the run's replay examples (general prompts "
                     "answered by the base model, from its replay.jsonl); TRL shuffles them in as Tunedeck did.")
    data_dir.mkdir()
    try:
        _write_jsonl(data_dir / "train.jsonl", train_rows)
        if eval_rows:
            _write_jsonl(data_dir / "validation.jsonl", eval_rows)
        text = "".join(f"# {n}\n" for n in notes) + yaml.safe_dump(settings, sort_keys=False)
        path.write_text(text, encoding="utf-8")
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return {"run": run.id, "config": str(path), "data": str(data_dir), "train_rows": len(train_rows),
            "eval_rows": len(eval_rows), "settings": settings, "command": f"trl {command}"}


# --------------------------------------------------------------------------------------------
# Launch script for several machines
# --------------------------------------------------------------------------------------------

_SCRIPT = r'''#!/usr/bin/env bash
# Tunedeck run {run_id} on several machines: the same training, one process per GPU on each.
# Written by `tunedeck export {run_id} --launch-script {script_name}`.
#
# 1. Copy this script and the two files beside it to the same folder on every machine:
#      {config_name}      the run's settings (model, data, method, hyper-parameters)
#      {accelerate_name}  how the processes share the work ({strategy})
#    The model ({model}) and the data ({data})
#    must be readable at those paths on every machine: edit {config_name} if they live elsewhere.
#    Tunedeck must be installed for $PYTHON on every machine (`pip install tunedeck`).
# 2. Set the values below (edit them, or set them in the environment), then start the script on
#    every machine, each with its own MACHINE_RANK: 0 on the main machine, 1 .. NUM_MACHINES-1 on
#    the others. Keep it running when you log out: tmux, screen, or `nohup ./{script_name} >train.log 2>&1 &`.
# 3. The main machine's RUN_DIR gets the events, checkpoints and the adapter; there,
#    `tunedeck attach "$RUN_DIR"` shows the run and `tunedeck stop "$RUN_DIR"` stops every machine at
#    the same step with a checkpoint. RESUME=1 continues from the newest checkpoint: every machine needs
#    the main machine's checkpoints/ for that (a shared folder for RUN_DIR, or a copy).
#
# The network: the main machine listens on MAIN_PORT on every interface (the others must reach it);
# keep that port closed to anything but these machines (a firewall or a private network).
#
# batch_size ({batch_size}) is per process: one optimizer step sees
# batch_size x gradient_accumulation_steps ({accumulation}) x PROCS_PER_MACHINE x NUM_MACHINES examples.
set -euo pipefail

# The run's names, quoted for bash: they are only ever expanded inside double quotes.
RUN_NAME={run_id_q}
CONFIG_NAME={config_name_q}
ACCELERATE_NAME={accelerate_name_q}

NUM_MACHINES="${{NUM_MACHINES:-2}}"              # how many machines take part
MACHINE_RANK="${{MACHINE_RANK:-0}}"              # 0 on the main machine, 1, 2, ... on the others
MAIN_IP="${{MAIN_IP:-10.0.0.1}}"                 # the main machine's address, reachable from all the others
MAIN_PORT="${{MAIN_PORT:-29500}}"                # a free TCP port on the main machine
PROCS_PER_MACHINE="${{PROCS_PER_MACHINE:-{processes}}}"  # processes on each machine: its number of GPUs
LAUNCHER="${{LAUNCHER:-accelerate}}"             # accelerate (any strategy) or torchrun (DDP only)
PYTHON="${{PYTHON:-python3}}"                    # the Python that has Tunedeck installed
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
RUN_DIR="${{RUN_DIR:-$HERE/$RUN_NAME-run}}"      # this machine's run folder
RESUME="${{RESUME:-}}"                           # RESUME=1: continue from the newest checkpoint in RUN_DIR

mkdir -p -m 700 "$RUN_DIR"
[ -f "$RUN_DIR/config.yaml" ] || cp "$HERE/$CONFIG_NAME" "$RUN_DIR/config.yaml"
[ -f "$RUN_DIR/status.json" ] || printf '{{"state": "created", "created": %s, "step": 0}}\n' "$(date +%s)" >"$RUN_DIR/status.json"
WORKER=(-m engine.worker "$RUN_DIR")
if [ -n "$RESUME" ]; then WORKER+=(--resume); fi

# A stop (SIGTERM) gives the workers this long to finish their step and save before they are killed,
# and SIGHUP is left out of the signals torchrun turns into a shutdown.
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT="${{TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-600}}"
export PET_SIGNALS_TO_HANDLE="${{PET_SIGNALS_TO_HANDLE:-SIGTERM,SIGINT}}"
export TOKENIZERS_PARALLELISM="${{TOKENIZERS_PARALLELISM:-false}}"

case "$LAUNCHER" in
  accelerate)
    # `accelerate launch` with the config file; --num_processes is the total over all machines.
    exec "$PYTHON" -m accelerate.commands.launch \
      --config_file "$HERE/$ACCELERATE_NAME" \
      --num_machines "$NUM_MACHINES" --machine_rank "$MACHINE_RANK" \
      --num_processes "$((NUM_MACHINES * PROCS_PER_MACHINE))" \
      --main_process_ip "$MAIN_IP" --main_process_port "$MAIN_PORT" \
      "${{WORKER[@]}}"
    ;;
  torchrun)
    # `torchrun` with a static rendezvous: machine MACHINE_RANK runs global ranks
    # MACHINE_RANK*PROCS_PER_MACHINE and up, so the main machine holds rank 0, which writes the run folder.
    # (--rdzv-backend c10d --rdzv-endpoint "$MAIN_IP:$MAIN_PORT" --rdzv-id {run_id} is the elastic
    # rendezvous: then whichever machine joins first becomes rank 0.) DDP only: FSDP and DeepSpeed
    # are set up by the accelerate config, so use LAUNCHER=accelerate for those.
    exec "$PYTHON" -m torch.distributed.run \
      --nnodes "$NUM_MACHINES" --node-rank "$MACHINE_RANK" --nproc-per-node "$PROCS_PER_MACHINE" \
      --master-addr "$MAIN_IP" --master-port "$MAIN_PORT" \
      "${{WORKER[@]}}"
    ;;
  *)
    echo "LAUNCHER must be accelerate or torchrun, not '$LAUNCHER'." >&2
    exit 2
    ;;
esac
'''


def _comment(text) -> str:
    """``text`` safe inside a bash comment line: no newline or other control character survives."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def write_launch_script(run_ref: str, path: str | Path, *, say: Say | None = None) -> dict:
    """Write ``path`` (a bash script that runs the run's training on several machines) and beside it
    ``<stem>.config.yaml`` (the run's config) and ``<stem>.accelerate.yaml`` (the accelerate config).
    Nothing is overwritten."""
    import yaml

    from .config import RunConfig
    from .errors import ConfigError
    from .launch import ACCELERATE_FILE, accelerate_settings, accelerate_yaml
    from .runs import data_label, get_run

    say = say or (lambda message: None)
    run = get_run(run_ref)
    path = Path(path).expanduser().resolve()
    if not path.parent.is_dir():
        raise ExportError(f"The folder {path.parent} does not exist; create it or choose another --launch-script path.")
    stem = path.stem
    config_path = path.with_name(f"{stem}.config.yaml")
    accelerate_path = path.with_name(f"{stem}.accelerate.yaml")
    for p in (path, config_path, accelerate_path):
        if p.exists():
            raise ExportError(f"{p} already exists; move it away or choose another --launch-script name.")
    try:
        cfg = RunConfig.load(run.config_path)
    except ConfigError as exc:
        raise ExportError(f"The run's config cannot be read: {exc}") from None
    processes = cfg.processes
    user_file = run.dir / ACCELERATE_FILE
    if cfg.accelerate_config and user_file.is_file():  # the user's own accelerate config, as the run used it
        accelerate_text = user_file.read_text(encoding="utf-8")
        try:
            in_file = (yaml.safe_load(accelerate_text) or {}).get("num_processes")
            if processes < 2 and isinstance(in_file, int) and in_file > 1:
                processes = in_file
        except (yaml.YAMLError, AttributeError):
            pass
        strategy = "your accelerate config, copied from the run"
        header = ("# The accelerate config run {id} used. The launch script's --num_machines, --machine_rank,\n"
                  "# --num_processes, --main_process_ip and --main_process_port override the same keys here.\n")
    else:
        settings = accelerate_settings(cfg, gpu=True, processes=2 * max(1, processes), num_machines=2)
        accelerate_text = accelerate_yaml(settings)
        strategy = f"distributed: {cfg.distributed}"
        header = (f"# Accelerate config for run {{id}} on several machines ({strategy}). The launch script's\n"
                  "# --num_machines, --machine_rank, --num_processes (total over all machines), --main_process_ip\n"
                  "# and --main_process_port override the same keys here, so one file serves every machine.\n")
    config_text = (f"# The settings of Tunedeck run {run.id}; the launch script copies this into each machine's run folder.\n"
                   + run.config_path.read_text(encoding="utf-8"))
    # Every value from the run or the user reaches the script quoted for bash (code) or with its
    # control characters escaped (comments: a newline there would end the comment and start a command).
    script = _SCRIPT.format(
        run_id=_comment(run.id), script_name=_comment(path.name), config_name=_comment(config_path.name),
        accelerate_name=_comment(accelerate_path.name), strategy=_comment(strategy), model=_comment(cfg.model),
        data=_comment(data_label(cfg.data)), batch_size=int(cfg.batch_size), accumulation=int(cfg.gradient_accumulation_steps),
        processes=int(max(1, processes)), run_id_q=shlex.quote(run.id), config_name_q=shlex.quote(config_path.name),
        accelerate_name_q=shlex.quote(accelerate_path.name),
    )
    written = []
    try:
        for target, text in ((config_path, config_text), (accelerate_path, header.format(id=run.id) + accelerate_text),
                             (path, script)):
            with open(target, "x", encoding="utf-8") as f:
                f.write(text)
            written.append(target)
        path.chmod(0o755)
    except BaseException:
        for target in written:
            target.unlink(missing_ok=True)
        raise
    say(f"Wrote {path}, {config_path.name} and {accelerate_path.name}")
    return {"run": run.id, "script": str(path), "config": str(config_path), "accelerate_config": str(accelerate_path),
            "processes_per_machine": max(1, processes), "strategy": cfg.distributed if not cfg.accelerate_config else "accelerate_config"}
