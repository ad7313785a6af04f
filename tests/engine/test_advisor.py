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
