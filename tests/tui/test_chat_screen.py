"""The Chat screen driven by Pilot, with a real chat process (engine/chat.py) and a real adapter from
a worker run of the tiny model (tests/chat_runs.py)."""

from __future__ import annotations

import asyncio

import pytest

from chat_runs import make_run, shared_trained_run
from tui.app import TunedeckApp
from tui.screens.chat import ChatScreen
from tui.widgets.chat_pane import Answer, ChatPane, CopyLink
from waiting import until as _until

PROMPT = "My order A123 never arrived"


@pytest.fixture(scope="module")
def tiny_trained(tiny_model, tmp_path_factory):
    return shared_trained_run(tiny_model, tmp_path_factory)


async def _open_chat(pilot) -> ChatScreen:
    await pilot.press("4")
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    return screen


async def _ask(pilot, screen: ChatScreen, text: str):
    before = sum(len(_answers(p)) for p in screen.panes.values())
    screen.query_one("#chat-input").focus()
    await pilot.press(*text, "enter")
    await _until(pilot, lambda: sum(len(_answers(p)) for p in screen.panes.values()) > before, 10,
                 "the answer to start")
    await _until(pilot, lambda: not screen.generating and all(a.finished for p in screen.panes.values()
                                                              for a in _answers(p)), what="the answer to end")
    await pilot.pause(0.2)


def _answers(pane: ChatPane) -> list[Answer]:
    return list(pane.query(Answer))


def _status(screen) -> str:
    return str(screen.query_one("#chat-status").render())


async def test_chat_with_the_latest_run_compare_copy_and_clear(tiny_trained):
    older = make_run(tiny_trained)
    run = make_run(tiny_trained)
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_chat(pilot)
        await _until(pilot, lambda: screen.loaded is not None, what="the run to load")
        assert screen.loaded["run"] == run.id != older.id  # the latest completed run by default
        assert str(screen.query_one("#chat-run").value) == run.id
        status = _status(screen)
        assert "+ adapter" in status and "run's template" in status and "training system prompt" in status
        tuned, base = screen.panes["tuned"], screen.panes["base"]
        assert tuned.display and not base.display

        await _ask(pilot, screen, PROMPT)
        (answer,) = _answers(tuned)
        assert answer.text.startswith("{")  # the adapter learned the JSON format
        figures = str(answer.query_one(".answer-figures").render())
        assert "tok/s" in figures
        assert answer.markdown.source == answer.text
        assert "tok/s" in _status(screen)

        await pilot.press("ctrl+t")  # compare: both panes, same prompt, each its own history
        assert screen.mode == "compare" and tuned.display and base.display
        await _ask(pilot, screen, "Where is my refund?")
        assert len(_answers(tuned)) == 2 and len(_answers(base)) == 1
        assert [m["role"] for m in tuned.history] == ["user", "assistant"] * 2
        assert [m["role"] for m in base.history] == ["user", "assistant"]
        assert _answers(base)[0].text and _answers(tuned)[1].text

        await pilot.press("ctrl+l")  # a fresh start in both panes
        await pilot.pause()
        assert _answers(tuned) == [] and _answers(base) == [] and tuned.history == [] == base.history
        await _ask(pilot, screen, PROMPT)
        # two models side by side: the adapter answers the ticket in its JSON, the base model does not
        assert _answers(tuned)[0].text.startswith("{") and not _answers(base)[0].text.startswith("{")

        await pilot.press("ctrl+y")
        assert app.clipboard == _answers(tuned)[0].text
        link = _answers(base)[0].query_one(CopyLink)
        assert not link.has_class("-hidden")
        link.on_click()
        await pilot.pause()
        assert app.clipboard == _answers(base)[0].text

        await pilot.press("ctrl+l")
        await pilot.pause()
        assert _answers(tuned) == [] and _answers(base) == [] and tuned.history == [] == base.history


async def test_escape_stops_an_answer_and_ctrl_r_restarts_a_killed_process(tiny_trained):
    make_run(tiny_trained)
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_chat(pilot)
        await _until(pilot, lambda: screen.loaded is not None, what="the run to load")
        screen.settings.update(max_new_tokens=1500, min_new_tokens=1500)
        screen.query_one("#chat-input").focus()
        await pilot.press(*PROMPT, "enter")
        await _until(pilot, lambda: _answers(screen.panes["tuned"]) and _answers(screen.panes["tuned"])[0].text,
                     what="the first tokens")
        await pilot.press("escape")
        await _until(pilot, lambda: not screen.generating, 60, "the stop")
        await pilot.pause(0.2)
        (answer,) = _answers(screen.panes["tuned"])
        assert "stopped" in str(answer.query_one(".answer-figures").render())

        first_pid = screen.client.pid
        screen.client.kill()
        await _until(pilot, lambda: "The chat process was killed" in _status(screen) or screen.loaded is None,
                     30, "the crash to show")
        await pilot.press("ctrl+r")
        await _until(pilot, lambda: screen.loaded is not None, what="the restart")
        assert screen.client.pid != first_pid
        screen.settings.update(max_new_tokens=4, min_new_tokens=0)
        await _ask(pilot, screen, "again")
        assert len(_answers(screen.panes["tuned"])) == 2


async def test_without_runs_the_screen_says_so_and_offers_the_base_model(tiny_model):
    app = TunedeckApp(model=str(tiny_model))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_chat(pilot)
        await _until(pilot, lambda: not screen.query_one("#chat-empty").has_class("-hidden"), 30, "the offer")
        text = str(screen.query_one("#chat-empty-text").render())
        assert "no fine-tuned run yet" in text and "base model" in text
        assert screen.client.proc is None  # nothing is loaded until asked
        await pilot.click("#chat-base-button")
        await _until(pilot, lambda: screen.loaded is not None, what="the base model to load")
        assert screen.loaded["run"] is None and screen.mode == "base"
        assert screen.query_one("#chat-mode").disabled
        assert screen.panes["base"].display and not screen.panes["tuned"].display
        screen.settings.update(max_new_tokens=6)
        await _ask(pilot, screen, "Hello")
        (answer,) = _answers(screen.panes["base"])
        assert answer.finished and "tok/s" in str(answer.query_one(".answer-figures").render())


def test_snapshot_no_runs_80x24(snap_compare, tiny_model):
    async def settle(pilot):
        await pilot.press("4")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await asyncio.sleep(0.1)

    assert snap_compare(TunedeckApp(model=str(tiny_model)), terminal_size=(80, 24), run_before=settle)


async def test_a_run_picked_in_runs_replaces_the_one_already_open_in_chat(tiny_trained):
    from tui.widgets.runs_table import RunsTable

    older = make_run(tiny_trained)
    latest = make_run(tiny_trained)
    app = TunedeckApp()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open_chat(pilot)
        await _until(pilot, lambda: screen.loaded is not None, what="the latest run to load")
        assert screen.loaded["run"] == latest.id

        await app.switch_mode("runs")  # (the prompt has the focus: 5 would be typed into it)
        await pilot.pause()
        table = app.screen.query_one(RunsTable)
        await _until(pilot, lambda: older.id in table.order, 20, "the runs table")
        table.move_cursor(row=table.order.index(older.id), animate=False)
        await pilot.pause()
        await pilot.press("c")
        assert app.screen is screen
        await _until(pilot, lambda: screen.loaded is not None and screen.loaded["run"] == older.id, 60,
                     "the picked run to load")
        assert str(screen.query_one("#chat-run").value) == older.id


# --- tool calls in answers (issue 14) --------------------------------------------------------------
# A tuned model that answers with a tool call writes it in its chat template's markup; the chat
# process reads it (transformers' parser, or the markup learned from the template) and the pane shows
# the call. The tiny model cannot be trained to call a tool within a test's time, so the parsing is
# tested on what such a model writes, with real tokenizers and templates, and the pane on the chat
# process's own result.

CALL = {"name": "get_order_status", "arguments": {"order_id": "A1001"}}
QWEN_ANSWER = 'Let me check.\n<tool_call>\n{"name": "get_order_status", "arguments": {"order_id": "A1001"}}\n</tool_call>'
# Llama 3.1 writes a call as bare JSON with "parameters"; Mistral as a [TOOL_CALLS] list with ids.
LLAMA_TEMPLATE = (
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' and m.tool_calls %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- for c in m.tool_calls %}{{- '{\"name\": \"' + c.function.name + '\", \"parameters\": ' + "
    "(c.function.arguments | tojson) + '}' }}{%- endfor %}{{- '<|eot_id|>' }}"
    "{%- else %}{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n' + m.content + '<|eot_id|>' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
MISTRAL_TEMPLATE = (
    "{%- for m in messages %}"
    "{%- if m.role == 'user' %}{{- '[INST] ' + m.content + '[/INST]' }}"
    "{%- elif m.tool_calls %}{{- '[TOOL_CALLS] [' }}{%- for c in m.tool_calls %}"
    "{{- '{\"name\": \"' + c.function.name + '\", \"arguments\": ' + (c.function.arguments | tojson) + "
    "', \"id\": \"' + c.id + '\"}' }}{%- if not loop.last %}{{- ', ' }}{%- endif %}{%- endfor %}{{- ']</s>' }}"
    "{%- else %}{{- m.content + '</s>' }}{%- endif %}{%- endfor %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.mark.parametrize("style, answer", [
    ("qwen", QWEN_ANSWER),
    ("llama", '{"name": "get_order_status", "parameters": {"order_id": "A1001"}}'),
    ("mistral", '[TOOL_CALLS] [{"name": "get_order_status", "arguments": {"order_id": "A1001"}, "id": "a1b2c3d4e"}]'),
])
def test_a_tool_call_is_read_in_the_markup_its_template_writes(tokenizer, style, answer):
    from engine.chat import ToolMarkup, parse_tool_calls, tool_call_markup
    from tiny_model import TOOL_CHAT_TEMPLATE

    tokenizer.chat_template = {"qwen": TOOL_CHAT_TEMPLATE, "llama": LLAMA_TEMPLATE, "mistral": MISTRAL_TEMPLATE}[style]
    markup = tool_call_markup(tokenizer)
    assert markup == {"qwen": ToolMarkup("<tool_call>", "</tool_call>"), "llama": ToolMarkup(""),
                      "mistral": ToolMarkup("[TOOL_CALLS]", "", listed=True)}[style]
    parsed = parse_tool_calls(answer, markup)
    assert parsed == {"content": "Let me check." if style == "qwen" else "", "tool_calls": [CALL]}
    # what is not a call stays text
    assert parse_tool_calls("It arrives Friday.", markup) is None
    assert parse_tool_calls('{"category": "refund", "priority": "high"}', markup) is None  # JSON, but no call
    assert parse_tool_calls(answer.replace('"order_id": "A1001"}', '"order_id": "A10'), markup) is None  # cut off


def test_a_template_without_tools_reads_no_tool_calls(tokenizer):
    from engine.chat import parse_tool_calls, tool_call_markup
    from engine.data.encode import FALLBACK_CHAT_TEMPLATE

    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    assert tool_call_markup(tokenizer) is None
    assert parse_tool_calls(QWEN_ANSWER, None) is None


def test_the_chat_engine_reads_the_tool_calls_of_an_answer(tiny_model, tmp_path):
    from engine.chat import ChatEngine
    from tiny_model import build_tool_model

    engine = ChatEngine(device="cpu")
    engine.load(model=str(build_tool_model(tiny_model, tmp_path / "tiny-tool")), warmup=False)
    prompt = engine.encode([{"role": "user", "content": "Where is A1001?"}])

    def ids(text: str) -> list[int]:
        return engine.tokenizer(text, add_special_tokens=False)["input_ids"]

    assert engine.tool_calls_of(ids(QWEN_ANSWER), prompt) == {"content": "Let me check.", "tool_calls": [CALL]}
    assert engine.tool_calls_of(ids("It arrives Friday."), prompt) is None
    # with a response template (transformers' parse_response), that parser reads it
    engine.tokenizer.response_template = {
        "defaults": {"role": "assistant"}, "start_anchor": "<|im_start|>assistant\n",
        "fields": {
            "tool_calls": {"open_pattern": r"\s*<tool_call>", "close": "</tool_call>", "repeats": True,
                           "content": "json", "transform": {"type": "function", "function": "{content}"}},
            "content": {"close_pattern": r"\s*(?:<\|im_end\|>|<\|endoftext\|>)", "content": "text"},
        },
    }
    assert engine.tool_calls_of(ids(QWEN_ANSWER), prompt) == {"content": "Let me check.", "tool_calls": [CALL]}
    assert engine.tool_calls_of(ids("It arrives Friday."), prompt) is None


async def test_an_answer_that_calls_a_tool_is_shown_as_the_call():
    from textual.app import App

    from engine.chat import SideResult, parse_tool_calls, ToolMarkup
    from tui.widgets.tool_calls import ToolCallsView

    parsed = parse_tool_calls(QWEN_ANSWER, ToolMarkup("<tool_call>", "</tool_call>"))
    result = SideResult(text=QWEN_ANSWER, tokens=31, seconds=2.0, stop="eos", tool_calls=parsed["tool_calls"],
                        content=parsed["content"]).to_dict()

    class PaneApp(App):
        def compose(self):
            yield ChatPane("tuned", "fine-tuned", id="pane-tuned")

    app = PaneApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(ChatPane)
        answer = await pane.ask("Where is A1001?", "fine-tuned")
        for piece in (QWEN_ANSWER[:20], QWEN_ANSWER[20:]):  # streamed as the model writes it
            await pane.append(piece)
        await pane.finish(result)
        await pilot.pause()
        calls = answer.query_one(ToolCallsView)
        assert calls.display and answer.tool_calls == [CALL]
        assert str(calls.render()) == '⚙ tool call get_order_status(order_id="A1001")'
        assert answer.markdown.source == "Let me check."  # the markup is not shown as text
        assert "1 tool call · 31 tok" in str(answer.query_one(".answer-figures").render())
        assert pane.history[-1] == {"role": "assistant", "content": QWEN_ANSWER}  # the model's own words
