"""The model card (README.md) written with every export and uploaded with ``--push``.

Hugging Face model-card form: YAML front matter (base_model, library_name, tags), then the base
model, the data (what it is, how many rows were trained and held out), the method and its
settings, the run's last evaluation table and the forgetting probe when ``tunedeck eval`` ran
them, and how to load what was exported. Built from the run folder only: no ML import.
"""

from __future__ import annotations

from pathlib import Path

DEMO_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
HOW = {
    "adapter": ("from transformers import AutoModelForCausalLM, AutoTokenizer\nfrom peft import PeftModel\n"
                "base = AutoModelForCausalLM.from_pretrained('{base}')\nmodel = PeftModel.from_pretrained(base, '.')\n"
                "tokenizer = AutoTokenizer.from_pretrained('.')"),
    "merged": ("from transformers import AutoModelForCausalLM, AutoTokenizer\n"
               "model = AutoModelForCausalLM.from_pretrained('.')\ntokenizer = AutoTokenizer.from_pretrained('.')"),
    "gguf": "ollama create NAME -f Modelfile      # or: llama-cli -m {file}",
}
HOW["model"] = HOW["merged"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(esc, r)) + " |" for r in rows)]


def _data_lines(config: dict, data_rows: dict | None) -> list[str]:
    data = config.get("data")
    what = "the built-in demo (support ticket → strict JSON)" if data == "demo" else f"`{data}`"
    lines = [f"- Data: {what}"]
    if data_rows:
        lines.append(f"- Rows: {data_rows.get('train', '?')} trained, {data_rows.get('held_out', 0)} held out "
                     f"({data_rows.get('split', 'validation')})")
    for key in ("validation_data", "test_data"):
        if config.get(key):
            lines.append(f"- {key.replace('_', ' ').capitalize()}: `{config[key]}`")
    return lines


def _settings(config: dict) -> list[str]:
    keys = ("method", "objective", "learning_rate", "epochs", "max_steps", "batch_size", "gradient_accumulation_steps",
            "max_length", "seed", "replay")
    rows = [[k, str(config[k])] for k in keys if config.get(k) not in (None, "")]
    lora = config.get("lora") or {}
    if config.get("method", "lora") in ("lora", "qlora") and lora:
        rows += [[f"lora.{k}", str(v)] for k, v in lora.items()]
    return _table(["setting", "value"], rows) if rows else []


def render(run, *, base_model: str, export: str, data_rows: dict | None = None, file_name: str | None = None,
           check: dict | None = None) -> str:
    """The card for ``run`` (a Run) exported as ``export`` (adapter | merged | model | gguf)."""
    from .eval_scores import saved_result, table_rows
    from .general_probe import probe_caption, probe_table_rows

    config = run.config()
    info = run.info(with_log=False)
    tags = ["tunedeck", "fine-tuned", config.get("method") or "lora", config.get("objective") or "sft"]
    if export == "gguf":
        tags.append("gguf")
    base_ref = config.get("model", "?")
    hub_base = DEMO_HUB_ID if base_ref == "demo" else base_ref  # the demo is SmolLM2-135M-Instruct (a GGUF copy)
    out = ["---", f"base_model: {hub_base}", f"library_name: {'peft' if export == 'adapter' else 'transformers'}",
           "tags:", *(f"- {t}" for t in tags), "---", "",
           f"# {run.id}", "",
           f"Fine-tuned with Tunedeck from **{hub_base}**"
           + (f" (loaded from `{base_model}`)" if base_model and base_model != base_ref else "") + ".", "",
           "## Data", "", *_data_lines(config, data_rows), "",
           "## Method and settings", "", *_settings(config)]
    if info.step:
        out += ["", f"Trained {info.step} steps ({info.state})."]
    result = saved_result(run.dir)
    out += ["", "## Evaluation", ""]
    if result and result.get("rows"):
        header, rows = table_rows(result)
        out += [f"On {result.get('scored')} examples of the {result.get('split')}:", "", *_table(header, rows)]
        if result.get("verdict"):
            out += ["", result["verdict"]]
    else:
        out.append("Not evaluated yet (`tunedeck eval RUN` compares it with the base model and prompting).")
    general = (result or {}).get("general")
    if general:
        header, rows = probe_table_rows(general)
        out += ["", "### Forgetting probe", "", probe_caption(general), "", *_table(header, rows)]
        if general.get("verdict"):
            out += ["", general["verdict"]]
    if check:
        out += ["", "## Export check", "", f"- Template: {check.get('template', {}).get('verdict', '?')}",
                f"- Greedy answer: {check.get('greedy', {}).get('verdict', 'not checked')}"]
    how = HOW.get(export, HOW["merged"]).format(base=base_model, file=file_name or "model.gguf")
    out += ["", "## Use", "", "```" + ("sh" if export == "gguf" else "python"), how, "```", ""]
    if export != "gguf":
        out.append("The tokenizer carries the chat template used in training: build prompts with "
                   "`tokenizer.apply_chat_template(messages, add_generation_prompt=True)`.")
        out.append("")
    return "\n".join(out)


def write(run, folder: Path, **kw) -> Path:
    """README.md in ``folder`` and a copy in the run folder (model-card.md)."""
    text = render(run, **kw)
    path = Path(folder) / "README.md"
    path.write_text(text, encoding="utf-8")
    (run.dir / "model-card.md").write_text(text, encoding="utf-8")
    return path
