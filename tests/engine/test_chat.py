"""The chat process with the tiny model and a real LoRA adapter (tests/chat_runs.py), through the
real pipe protocol; plus one end-to-end test on the demo model (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chat_runs import CONTEXT, checkpoint_steps, make_run, shared_trained_run
from engine.chat_client import ChatClient
from engine.chat_targets import chat_targets, default_target, training_system_prompt

TICKET = [{"role": "user", "content": "My order A123 never arrived and I want a refund."}]


@pytest.fixture(scope="session")
def tiny_trained(tiny_model, tmp_path_factory):
    """A real worker run (engine.launch.start_run) of the tiny model, once per session."""
    return shared_trained_run(tiny_model, tmp_path_factory)


@pytest.fixture
def tiny_run(tiny_trained):
    return make_run(tiny_trained)


@pytest.fixture
def client():
    c = ChatClient()
    yield c
    c.close()


def _load(client, **kw) -> dict:
    events = list(client.load(timeout=120, **kw))
    assert events[-1]["type"] == "loaded", events[-1]
    return events[-1]


def _generate(client, messages, **kw) -> list[dict]:
    events = list(client.generate(messages, timeout=120, **kw))
    assert events[-1]["type"] == "done", events[-1]
    return events


# --- the process -----------------------------------------------------------------------------------


def test_streams_tokens_in_order_then_done(client, tiny_run):
    loaded = _load(client, run=tiny_run.id)
    assert loaded["run"] == tiny_run.id and loaded["checkpoint"] == "adapter" and loaded["adapter"] == "adapter"
    assert loaded["sides"] == ["base", "tuned"]
    events = _generate(client, TICKET, mode="tuned", max_new_tokens=12, min_new_tokens=12)
    *tokens, end, done = events
    assert tokens and all(e["type"] == "token" and e["side"] == "tuned" for e in tokens)
    assert end["type"] == "end" and end["side"] == "tuned"
    answer = done["sides"]["tuned"]
    assert "".join(e["text"] for e in tokens) == answer["text"] == end["text"]
    assert answer["tokens"] == 12 and answer["stop"] == "length"
    assert done["tokens"] == 12 and done["tokens_per_second"] > 0 and done["seconds"] > 0
    # The trained adapter has learned to open the JSON answer.
    assert answer["text"].startswith("{")


def test_cancel_stops_a_generation_midstream_and_the_process_stays_usable(client, tiny_run):
    _load(client, run=tiny_run.id)
    seen = 0
    done = None
    for event in client.generate(TICKET, mode="tuned", max_new_tokens=1500, min_new_tokens=1500, timeout=120):
        if event["type"] == "token":
            seen += 1
            if seen == 3:
                client.cancel()
        else:
            done = event
    assert done["type"] == "done", done
    assert done["stopped"] == "cancelled" and done["sides"]["tuned"]["stop"] == "cancelled"
    assert 3 <= done["tokens"] < 1500
    again = _generate(client, TICKET, mode="base", max_new_tokens=5, min_new_tokens=5)
    assert again[-1]["sides"]["base"]["tokens"] == 5 and again[-1]["stopped"] == "length"


def test_compare_streams_both_sides_interleaved_with_the_same_answers_as_alone(client, tiny_run):
    _load(client, run=tiny_run.id)
    events = _generate(client, TICKET, mode="compare", max_new_tokens=10, min_new_tokens=10)
    *streamed, done = events
    tokens = [e for e in streamed if e["type"] == "token"]
    assert [e["side"] for e in streamed if e["type"] == "end"] == ["base", "tuned"]
    sides = [e["side"] for e in tokens]
    assert set(sides) == {"base", "tuned"}
    # Both panes grow together: the first few tokens alternate rather than one side finishing first.
    assert sides.index("tuned") < 4 and sides.index("base") < 4
    alone = {
        side: _generate(client, TICKET, mode=side, max_new_tokens=10, min_new_tokens=10)[-1]["sides"][side]["text"]
        for side in ("base", "tuned")
    }
    assert {s: done["sides"][s]["text"] for s in ("base", "tuned")} == alone
    assert alone["base"] != alone["tuned"]


def test_load_errors_come_back_as_one_sentence_and_the_process_stays_usable(client, tiny_run, tiny_model, tmp_path,
                                                                            tiny_trained):
    from engine.runs import create_run

    bad = list(client.load(run="no-such-run", timeout=120))
    assert bad[-1]["type"] == "error" and "No run 'no-such-run'" in bad[-1]["message"]
    early = list(client.generate(TICKET, mode="base", timeout=60))
    assert early[-1]["type"] == "error" and "No model is loaded" in early[-1]["message"]
    missing = create_run(f"model: {tmp_path / 'gone'}\nmethod: lora\n")
    (missing.dir / "adapter").mkdir()
    (missing.dir / "adapter" / "adapter_config.json").write_text("{}")
    gone = list(client.load(run=missing.id, timeout=120))
    assert gone[-1]["type"] == "error" and "not found" in gone[-1]["message"] and "\n" not in gone[-1]["message"]
    nothing = create_run(f"model: {tiny_model}\nmethod: lora\n")
    empty = list(client.load(run=nothing.id, timeout=120))
    assert empty[-1]["type"] == "error" and "has no adapter or checkpoint yet" in empty[-1]["message"]
    wrong_cp = list(client.load(run=tiny_run.id, checkpoint=7, timeout=120))
    assert wrong_cp[-1]["message"] == (
        f"Run {tiny_run.id} has no checkpoint-7; it has checkpoints {', '.join(map(str, checkpoint_steps(tiny_trained)))}."
    )
    assert _load(client, run=tiny_run.id)["checkpoint"] == "adapter"
    assert _generate(client, TICKET, mode="tuned", max_new_tokens=3)[-1]["type"] == "done"
    assert client.alive


def test_an_adapter_that_does_not_fit_the_base_is_refused_and_the_base_stays_usable(client, tiny_trained):
    run = make_run(tiny_trained)
    config = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    config["target_modules"] = ["no_such_layer"]
    (run.adapter_dir / "adapter_config.json").write_text(json.dumps(config))
    refused = list(client.load(run=run.id, timeout=120))[-1]
    assert refused["type"] == "error"
    assert refused["message"].startswith(f"Could not attach the adapter in {run.adapter_dir}")
    assert refused["message"].endswith("was it trained on this base model?")
    rendered = client.request("render", messages=TICKET, timeout=60)["text"]
    assert "#trained" not in rendered  # the base model's own template again, not the refused run's
    assert _generate(client, TICKET, mode="base", max_new_tokens=3)[-1]["type"] == "done"
    refused_tuned = list(client.generate(TICKET, mode="tuned", timeout=60))[-1]
    assert refused_tuned["type"] == "error" and "No fine-tuned adapter is loaded" in refused_tuned["message"]


def test_a_killed_process_ends_pending_requests_and_restarts(client, tiny_run):
    _load(client, run=tiny_run.id)
    first_pid = client.pid
    events = []
    for event in client.generate(TICKET, mode="tuned", max_new_tokens=1500, min_new_tokens=1500, timeout=120):
        events.append(event)
        if len(events) == 2:
            client.proc.kill()
    assert events[-1]["type"] == "error" and events[-1].get("crashed")
    assert "killed by signal 9" in events[-1]["message"]
    client.restart()
    assert client.pid != first_pid
    assert _load(client, **client.last_load)["run"] == tiny_run.id
    assert _generate(client, TICKET, mode="tuned", max_new_tokens=3)[-1]["type"] == "done"


def test_render_uses_the_template_the_run_trained_with(client, tiny_run):
    """The prompt tokens chat feeds the model are exactly the prompt tokens training saw."""
    from transformers import AutoTokenizer

    from engine.data.encode import encode

    loaded = _load(client, run=tiny_run.id)
    assert loaded["template"] == "run"
    rendered = client.request("render", messages=TICKET, timeout=60)["text"]
    assert "<|im_start|>user #trained\n" in rendered and rendered.endswith("<|im_start|>assistant #trained\n")

    run_tok = AutoTokenizer.from_pretrained(tiny_run.adapter_dir)
    trained = encode(run_tok, {"messages": TICKET + [{"role": "assistant", "content": "{}"}]})
    prompt_len = trained.trained.index(True)
    assert run_tok(rendered, add_special_tokens=False)["input_ids"] == trained.input_ids[:prompt_len]
    base_tok = AutoTokenizer.from_pretrained(tiny_run.config()["model"])  # its template changed since
    assert "#trained" not in base_tok.apply_chat_template(TICKET, tokenize=False, add_generation_prompt=True)


def test_without_saved_tokenizer_the_base_template_is_used(client, tiny_run):
    for f in tiny_run.adapter_dir.iterdir():
        if f.name.startswith(("tokenizer", "chat_template", "special_tokens")):
            f.unlink()
    loaded = _load(client, run=tiny_run.id)
    assert loaded["template"] == "model"
    rendered = client.request("render", messages=TICKET, timeout=60)["text"]
    assert "#trained" not in rendered and rendered.endswith("<|im_start|>assistant\n")


def test_checkpoint_and_defaults(client, tiny_trained):
    first, *_, last = checkpoint_steps(tiny_trained)
    running = make_run(tiny_trained, state="running", final=False)
    loaded = _load(client, run=running.id)  # no final adapter yet: the newest checkpoint
    assert loaded["checkpoint"] == f"checkpoint-{last}" and loaded["template"] == "run"
    done = make_run(tiny_trained)
    assert _load(client, run=done.id, checkpoint=first)["checkpoint"] == f"checkpoint-{first}"


# --- in-process engine: adapter on/off -----------------------------------------------------------


def test_adapter_on_and_off_give_different_logits_and_off_is_the_base(tiny_run, tiny_trained):
    import torch
    from transformers import AutoModelForCausalLM

    from engine.chat import ChatEngine

    engine = ChatEngine()
    engine.load(run=tiny_run.id, warmup=False)
    base_object = engine.base
    tuned = engine.next_token_logits(TICKET, adapter=True)
    off = engine.next_token_logits(TICKET, adapter=False)
    assert (tuned - off).abs().max() > 1e-2

    plain = AutoModelForCausalLM.from_pretrained(tiny_run.config()["model"], dtype=torch.float32).eval()
    ids = torch.tensor([engine.encode(TICKET)])
    with torch.inference_mode():
        reference = plain(input_ids=ids).logits[0, -1]
    torch.testing.assert_close(off, reference, atol=1e-5, rtol=1e-5)

    # Another checkpoint: the adapter is swapped, the base model is not reloaded.
    first = checkpoint_steps(tiny_trained)[0]
    engine.load(run=tiny_run.id, checkpoint=first, warmup=False)
    assert engine.base is base_object and engine.label == f"checkpoint-{first}"
    early = engine.next_token_logits(TICKET, adapter=True)
    assert (early - tuned).abs().max() > 1e-3
    torch.testing.assert_close(engine.next_token_logits(TICKET, adapter=False), off)


def test_out_of_memory_is_one_sentence():
    import torch

    from engine.chat import describe_error

    message = describe_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert message.startswith("Out of memory while chatting;") and "\n" not in message


# --- what can be chatted with (no ML) ------------------------------------------------------------


def test_chat_targets_and_the_default_run(tiny_trained, tiny_model):
    from engine.runs import create_run

    assert chat_targets() == [] and default_target() is None
    completed = make_run(tiny_trained)
    running = make_run(tiny_trained, state="stopped", final=False)
    create_run(f"model: {tiny_model}\n")  # nothing to chat with yet
    targets = chat_targets()
    assert [t.run_id for t in targets] == [running.id, completed.id]
    assert targets[0].final is None and targets[0].checkpoints == checkpoint_steps(tiny_trained)
    assert default_target(targets).run_id == completed.id
    assert training_system_prompt(completed.id).startswith("You triage customer support tickets.")


# --- the CLI ---------------------------------------------------------------------------------------


def _tunedeck(*args, stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                          input=stdin, timeout=300)


def test_cli_one_shot_compare_json(tiny_run):
    out = _tunedeck("chat", tiny_run.id, "--prompt", "My order A123 never arrived", "--compare", "--json",
                    "--max-new-tokens", "8")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert set(answer) >= {"base", "tuned"} and answer["run"] == tiny_run.id
    assert answer["tuned"].startswith("{") and answer["base"] != answer["tuned"]


def test_cli_interactive_keeps_the_conversation(tiny_run):
    out = _tunedeck("chat", tiny_run.id, "--max-new-tokens", "6",
                    stdin="My order A123 never arrived\n/compare\nAnd now?\n/quit\n")
    assert out.returncode == 0, out.stderr
    assert "── fine-tuned ──" in out.stdout and "── base ──" in out.stdout
    assert out.stderr.count("tokens,") == 2 and "Chatting with" in out.stderr


def test_cli_unknown_run_is_one_line_on_stderr():
    out = _tunedeck("chat", "nope", "--prompt", "hi")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"tunedeck: No run 'nope' in {_runs_dir()}; `tunedeck runs` lists them."]


def _runs_dir():
    from engine.paths import runs_dir

    return runs_dir()


def test_a_conversation_longer_than_the_context_drops_its_oldest_exchanges(client, tiny_run):
    """Old exchanges are left out rather than failing when a conversation outgrows the context."""
    _load(client, run=tiny_run.id)
    long_answer = "The order A123 is late and the customer wants a refund now. " * 12
    history = []
    for i in range(CONTEXT // 150):
        history += [{"role": "user", "content": f"Question {i}: where is order A12{i}?"},
                    {"role": "assistant", "content": long_answer}]
    history.append({"role": "user", "content": "And now?"})
    done = _generate(client, history, mode="tuned", max_new_tokens=64, min_new_tokens=64)[-1]
    assert done["sides"]["tuned"]["dropped_turns"] >= 1 and done["sides"]["tuned"]["tokens"] == 64
    too_long = list(client.generate([{"role": "user", "content": long_answer * (CONTEXT // 100)}], mode="tuned",
                                    timeout=60))
    assert too_long[-1]["type"] == "error"
    assert f"too long for the model's context of {CONTEXT} tokens" in too_long[-1]["message"]


# The demo model's answers after a short LoRA run (trained format, base vs fine-tuned) are measured by
# bench/bench_demo_quality.py: minutes of CPU, a figure rather than a test.
