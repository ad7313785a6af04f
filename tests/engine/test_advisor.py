import itertools

import pytest

from engine import advisor as A
from engine.config import RunConfig

GIB = 1024**3
LLAMA8B = {"full": 137 * GIB, "lora": 19 * GIB, "qlora": 10 * GIB}
TRAINABLE = {"full": 8_030_261_248, "lora": 41_943_040, "qlora": 41_943_040}


def answers(**kw):
    base = dict(problem="format", examples=400, knowledge_changes="rarely", budget="small", latency="relaxed",
                gpu_memory=80 * GIB, method_memory=LLAMA8B, model_params=8_030_261_248,
                trainable_params=TRAINABLE, model_name="Llama-3.1-8B")
    base.update(kw)
    return A.Answers(**base)


def test_changing_knowledge_is_never_fine_tuned_whatever_else_is_true():
    for examples, budget, latency, gpu, changes in itertools.product(
            (0, 30, 400, 50_000), A.BUDGETS, A.LATENCY, (None, 8 * GIB, 80 * GIB, 640 * GIB), ("often", "sometimes")):
        rec = A.recommend(answers(problem="knowledge", examples=examples, budget=budget, latency=latency,
                                  gpu_memory=gpu, knowledge_changes=changes))
        assert rec.method == "rag" and not rec.trains and rec.settings is None


def test_knowledge_gets_rag_with_reasons_and_what_would_change_it():
    rec = A.recommend(answers(problem="knowledge", knowledge_changes="often", latency="strict"))
    assert rec.method == "rag"
    text = " ".join(rec.reasons)
    assert "behaviour, not facts" in text and "stale" in text and "which document" in text
    assert any("LoRA" in w and "never to store the facts" in w for w in rec.would_change)
    assert any("retrieval step" in w for w in rec.warnings)
    stable = A.recommend(answers(problem="knowledge", knowledge_changes="rarely", examples=50_000, budget="large"))
    assert stable.method == "rag"


@pytest.mark.parametrize("examples", [0, 1, 20, A.MIN_EXAMPLES - 1])
def test_too_little_data_says_so_and_recommends_prompting(examples):
    rec = A.recommend(answers(examples=examples))
    assert rec.method == "prompting" and rec.settings is None
    assert rec.warnings and "Too little data to fine-tune" in rec.warnings[0]
    assert "too small to fine-tune" in rec.reasons[0]
    assert any(f"{A.MIN_EXAMPLES}+" in w for w in rec.would_change)


def test_format_problem_with_few_examples_points_at_schemas():
    rec = A.recommend(answers(problem="format", examples=10))
    assert any("schema" in r for r in rec.reasons)


def test_no_budget_means_prompting_and_says_what_a_budget_would_buy():
    rec = A.recommend(answers(budget="none"))
    assert rec.method == "prompting"
    assert any("GPU-hours" in w and "10.0 GiB" in w for w in rec.would_change)


@pytest.mark.parametrize("problem", ["format", "style", "task", "cost"])
def test_behaviour_with_enough_data_and_memory_is_lora(problem):
    rec = A.recommend(answers(problem=problem, gpu_memory=24 * GIB))
    assert rec.method == "lora" and rec.trains
    assert "41,943,040 parameters, 0.52% of the model" in " ".join(rec.reasons)
    assert any("QLoRA" in w for w in rec.would_change)
    settings = rec.settings
    assert settings["learning_rate"] == 2e-4 and settings["lora"] == {"r": 16, "alpha": 32, "dropout": 0.05,
                                                                      "targets": "all-linear"}
    # the settings are a valid run config for the Train screen
    cfg = RunConfig.from_dict({"method": rec.method, **settings})
    assert cfg.batch_size == settings["batch_size"] and cfg.lora.r == 16


def test_lora_too_big_for_the_gpu_gives_qlora_with_the_numbers():
    rec = A.recommend(answers(gpu_memory=16 * GIB))
    assert rec.method == "qlora"
    assert "19.0 GiB, more than the 16.0 GiB free" in " ".join(rec.reasons)
    assert rec.settings["gradient_checkpointing"] is True
    assert any("plain LoRA" in w for w in rec.would_change)
    RunConfig.from_dict({"method": "qlora", **rec.settings})


def test_nothing_fits_still_answers_qlora_and_warns_plainly():
    rec = A.recommend(answers(gpu_memory=8 * GIB))
    assert rec.method == "qlora"
    assert any("Even QLoRA needs 10.0 GiB" in w and "smaller model" in w for w in rec.warnings)


def test_full_fine_tuning_needs_much_data_a_big_budget_and_the_memory():
    big = answers(examples=50_000, budget="large", gpu_memory=180 * GIB)
    rec = A.recommend(big)
    assert rec.method == "full"
    assert any("forget" in w for w in rec.warnings)
    assert rec.settings["learning_rate"] == 1e-5 and "lora" not in rec.settings
    RunConfig.from_dict({"method": "full", **rec.settings})
    assert A.recommend(answers(examples=50_000, budget="small", gpu_memory=180 * GIB)).method == "lora"
    assert A.recommend(answers(examples=2_000, budget="large", gpu_memory=180 * GIB)).method == "lora"
    small_gpu = A.recommend(answers(examples=50_000, budget="large", gpu_memory=80 * GIB))
    assert small_gpu.method == "lora" and "more than the GPU has" in " ".join(small_gpu.reasons)


def test_strict_latency_prefers_a_merged_adapter_over_long_prompts():
    rec = A.recommend(answers(latency="strict"))
    assert any("merged" in r and "no added latency" in r for r in rec.reasons)


def test_no_gpu_small_model_trains_on_the_cpu_big_model_is_told_it_needs_one():
    small = A.recommend(answers(gpu_memory=None, method_memory=None, model_params=134_515_008,
                                trainable_params=None))
    assert small.method == "lora" and any("trains on the CPU" in w for w in small.warnings)
    assert small.settings["batch_size"] == 8 and small.settings["max_length"] == 512
    big = A.recommend(answers(gpu_memory=None))
    assert any("needs a GPU" in w for w in big.warnings)


def test_a_thin_dataset_trains_with_a_warning_about_overfitting():
    rec = A.recommend(answers(examples=120))
    assert rec.trains and any("overfitting" in w for w in rec.warnings)


def test_starting_settings_scale_with_data_and_model():
    few = A.starting_settings("lora", examples=200, model_params=8e9)
    many = A.starting_settings("lora", examples=20_000, model_params=8e9)
    assert few["epochs"] > many["epochs"] == 1
    assert A.starting_settings("qlora", examples=500, model_params=70e9)["learning_rate"] == 1e-4
    assert A.starting_settings("full", examples=500, model_params=135e6)["learning_rate"] == 2e-5
    assert A.starting_settings("lora", examples=500, max_length=700)["max_length"] == 768
    tiny = A.starting_settings("lora", examples=60, gpu=True)
    assert tiny["gradient_accumulation_steps"] * tiny["batch_size"] * 3 <= 60
    with pytest.raises(ValueError):
        A.starting_settings("rag", examples=100)


def test_bad_answers_are_refused():
    with pytest.raises(ValueError, match="problem must be one of"):
        A.recommend(answers(problem="vibes"))


# --- what it learns from: SFT, DPO or KTO ----------------------------------------------------------

def test_the_feedback_question_is_asked_for_judged_data_or_a_style_problem_never_for_knowledge():
    assert A.asks_feedback("format", "preference") and A.asks_feedback("task", "kto")
    assert A.asks_feedback("style", "messages") and A.asks_feedback("style", None)
    assert not A.asks_feedback("format", "messages") and not A.asks_feedback("cost", None)
    assert not A.asks_feedback("knowledge", "preference")
    assert [A.objective_for_data(f) for f in ("preference", "kto", "messages", None)] == ["dpo", "kto", "sft", "sft"]


def test_preference_pairs_get_dpo_explained_with_sft_first_and_valid_dpo_settings():
    rec = A.recommend(answers(feedback="dpo", data_format="preference", data_name="pairs.jsonl"))
    assert rec.method == "lora" and rec.objective == "dpo" and rec.headline.endswith("(DPO)")
    # SFT vs DPO vs KTO in plain words, one line each
    assert [w.split()[0] for w in rec.objectives] == ["SFT", "DPO", "KTO", "GRPO"]
    assert "ideal answers" in rec.objectives[0] and "which of two answers is better" in rec.objectives[1]
    assert "good or bad" in rec.objectives[2] and "no pairs" in rec.objectives[2]
    assert any("chosen answer likelier than the rejected" in r for r in rec.reasons)
    # no SFT run to start from: says when to do SFT first, and how (init_from)
    assert any("train SFT first" in w and "init_from" in w for w in rec.warnings)
    assert "init_from" not in rec.settings
    s = rec.settings
    assert s["objective"] == "dpo" and s["learning_rate"] == 5e-5 and s["beta"] == 0.1 and s["epochs"] == 1
    cfg = RunConfig.from_dict({"method": rec.method, **s})
    assert cfg.is_preference and cfg.learning_rate == RunConfig.defaults_for("lora", "dpo").learning_rate


def test_dpo_after_an_sft_run_starts_from_it():
    rec = A.recommend(answers(feedback="dpo", data_format="preference", sft_run="20260101-demo-lora"))
    assert rec.settings["init_from"] == "20260101-demo-lora"
    assert any("starts from your SFT run 20260101-demo-lora" in r for r in rec.reasons)
    assert not any("train SFT first" in w for w in rec.warnings)
    cfg = RunConfig.from_dict({"method": rec.method, **rec.settings})
    assert cfg.init_from == "20260101-demo-lora"
    # full fine-tuning cannot start from an adapter: no init_from, and it says why
    full = A.recommend(answers(feedback="dpo", data_format="preference", sft_run="r1", examples=20_000,
                               budget="large", gpu_memory=640 * GIB))
    assert full.method == "full" and "init_from" not in full.settings
    assert full.settings["learning_rate"] == 5e-7
    assert any("needs its adapter" in w for w in full.warnings)
    RunConfig.from_dict({"method": "full", **full.settings})


def test_labelled_answers_get_kto_and_a_style_problem_with_ideal_answers_gets_sft_with_the_choice_explained():
    kto = A.recommend(answers(feedback="kto", data_format="kto"))
    assert kto.objective == "kto" and kto.headline.endswith("(KTO)") and kto.objectives
    assert any("no pairs needed" in r for r in kto.reasons)
    assert RunConfig.from_dict({"method": kto.method, **kto.settings}).objective == "kto"
    style = A.recommend(answers(problem="style", data_format="messages"))
    assert style.objective == "sft" and style.settings["objective"] == "sft" and style.objectives
    assert style.headline == "Fine-tune with LoRA"
    assert any("DPO learns from that" in w for w in style.would_change)
    plain = A.recommend(answers(problem="format", data_format="messages"))
    assert plain.objective == "sft" and plain.objectives == []  # the choice does not matter here: not explained


def test_data_that_do_not_fit_the_objective_are_said():
    cases = {("sft", "preference"): "choose DPO", ("sft", "kto"): "choose KTO", ("dpo", "kto"): "choose KTO",
             ("dpo", "messages"): "open such a file on Data", ("kto", "alpaca"): "open such a file on Data"}
    for (objective, fmt), words in cases.items():
        rec = A.recommend(answers(problem="style", feedback=objective, data_format=fmt, data_name="x.jsonl"))
        assert any(w.startswith("x.jsonl holds") and words in w for w in rec.warnings), (objective, fmt)
    fits = A.recommend(answers(feedback="dpo", data_format="preference", data_name="x.jsonl"))
    assert not any("x.jsonl holds" in w for w in fits.warnings)
    with pytest.raises(ValueError, match="feedback must be one of"):
        A.recommend(answers(feedback="ppo"))
