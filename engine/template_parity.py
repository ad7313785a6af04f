"""Is the exported model prompted exactly as it was trained, and does it answer like the merged model?

``check_templates``: conversations from the run's data are turned into tokens three ways and
compared token by token:

* as trained: the run's tokenizer and chat template, through ``engine.data.encode`` (the very
  tokens the worker trained on) and the generation prompt of each assistant turn;
* through the GGUF: the chat template embedded in the file (read back with the ``gguf`` package),
  rendered with Jinja like llama.cpp's and transformers' chat code, tokenised with the tokenizer
  transformers rebuilds from the file (vocabulary, merges and special tokens as the file holds
  them), a BOS added when the file says llama.cpp adds one;
* through the Modelfile: its Go TEMPLATE rendered with Ollama's values (``engine.modelfile``), the
  conversation's system message left to the Modelfile's SYSTEM when they are the same, as a user
  of ``ollama run`` would.

The end-of-turn token is checked too: training ends each assistant turn with a token that must be a
stop token of the GGUF (its EOS or EOT) and a stop PARAMETER of the Modelfile.

``check_greedy``: the GGUF is loaded back with transformers (``gguf_file=``) and a greedy answer to
a validation prompt is compared, token by token, with the merged model's.
"""

from __future__ import annotations

from pathlib import Path

CHECK_FILE = "export-check.json"


def conversations(config: dict, source: str, n: int = 3) -> list[list[dict]]:
    """Up to ``n`` conversations of the run's data: held-out rows first, then training rows."""
    from .evaluate import eval_examples

    train, held_out, _ = eval_examples(config, source, split="validation")
    out = []
    for ex in list(held_out) + list(train):
        if ex.get("messages"):
            msgs = ex["messages"]
        elif isinstance(ex.get("prompt"), list) and isinstance(ex.get("chosen"), list):
            msgs = ex["prompt"] + ex["chosen"]
        elif isinstance(ex.get("prompt"), list) and isinstance(ex.get("completion"), list):
            msgs = ex["prompt"] + ex["completion"]
        else:
            continue
        clean = [{"role": m["role"], "content": m["content"]} for m in msgs
                 if isinstance(m.get("content"), str) and m.get("role") in ("system", "user", "assistant")]
        if any(m["role"] == "assistant" for m in clean) and not ex.get("tools"):
            out.append(clean)
        if len(out) >= n:
            break
    return out


def prompts_of(conversation: list[dict]) -> list[list[dict]]:
    """The prompt before each assistant turn."""
    return [conversation[:i] for i, m in enumerate(conversation) if m["role"] == "assistant" and i > 0]


def gguf_metadata(path: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(str(path))

    def field(key):
        f = reader.fields.get(key)
        if f is None:
            return None
        try:
            return f.contents()
        except Exception:
            return None

    return {"chat_template": field("tokenizer.chat_template"), "eos": field("tokenizer.ggml.eos_token_id"),
            "eot": field("tokenizer.ggml.eot_token_id"), "bos": field("tokenizer.ggml.bos_token_id"),
            "add_bos": field("tokenizer.ggml.add_bos_token"), "architecture": field("general.architecture"),
            "file_type": field("general.file_type")}


def _quiet():
    """transformers' GGUF reader draws its own tqdm bar on stderr; the export shows its own progress."""
    import contextlib
    import io

    return contextlib.redirect_stderr(io.StringIO())


def load_gguf_tokenizer(path: Path):
    from transformers import AutoTokenizer

    with _quiet():
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def _first_difference(a: list[int], b: list[int], tok) -> dict | None:
    if a == b:
        return None
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    piece = lambda ids, i: tok.decode([ids[i]]) if i < len(ids) else "(end)"  # noqa: E731
    return {"position": k, "trained": a[k] if k < len(a) else None, "exported": b[k] if k < len(b) else None,
            "trained_text": piece(a, k), "exported_text": piece(b, k),
            "context": tok.decode(a[max(0, k - 8):k])}


def _describe(where: str, i: int, diff: dict) -> str:
    return (f"{where} differs from training in conversation {i + 1} at token {diff['position']}: trained "
            f"{diff['trained_text']!r} (id {diff['trained']}), exported {diff['exported_text']!r} "
            f"(id {diff['exported']}) after {diff['context']!r}")


def check_templates(train_tok, gguf_path: Path, convs: list[list[dict]], modelfile: str | None = None, *,
                    gguf_tok=None, gguf_template: str | None = None) -> dict:
    """Token-by-token parity of the conversations through training, the GGUF and the Modelfile.
    ``gguf_template`` replaces the file's embedded template (to show a broken one is caught)."""
    from .data.encode import encode, ensure_chat_template
    from .modelfile import ollama_values, read_modelfile, render_go_template

    ensure_chat_template(train_tok)
    meta = gguf_metadata(gguf_path)
    template = gguf_template if gguf_template is not None else meta["chat_template"]
    gguf_tok = gguf_tok or load_gguf_tokenizer(gguf_path)
    mf = read_modelfile(modelfile) if modelfile else None
    problems: list[str] = []
    compared = {"gguf": 0, "modelfile": 0}
    if not template:
        problems.append("The GGUF has no chat template (tokenizer.chat_template is missing)")

    def gguf_ids(messages, gen):
        text = gguf_tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                            add_generation_prompt=gen)
        ids = gguf_tok(text, add_special_tokens=False)["input_ids"]
        if meta["add_bos"] and meta["bos"] is not None and (not ids or ids[0] != meta["bos"]):
            ids = [meta["bos"]] + ids  # llama.cpp adds it
        return ids

    def trained_prompt(messages):
        text = train_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return train_tok(text, add_special_tokens=False)["input_ids"]

    for i, conv in enumerate(convs):
        trained_full = encode(train_tok, {"messages": conv}).input_ids
        cases = [("conversation", trained_full, conv, False)] + [
            ("prompt", trained_prompt(p), p, True) for p in prompts_of(conv)]
        for label, trained, messages, gen in cases:
            if template:
                try:
                    exported = gguf_ids(messages, gen)
                except Exception as exc:  # a broken template raises
                    problems.append(f"The GGUF's chat template cannot render conversation {i + 1} ({exc})")
                    template = None
                else:
                    compared["gguf"] += 1
                    diff = _first_difference(trained, exported, train_tok)
                    if diff:
                        problems.append(_describe(f"The GGUF's {label}", i, diff))
            if mf and mf["template"] is not None and gen:
                system = mf["system"]
                msgs = [m for m in messages if not (m["role"] == "system" and m["content"] == system)]
                text = render_go_template(mf["template"], ollama_values(msgs, system))
                exported = gguf_tok(text, add_special_tokens=False)["input_ids"]
                compared["modelfile"] += 1
                diff = _first_difference(trained, exported, train_tok)
                if diff:
                    problems.append(_describe("The Modelfile's prompt", i, diff))
    if mf is not None and mf["template"] is None:
        problems.append("The Modelfile has no TEMPLATE (the chat template could not be translated)")

    # stop tokens: the token that ends an assistant turn in training
    end = train_tok.eos_token
    end_id = train_tok.convert_tokens_to_ids(end) if end else None
    stops = {meta["eos"], meta["eot"]} - {None}
    if end_id is not None and end_id not in stops:
        problems.append(f"Training ends each answer with {end!r} (id {end_id}) but the GGUF stops at ids "
                        f"{sorted(stops)}")
    if mf is not None and end and end not in mf["stops"]:
        problems.append(f"The Modelfile has no stop PARAMETER for {end!r}")
    ok = not problems and compared["gguf"] > 0
    verdict = ("Prompted exactly as trained: " + f"{len(convs)} conversations, {compared['gguf']} renderings "
               f"through the GGUF and {compared['modelfile']} through the Modelfile match token by token; "
               f"answers end at {end!r}.") if ok else (problems[0] + "." if problems else
                                                         "Nothing could be compared (no conversation in the data).")
    return {"ok": ok, "verdict": verdict, "problems": problems, "conversations": len(convs), "compared": compared,
            "stop_token": end, "gguf_stops": sorted(stops)}


# below this share of the merged model's answer tokens also predicted by a quantised GGUF, it answers otherwise
QUANT_AGREEMENT = 0.9


def check_greedy(merged_dir: Path, gguf_path: Path, train_tok, prompt: list[dict], *, max_new_tokens: int = 24,
                 quant: str = "f16") -> dict:
    """Greedy answers of the merged model and of the GGUF read back by transformers, compared. A quantised
    GGUF (q8_0) rounds every weight, so where a greedy answer may part from the merged one at a close call
    it passes when, fed the merged model's answer, it predicts at least QUANT_AGREEMENT of its tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    text = train_tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([train_tok(text, add_special_tokens=False)["input_ids"]])
    end_id = train_tok.convert_tokens_to_ids(train_tok.eos_token) if train_tok.eos_token else None
    answers, agreement = {}, None
    for name, load in (("merged", lambda: AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32)),
                       ("gguf", lambda: AutoModelForCausalLM.from_pretrained(
                           str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32))):
        with _quiet():
            model = load().eval()
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=end_id,
                                 pad_token_id=train_tok.pad_token_id if train_tok.pad_token_id is not None else end_id)
        answers[name] = out[0, ids.shape[1]:].tolist()
        if name == "gguf" and answers["merged"]:
            with torch.no_grad():
                forced = model(torch.tensor([ids[0].tolist() + answers["merged"]])).logits[0, ids.shape[1] - 1:-1]
            predicted = forced.argmax(-1).tolist()
            agreement = sum(p == t for p, t in zip(predicted, answers["merged"])) / len(answers["merged"])
        del model
    a, b = answers["merged"], answers["gguf"]
    diff = _first_difference(a, b, train_tok)
    text_a, text_b = train_tok.decode(a), train_tok.decode(b)
    agreement = 1.0 if agreement is None else agreement  # None: the merged model answered nothing
    quantised = quant.lower() not in ("f32", "f16", "bf16")
    ok = diff is None or (quantised and agreement >= QUANT_AGREEMENT)
    if diff is None:
        verdict = f"The GGUF answers like the merged model ({len(a)} greedy tokens identical): {text_a[:80]!r}"
    elif ok:
        verdict = (f"The {quant} GGUF answers like the merged model: fed its answer, it predicts {agreement:.0%} of the "
                   f"tokens (its own greedy answer parts at token {diff['position']}, where rounding tips a close call)")
    else:
        verdict = (f"The GGUF's greedy answer differs from the merged model's at token {diff['position']}: "
                   f"{text_b[:80]!r} against {text_a[:80]!r}" + (f" (it predicts {agreement:.0%} of the merged "
                                                                  f"model's tokens)" if quantised else ""))
    return {"ok": ok, "verdict": verdict, "prompt": prompt, "merged": text_a, "gguf": text_b,
            "merged_tokens": a, "gguf_tokens": b, "agreement": round(agreement, 4)}
