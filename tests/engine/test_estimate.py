import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from engine import estimate as E
from engine import model_shapes as shapes
from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

# Published totals (model cards / `print_trainable_parameters`): every built-in config must give them.
PUBLISHED_TOTALS = {
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.2-1b": 1_235_814_400,
    "llama-3.2-3b": 3_212_749_824,
    "llama-2-7b": 6_738_415_616,
    "mistral-7b": 7_248_023_552,
    "qwen2.5-7b": 7_615_616_512,
    "qwen2.5-0.5b": 494_032_768,
    "gemma-2-2b": 2_614_341_888,
    "phi-3-mini": 3_821_079_552,
    "smollm2-135m": 134_515_008,
}


@pytest.fixture(scope="module")
def llama8b():
    return shapes.architecture_for("llama-3.1-8b")


@pytest.fixture(scope="module")
def demo_arch():
    return shapes.architecture_for("demo")


def test_llama_3_1_8b_counted_by_hand(llama8b):
    h, inter, layers, vocab, kv = 4096, 14336, 32, 128256, 8 * 128
    attention = h * h + h * kv + h * kv + h * h  # q, k, v, o (no biases)
    mlp = 3 * h * inter  # gate, up, down
    norms = 2 * h
    embeddings = vocab * h  # untied: lm_head is another vocab x h
    by_hand = layers * (attention + mlp + norms) + 2 * embeddings + h  # + final norm
    assert by_hand == 8_030_261_248 == llama8b.total_params
    # LoRA: r x (in + out) per adapted matrix
    qv = layers * (16 * (h + h) + 16 * (h + kv))
    assert qv == 6_815_744 == E.lora_params(llama8b, 16, "q_proj,v_proj")
    every = layers * 16 * (2 * (h + h) + 2 * (h + kv) + 2 * (h + inter) + (inter + h))
    assert every == 41_943_040 == E.lora_params(llama8b, 16, "all-linear")


def test_qwen2_5_7b_counted_by_hand_with_its_qkv_biases():
    arch = shapes.architecture_for("qwen2.5-7b")
    h, inter, layers, vocab, kv = 3584, 18944, 28, 152064, 4 * 128
    attention = (h * h + h) + (h * kv + kv) + (h * kv + kv) + h * h  # q, k, v carry biases; o does not
    per_layer = attention + 3 * h * inter + 2 * h
    by_hand = layers * per_layer + 2 * vocab * h + h
    assert by_hand == 7_615_616_512 == arch.total_params
    assert E.lora_params(arch, 8, ["q_proj", "v_proj"]) == layers * 8 * ((h + h) + (h + kv))


def test_seed_article_lora_count_is_wrong_for_rank_16():
    """One of the background articles prints 4,194,304 trainable parameters for Llama-2-7B with r=16 on
    q_proj and v_proj; that is the r=8 figure."""
    arch = shapes.architecture_for("llama-2-7b")
    assert E.lora_params(arch, 16, "q_proj,v_proj") == 8_388_608
    assert E.lora_params(arch, 8, "q_proj,v_proj") == 4_194_304


@pytest.mark.parametrize("name", sorted(PUBLISHED_TOTALS))
def test_every_builtin_config_builds_on_meta_with_its_published_size(name):
    arch = shapes.architecture_for(name)
    assert arch.total_params == PUBLISHED_TOTALS[name]
    assert arch.known_layout
    assert E.lora_params(arch, 16, "all-linear") > 0


def test_short_name_hub_id_and_path_give_the_same_config():
    by_name, display = shapes.load_config("llama-3.1-8b")
    by_hub, _ = shapes.load_config("meta-llama/Llama-3.1-8B-Instruct")
    by_path, _ = shapes.load_config(str(shapes.configs_dir() / "llama-3.1-8b.json"))
    assert by_name == by_hub == by_path and display == "Llama-3.1-8B"


def test_lora_counts_match_peft_on_a_real_model(tiny_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    arch = shapes.architecture_for(str(tiny_model))
    for targets in (["q_proj", "v_proj"], "all-linear"):
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        assert sum(p.numel() for p in model.parameters()) == arch.total_params
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets,
                                                      task_type="CAUSAL_LM"))
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        assert trainable == E.lora_params(arch, 4, targets)


def test_unknown_lora_target_is_one_sentence_naming_the_real_layers(llama8b):
    with pytest.raises(ConfigError, match=r"matches no layer.*q_proj.*all-linear"):
        E.lora_params(llama8b, 16, "qkv_proj")


def test_memory_grows_with_sequence_length_and_batch_and_checkpointing_lowers_it(llama8b):
    for method in E.METHODS:
        for device in ("cuda", "cpu"):
            base = E.Plan(method=method, device=device, gradient_checkpointing=False, seq_len=256, batch_size=1)
            totals = [E.estimate(llama8b, replace(base, seq_len=n)).memory.total for n in (256, 512, 1024, 4096)]
            assert totals == sorted(totals) and totals[0] < totals[-1]
            acts = [E.estimate(llama8b, replace(base, batch_size=b)).memory.activations for b in (1, 2, 4, 8)]
            assert acts == sorted(acts) and acts[0] < acts[-1]
            for n in (512, 2048):
                off = E.estimate(llama8b, replace(base, seq_len=n, batch_size=4))
                on = E.estimate(llama8b, replace(base, seq_len=n, batch_size=4, gradient_checkpointing=True))
                assert on.memory.activations < off.memory.activations
                assert on.memory.total <= off.memory.total


def test_methods_rank_as_expected_and_the_breakdown_adds_up(llama8b):
    plan = E.Plan(seq_len=1024, batch_size=2, gradient_checkpointing=True)
    est = {m: E.estimate(llama8b, replace(plan, method=m)) for m in E.METHODS}
    assert est["qlora"].memory.weights < est["lora"].memory.weights < est["full"].memory.weights
    assert est["qlora"].memory.total < est["lora"].memory.total < est["full"].memory.total
    assert est["full"].trainable_params == llama8b.total_params
    assert est["lora"].trainable_params == est["qlora"].trainable_params == 41_943_040
    # full fine-tuning, mixed precision: 4 (fp32 weights) + 4 (grads) + 8 (AdamW) bytes per parameter
    full = est["full"].memory
    n = llama8b.total_params
    assert (full.weights, full.gradients, full.optimizer) == (4 * n, 4 * n, 8 * n)
    pure = E.estimate(llama8b, replace(plan, method="full", precision="bf16")).memory
    assert (pure.weights, pure.gradients, pure.optimizer) == (2 * n, 2 * n, 4 * n)
    eight = E.estimate(llama8b, replace(plan, method="full", optimizer="adamw-8bit")).memory
    assert eight.optimizer < full.optimizer / 3.9
    for e in est.values():
        m = e.memory
        parts = m.weights + m.gradients + m.optimizer + m.activations + m.overhead
        assert m.weights + m.optimizer + m.overhead < m.total <= parts
    # QLoRA: 4.127 bits for the decoder's linear weights, fp32 for the rest, bf16 adapters
    linear = llama8b.linear_weight_params
    expected = int(linear * E.NF4_BYTES_PER_WEIGHT) + (n - linear) * 4 + 41_943_040 * 2
    assert est["qlora"].memory.weights == expected


def test_activation_formula_matches_what_autograd_saves(tiny_model):
    """The per-layer activation term against the bytes of every tensor autograd saves for backward,
    in one real forward of a padded batch on the CPU (fp32)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    arch = shapes.architecture_for(str(tiny_model))
    batch, seq = 4, 64
    for method in ("full", "lora"):
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        targets = []
        if method == "lora":
            model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1,
                                                     target_modules="all-linear", task_type="CAUSAL_LM"))
            targets = E.lora_targets(arch, "all-linear")
        model.train()
        ids = torch.randint(5, arch.vocab, (batch, seq))
        mask = torch.ones(batch, seq, dtype=torch.long)
        mask[0, -5:] = 0  # padding, as in real batches
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen: dict[int, int] = {}

        def pack(t):
            st = t.untyped_storage()
            if st.data_ptr() not in params:
                seen.setdefault(st.data_ptr(), st.nbytes())
            return t

        backbone = model.get_base_model().model if method == "lora" else model.model
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            backbone(input_ids=ids, attention_mask=mask, use_cache=False)
        plan = E.Plan(method=method, batch_size=batch, seq_len=seq, device="cpu", lora_dropout=0.1, lora_r=4,
                      gradient_checkpointing=False).resolved()
        per_layer, _ = E._activation_bytes(arch, plan, c=4, w=4, base_trained=method == "full",
                                           autocast_copies=False, lora=targets, adapter_bytes=4)
        final_norm = 4 * arch.hidden + (4 * arch.hidden if method == "full" else 0)
        estimated = (per_layer * arch.layers + final_norm) * batch * seq
        measured = sum(seen.values())
        assert 0.9 < estimated / measured < 1.1, (method, estimated, measured)


def test_judge_fit_verdicts_and_the_no_gpu_sentence():
    gpus = [{"index": 0, "name": "small", "memory_total": 8 * E.GIB, "memory_used": 0},
            {"index": 1, "name": "big", "memory_total": 24 * E.GIB, "memory_used": 4 * E.GIB}]
    fit = E.judge_fit(10 * E.GIB, gpus)
    assert fit.verdict == "fits" and fit.gpu["name"] == "big" and "20.0 GiB free" in fit.reason
    assert E.judge_fit(19 * E.GIB, gpus).verdict == "tight"
    assert E.judge_fit(21 * E.GIB, gpus).verdict == "no"
    none = E.judge_fit(10 * E.GIB, [], "no NVIDIA GPU found")
    assert none.verdict == "no-gpu" and none.reason.startswith("no NVIDIA GPU found — CPU only")


def test_ways_to_fit_starts_with_checkpointing_and_every_suggestion_fits(llama8b):
    plan = E.Plan(method="lora", seq_len=4096, batch_size=8, gradient_checkpointing=False)
    capacity = 24 * E.GIB
    assert E.estimate(llama8b, plan).memory.total > capacity
    ways = E.ways_to_fit(llama8b, plan, capacity)
    assert ways
    for way in ways:
        assert way["total"] <= E.FIT_MARGIN * capacity
        assert E.estimate(llama8b, replace(plan, **way["settings"])).memory.total == way["total"]
    assert any("QLoRA" in w["change"] for w in E.ways_to_fit(llama8b, plan, 12 * E.GIB))


def test_architecture_survives_json_for_the_tui(demo_arch):
    again = E.Architecture.from_dict(json.loads(json.dumps(demo_arch.to_dict())))
    for method in E.METHODS:
        plan = E.Plan(method=method)
        assert E.estimate(again, plan).to_dict() == E.estimate(demo_arch, plan).to_dict()


def test_estimate_and_advisor_import_no_ml_library():
    code = ("import sys, engine.estimate, engine.advisor, engine.commands.estimate; "
            "print([m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "engine", "estimate", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_cli_json_shape_for_a_builtin_config():
    proc = _cli("--model", "llama-3.1-8b", "--method", "qlora", "--seq-len", "2048", "--batch-size", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["total_params"] == 8_030_261_248 and data["trainable_params"] == 41_943_040
    assert set(data["memory_bytes"]) == {"weights", "gradients", "optimizer", "activations", "overhead", "total"}
    assert data["fit"]["verdict"] in ("fits", "tight", "no", "no-gpu")
    # without data every row is max_length long: no padding for padding-free batching to save
    assert (data["settings"]["seq_len"], data["settings"]["batch_size"], data["settings"]["packed"]) == (2048, 2, False)
    assert data["batching"] == "rows all max_length long have no padding to save"
    assert data["settings"]["gradient_checkpointing"] is True and data["sized_from"] == "max_length"
    proc = _cli("--model", "llama-3.1-8b", "--method", "qlora", "--seq-len", "2048", "--batch-size", "2",
                "--no-padding-free", "--json")
    padded = json.loads(proc.stdout)
    assert (padded["settings"]["seq_len"], padded["settings"]["packed"], padded["batching"]) == (
        2048, False, "padding_free is off")


def test_cli_packs_a_data_file_whose_lengths_make_packing_pay(tiny_model, tmp_path):
    short = [{"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]}] * 30
    long = [{"messages": [{"role": "user", "content": "word " * 50}, {"role": "assistant", "content": "ok"}]}] * 15
    data = tmp_path / "uneven.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in short + long))
    proc = _cli("--model", str(tiny_model), "--method", "lora", "--seq-len", "256", "--batch-size", "2",
                "--data", str(data), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    longest = json.loads(_cli("--model", str(tiny_model), "--method", "lora", "--seq-len", "256", "--batch-size", "2",
                              "--data", str(data), "--no-padding-free", "--json").stdout)["settings"]["seq_len"]
    assert out["sized_from"] == "data" and out["settings"]["packed"] and out["settings"]["batch_size"] == 1
    assert out["settings"]["seq_len"] == 2 * longest and "a batch packed against" in out["batching"]
    table = _cli("--model", str(tiny_model), "--seq-len", "256", "--batch-size", "2", "--data", str(data)).stdout
    assert "Batching: padding-free: about" in " ".join(table.split())


def test_cli_table_and_all_methods_and_planned_gpu():
    proc = _cli("--model", "demo", "--method", "all", "--gpu-memory", "8")
    assert proc.returncode == 0, proc.stderr
    assert "134,515,008" in proc.stdout and "QLoRA" in proc.stdout and "planned 8 GiB GPU" in proc.stdout
    proc = _cli("--model", "mistral-7b", "--method", "full", "--gpu-memory", "24", "--json")
    data = json.loads(proc.stdout)
    assert data["fit"]["verdict"] == "no" and data["suggestions"]
    assert all(s["total"] <= 0.85 * 24 * E.GIB for s in data["suggestions"])


def test_cli_errors_are_one_sentence_without_traceback(tmp_path):
    proc = _cli("--model", "llama-3.1-8b", "--lora-targets", "c_attn")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "matches no layer" in proc.stderr
    proc = _cli("--model", str(tmp_path / "nope" / "config.json"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli("--model", "demo", "--seq-len", "0")
    assert proc.returncode == 2 and "seq-len must be at least 1" in proc.stderr


def test_fit_uses_the_gpus_nvml_reports(monkeypatch, capsys):
    """The only fake: NVML, at the hardware edge (this machine has no GPU)."""
    import pynvml

    from engine import cli, gpu

    class Mem:
        total, used = 24 * E.GIB, 2 * E.GIB

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 1)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: f"handle{i}")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: b"NVIDIA GeForce RTX 4090")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda h: Mem())
    gpu.reset()
    try:
        assert cli.main(["estimate", "--model", "llama-3.1-8b", "--method", "qlora", "--json"]) == 0
        fits = json.loads(capsys.readouterr().out)
        assert fits["fit"]["verdict"] == "fits" and fits["fit"]["gpu"]["name"] == "NVIDIA GeForce RTX 4090"
        assert fits["fit"]["gpu"]["memory_free"] == 22 * E.GIB
        assert cli.main(["estimate", "--model", "llama-3.1-8b", "--method", "full", "--json"]) == 0
        full = json.loads(capsys.readouterr().out)
        assert full["fit"]["verdict"] == "no" and "does not fit on GPU 0" in full["fit"]["reason"]
    finally:
        gpu.reset()
