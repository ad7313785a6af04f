"""GRPO (objective: grpo): reward functions, custom reward files and their errors, real GRPO training on
the tiny model through the detached worker (the reward rises; stop/resume; a failing reward fails the
run with one sentence), "try the rewards" and the GRPO evaluation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.rewards import (
    BUILTIN,
    RewardError,
    build,
    json_keys,
    json_valid,
    length_penalty,
    load_reward_file,
    matches_reference,
    parse_rewards,
    regex,
    rewards_text,
)
from engine.runs import FINAL

E_REWARD = '''
def e_share(completions, **kwargs):
    """The share of the answer's characters that are the letter e: prefers the tokens with e in them."""
    return [c.count("e") / max(1, len(c)) for c in completions]
'''


def _one_sentence(text: str) -> None:
    assert "\n" not in text and "Traceback" not in text and text.endswith("."), text


# --- built-in rewards ----------------------------------------------------------------------------
def test_builtin_rewards_score_as_documented():
    good = '{"category": "refund", "priority": "high"}'
    answers = [good, "  " + good + "\n", "Sure! " + good, "[1, 2]", "not json"]
    assert json_valid(answers) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert json_keys(answers, keys=["category", "priority", "product", "order_id"]) == [0.5, 0.5, 0.5, 0.0, 0.0]
    # TRL hands chat completions as lists of messages: the built-ins read those too
    assert json_valid([[{"role": "assistant", "content": good}]]) == [1.0]
    assert matches_reference(['{"priority": "HIGH", "category": "refund"}', "Paris ", "paris", "x"],
                             reference=[good, "Paris", "Paris", None]) == [1.0, 1.0, 1.0, None]
    assert matches_reference(["paris"], reference=["Paris"], normalise=False) == [0.0]
    assert regex(["order A123", "no order"], pattern=r"[A-Z]\d{3}") == [1.0, 0.0]
    assert length_penalty(["x" * 10, "x" * 15, "x" * 40], target=10) == [0.0, -0.5, -1.0]
    assert all(b.help and "\n" not in b.help for b in BUILTIN.values())


def test_rewards_config_forms_and_their_errors():
    specs = parse_rewards("json_valid, json_keys:category|priority@2, regex:a{1,3}, length_penalty:50")
    assert specs == [{"name": "json_valid", "weight": 1.0},
                     {"name": "json_keys", "weight": 2.0, "keys": ["category", "priority"]},
                     {"name": "regex", "weight": 1.0, "pattern": "a{1,3}"},
                     {"name": "length_penalty", "weight": 1.0, "target": 50}]
    assert parse_rewards(rewards_text(specs)) == specs  # the string form round-trips
    assert parse_rewards(["json_valid", {"name": "json_keys", "keys": ["a"], "weight": 0.5}])[1]["weight"] == 0.5
    cfg = RunConfig.from_dict({"objective": "grpo", "rewards": "json_valid"})
    assert (cfg.beta, cfg.keep, cfg.max_completion_length, cfg.num_generations) == (0.0, "last", 64, 4)
    assert cfg.temperature == 1.0 and RunConfig.from_dict({}).temperature is None  # TRL's default; SFT samples nothing
    assert RunConfig.from_yaml(cfg.to_yaml()).rewards == cfg.rewards
    for bad, words in [({"objective": "grpo"}, "rewards is empty"),
                       ({"objective": "grpo", "rewards": "json_keys"}, "needs its keys"),
                       ({"objective": "grpo", "rewards": "regex:("}, "not a valid regular expression"),
                       ({"objective": "grpo", "rewards": "my_check"}, "set reward_file"),
                       ({"objective": "grpo", "rewards": "json_valid@-1"}, "positive"),
                       ({"objective": "grpo", "rewards": "json_valid", "batch_size": 6}, "multiple of num_generations"),
                       ({"objective": "sft", "rewards": "json_valid"}, "objective: grpo"),
                       ({"objective": "sft", "temperature": 0.7}, "objective: grpo"),
                       ({"objective": "grpo", "rewards": "json_valid", "temperature": 0}, "positive number"),
                       ({"objective": "dpo", "beta": 0}, "above 0")]:
        with pytest.raises(ConfigError) as exc:
            RunConfig.from_dict(bad)
        assert words in str(exc.value)
        _one_sentence(str(exc.value))


def test_custom_reward_file_is_loaded_only_when_named_and_each_mistake_is_one_sentence(tmp_path):
    ok = tmp_path / "ok.py"
    ok.write_text(E_REWARD + "\ndef scaled(completions, factor=2.0, **kwargs):\n"
                  "    return [factor * len(c) for c in completions]\nscaled.max_reward = 100\n")
    rewards = build(parse_rewards([{"name": "e_share"}, {"name": "scaled", "factor": 3}]), ok)
    assert [r.__name__ for r in rewards] == ["e_share", "scaled"] and rewards[1].high == 100
    assert rewards[0](prompts=[[{"role": "user", "content": "q"}]], completions=[[{"role": "assistant",
                                                                                   "content": "ee"}]]) == [1.0]
    assert rewards[1](completions=["ab"], trainer_state=None, log_extra=None, log_metric=None) == [6.0]
    # a file whose code must never run unless named: built-ins alone do not touch it
    trap = tmp_path / "trap.py"
    trap.write_text("raise SystemExit('ran')\n")
    assert [r.__name__ for r in build(parse_rewards("json_valid"), trap)] == ["json_valid"]

    cases = {
        "missing": (tmp_path / "nope.py", "does not exist"),
        "syntax": ("def broken(:\n", ":1: reward_file is not valid Python"),
        "raises on import": ("import math\nx = 1 / 0\n", "ZeroDivisionError"),
        "no such function": (E_REWARD, "has no function named wanted (it has e_share)"),
        "no **kwargs": ("def wanted(completions):\n    return [0.0] * len(completions)\n", "no **kwargs"),
        "no completions": ("def wanted(answers, **kwargs):\n    return []\n", "no parameter named completions"),
    }
    for name, (content, words) in cases.items():
        path = content if isinstance(content, Path) else tmp_path / f"{name.replace(' ', '_')}.py"
        if not isinstance(content, Path):
            path.write_text(content)
        with pytest.raises(ConfigError) as exc:
            load_reward_file(path, ["wanted"])
        assert words in str(exc.value), (name, str(exc.value))
        _one_sentence(str(exc.value))


def test_a_reward_that_raises_or_returns_garbage_is_one_sentence(tmp_path):
    f = tmp_path / "r.py"
    f.write_text("def boom(completions, **kwargs):\n    return [1 / 0 for c in completions]\n\n"
                 "def short(completions, **kwargs):\n    return [1.0]\n")
    boom, short = build(parse_rewards("boom, short"), f)
    with pytest.raises(RewardError) as exc:
        boom(completions=["a", "b"])
    assert "The reward boom" in str(exc.value) and "ZeroDivisionError" in str(exc.value)
    assert "line 2" in str(exc.value)
    _one_sentence(str(exc.value))
    with pytest.raises(RewardError) as exc:
        short(completions=["a", "b"])
    assert "returned 1 values for 2 answers" in str(exc.value)


# --- training through the worker -----------------------------------------------------------------
def _grpo_config(tiny_model, tmp_path, **extra) -> RunConfig:
    reward = tmp_path / "rewards.py"
    if not reward.exists():
        reward.write_text(E_REWARD)
    settings = dict(model=str(tiny_model), data="demo", objective="grpo", method="full", rewards=["e_share"],
                    reward_file=str(reward), max_steps=20, learning_rate=1e-2, batch_size=16, num_generations=8,
                    max_completion_length=16, max_length=192, save_steps=100, eval_steps=0, logging_steps=1)
    settings.update(extra)
    return RunConfig.from_dict(settings)


def _wait(run, timeout: float = 180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = run.info()
        if info.state in FINAL:
            return info
        time.sleep(0.3)
    raise AssertionError(f"run {run.id} did not end in {timeout} s:\n" + "\n".join(run.log_tail(30)))


@pytest.fixture(scope="module")
def grpo_run(tiny_model, tmp_path_factory):
    """One real GRPO run of the tiny model (full fine-tuning, 20 steps), shared by the tests below."""
    import os

    from engine.launch import start_run

    home = tmp_path_factory.mktemp("grpo-home")
    old = os.environ.get("TUNEDECK_HOME")
    os.environ["TUNEDECK_HOME"] = str(home)
    try:
        run = start_run(_grpo_config(tiny_model, tmp_path_factory.mktemp("grpo-reward"), eval_steps=10))
        info = _wait(run)
        assert info.state == "completed", f"{info.message}\n" + "\n".join(run.log_tail(30))
    finally:
        if old is None:
            os.environ.pop("TUNEDECK_HOME", None)
        else:
            os.environ["TUNEDECK_HOME"] = old
    return run


def test_grpo_steps_raise_the_reward_and_write_the_monitor_events(grpo_run):
    from engine.run_state import RunHistory

    events = grpo_run.events()
    logs = [e for e in events if e["type"] == "log"]
    assert [e["step"] for e in logs] == list(range(1, 21))
    for key in ("loss", "reward", "reward_std", "rewards/e_share/mean", "completions/mean_length", "full_marks"):
        assert all(key in e for e in logs), key
    first = sum(e["reward"] for e in logs[:5]) / 5
    last = sum(e["reward"] for e in logs[-5:]) / 5
    assert last > first + 0.05, (first, last)
    start = next(e for e in events if e["type"] == "start")
    assert "GRPO" in start["message"] and start["rewards"] == ["e_share"]
    samples = [e for e in events if e["type"] == "samples"]
    assert len(samples) == 20 and samples[-1]["step"] == 20
    item = samples[-1]["items"][0]
    assert set(item) == {"prompt", "completion", "scores", "reward"} and set(item["scores"]) == {"e_share"}
    assert 1 <= len(samples[-1]["items"]) <= 4
    history = RunHistory().extend(events)
    assert history.samples[0]["step"] == 20 and history.points("reward")
    status = grpo_run.read_status()
    assert "reward" in status and "full_marks" in status


def test_grpo_evaluates_by_reward_on_a_few_held_out_prompts(grpo_run):
    """GRPO's loss is ~0 by construction: its eval events carry the reward, no eval loss, and no "best eval
    loss" is recorded (it showed 0.0 at the first evaluation); the held-out prompts sampled are capped."""
    events = grpo_run.events()
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [10, 20]
    assert all("eval_reward" in e and "eval_rewards/e_share/mean" in e and "eval_loss" not in e for e in evals)
    assert grpo_run.read_status().get("best_eval_loss") is None
    start = next(e for e in events if e["type"] == "start")
    assert "evaluation during training samples 16 of the" in start["message"]


def test_eval_of_a_grpo_run_reports_the_held_out_reward_base_vs_tuned(grpo_run, monkeypatch):
    from engine.eval_scores import format_table
    from engine.evaluate import evaluate_run

    monkeypatch.setenv("TUNEDECK_HOME", str(grpo_run.dir.parent.parent))
    result = evaluate_run(grpo_run.id, limit=6, probe=False, samples=2, max_new_tokens=12)
    assert result["kind"] == "rewards" and result["rewards"] == ["e_share"]
    rows = {r["condition"]: r for r in result["rows"]}
    assert set(rows) == {"base", "fine-tuned"} and rows["base"]["n"] == 6
    assert rows["fine-tuned"]["reward"] is not None and 0 <= rows["fine-tuned"]["full_marks"] <= 1
    table = format_table(result)
    assert "total reward" in table and "full marks" in table and "fine-tuned" in table
    assert json.loads((grpo_run.dir / "eval.json").read_text())["kind"] == "rewards"


def test_a_reward_that_raises_during_training_fails_the_run_with_one_sentence(tiny_model, tmp_path):
    from engine.launch import start_run

    bad = tmp_path / "bad.py"
    bad.write_text("def e_share(completions, **kwargs):\n    raise ValueError('no score for ' + completions[0][:0] + 'this')\n")
    run = start_run(_grpo_config(tiny_model, tmp_path, reward_file=str(bad), max_steps=2))
    info = _wait(run)
    assert info.state == "failed"
    assert info.message.startswith("The reward e_share") and "ValueError: no score for this" in info.message
    _one_sentence(info.message)
    assert "Traceback" in (run.dir / "worker.log").read_text()


def test_a_reward_file_mistake_stops_train_before_a_run_starts(tiny_model, tmp_path):
    from engine.launch import start_run

    f = tmp_path / "rewards.py"
    f.write_text("def e_share(completions):\n    return []\n")
    with pytest.raises(ConfigError) as exc:
        start_run(_grpo_config(tiny_model, tmp_path))
    assert "no **kwargs" in str(exc.value)
    _one_sentence(str(exc.value))


def test_a_grpo_run_stops_and_resumes_from_its_checkpoint(tiny_model, tmp_path):
    from engine.launch import resume_run, start_run, stop_run

    run = start_run(_grpo_config(tiny_model, tmp_path, max_steps=8, save_steps=2, learning_rate=1e-3, batch_size=8,
                                 num_generations=4, max_completion_length=8, temperature=0.7))
    deadline = time.time() + 120
    while time.time() < deadline and not any(e.get("type") == "log" and e["step"] >= 2 for e in run.events()):
        time.sleep(0.2)
    stop_run(run.id, grace=120)
    info = _wait(run)
    assert info.state == "stopped", info.message
    stopped_at = info.step
    assert stopped_at < 8 and run.latest_checkpoint() is not None
    import torch  # the temperature reached TRL: the trainer's own arguments, saved with the checkpoint

    assert torch.load(run.latest_checkpoint() / "training_args.bin", weights_only=False).temperature == 0.7
    resume_run(run.id)
    info = _wait(run)
    assert info.state == "completed", info.message
    starts = [e for e in run.events() if e["type"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_from"].startswith("checkpoint-")
    assert starts[1]["temperature"] == 0.7
    assert starts[1]["step"] <= stopped_at and (run.adapter_dir.exists() or run.model_dir.exists())


def test_try_rewards_returns_the_contract_shape(tiny_model, tmp_path):
    from engine.commands.rewards import try_rewards

    f = tmp_path / "r.py"
    f.write_text(E_REWARD)
    seen = []
    result = try_rewards({"model": str(tiny_model), "data": "demo", "rewards": "json_valid, e_share@2",
                          "reward_file": str(f), "prompts": 3, "generations": 3, "max_completion_length": 8},
                         seen.append)
    assert result["rewards"] == ["json_valid", "e_share"] and result["weights"] == {"json_valid": 1.0, "e_share": 2.0}
    assert len(result["rows"]) == 3 and all(len(r["samples"]) == 3 for r in result["rows"])
    # progress per generation batch (8 answers at most: two prompts of 3, then one), not 0% until the end
    sampling = [e["fraction"] for e in seen if e["phase"] == "generate"]
    assert sampling == [0.0, 0.6, 0.9]
    sample = result["rows"][0]["samples"][0]
    assert set(sample) == {"completion", "scores", "reward"}
    assert sample["reward"] == pytest.approx(sample["scores"]["json_valid"] + 2 * sample["scores"]["e_share"])
    assert result["rows"][0]["reference"] and result["rows"][0]["prompt"]
    s = result["summary"]
    assert set(s) == {"mean", "full_marks", "spread"} and set(s["mean"]) == {"json_valid", "e_share", "total"}
    assert s["spread"] > 0 and isinstance(result["verdict"], str) and result["verdict"].endswith(".")
    assert seen and all("phase" in e for e in seen)


def test_try_rewards_samples_at_the_temperature_asked(tiny_model, tmp_path):
    """Near 0 the answers to a prompt are the likeliest one, so they are all alike; at 1 they differ."""
    from engine.commands.rewards import try_rewards

    f = tmp_path / "r.py"
    f.write_text(E_REWARD)
    params = {"model": str(tiny_model), "data": "demo", "rewards": "e_share", "reward_file": str(f), "prompts": 2,
              "generations": 4, "max_completion_length": 12}
    cold = try_rewards({**params, "temperature": 1e-4})
    assert all(len({s["completion"] for s in row["samples"]}) == 1 for row in cold["rows"])
    warm = try_rewards(params)
    assert any(len({s["completion"] for s in row["samples"]}) > 1 for row in warm["rows"])
    with pytest.raises(ConfigError) as exc:
        try_rewards({**params, "temperature": -1})
    assert "temperature must be a positive number" in str(exc.value)
