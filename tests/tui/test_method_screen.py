"""The Method screen: the wizard, the recommendation, the methods table, and the hand-over to Train.

The model's shapes come from a real `tunedeck estimate` child process; the only fake is NVML (this
machine has no GPU), patched at the pynvml functions.
"""

import asyncio
import shutil
import time

import pytest

from engine import demo, gpu
from engine.config import RunConfig
from tui.app import TunedeckApp
from tui.screens.method import QUESTIONS, TERMS, MethodRow, MethodScreen
from tui.widgets.memory_bar import MemoryBar

GIB = 1024**3


def fake_nvml(monkeypatch, gpus: list[tuple[str, int, int]]):
    """NVML that reports ``gpus`` as (name, total bytes, used bytes)."""
    import pynvml

    class Memory:
        def __init__(self, total, used):
            self.total, self.used = total, used

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: len(gpus))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: i)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: gpus[h][0].encode())
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda h: Memory(gpus[h][1], gpus[h][2]))
    gpu.reset()


@pytest.fixture
def no_gpu(monkeypatch):
    fake_nvml(monkeypatch, [])
    yield
    gpu.reset()


@pytest.fixture
def rtx4090(monkeypatch):
    fake_nvml(monkeypatch, [("NVIDIA GeForce RTX 4090", 24 * GIB, 2 * GIB)])
    yield
    gpu.reset()


async def open_method(pilot) -> MethodScreen:
    await pilot.press("2")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, MethodScreen)
    return screen


async def wait_for_model(screen: MethodScreen, pilot, timeout: float = 300) -> None:
    start = time.monotonic()
    while screen.arch is None and screen.arch_error is None:
        assert time.monotonic() - start < timeout, "the estimate helper did not answer"
        await asyncio.sleep(0.2)
    # and the data's lengths, which size the largest batch (or the word that they could not be measured)
    while screen.sizing is None:
        assert time.monotonic() - start < timeout, "the data helper did not answer"
        await asyncio.sleep(0.2)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    assert screen.arch_error is None, screen.arch_error


def text(screen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def test_one_question_at_a_time_with_back_and_next(no_gpu):
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_method(pilot)
        assert text(screen, "#q-title") == QUESTIONS[0].title
        assert text(screen, "#q-step") == "Question 1 of 6"
        await pilot.press("n")  # nothing chosen yet: stays, and says what to do
        await pilot.pause()
        assert screen.step == 0 and "problem" not in screen.answers
        await pilot.press("down", "enter")  # the second answer: wrong format; Enter moves on
        await pilot.pause()
        assert screen.answers["problem"] == "format" and screen.step == 1
        # the demo holds ideal answers and the problem is the format: SFT, so what the examples are is not asked
        assert text(screen, "#q-title") == next(q for q in QUESTIONS if q.key == "examples").title
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "Your data (demo): 340 examples" in text(screen, "#q-help")
        assert screen.answers["examples"] == "hundreds"
        await pilot.press("b")
        await pilot.pause()
        assert screen.step == 0 and screen.query_one("#q-problem").pressed_button.id == "opt-problem-format"
        await pilot.click("#q-next")
        await pilot.pause()
        assert screen.step == 1
        # every term on the way is explained in one line that fits 80 columns
        for question in QUESTIONS:
            for term in question.terms:
                assert len(f" {term}: {TERMS[term]}") <= 78, term
        assert "example: one input with the ideal answer" in text(screen, "#q-terms")


async def test_knowledge_that_changes_gets_rag_and_nothing_to_train(no_gpu):
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_method(pilot)
        await pilot.press("enter")  # knowledge
        await pilot.press("enter")  # examples: as counted
        await pilot.press("up", "up", "enter")  # changes: every day or week
        await pilot.press("enter", "enter", "enter")
        await pilot.pause()
        assert screen.answers["knowledge_changes"] == "often"
        assert "RAG" in text(screen, "#rec-headline")
        assert screen.recommendation.method == "rag"
        assert "stale" in screen.query_one("#rec-reasons").text
        await pilot.press("u")  # nothing to carry: RAG does not train
        await pilot.pause()
        assert app.current_mode == "method" and app.project.method is None
        await pilot.press("a")  # back to the first question
        await pilot.pause()
        assert screen.step == 0 and text(screen, "#q-title") == QUESTIONS[0].title


async def test_demo_on_the_cpu_recommends_lora_and_carries_its_settings_to_train(no_gpu):
    app = TunedeckApp()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_method(pilot)
        await pilot.press("down", "enter")  # wrong format
        for _ in range(5):
            await pilot.press("enter")
        await wait_for_model(screen, pilot)
        rec = screen.recommendation
        assert rec.method == "lora" and "Fine-tune with LoRA" in text(screen, "#rec-headline")
        assert any("trains on the CPU" in w for w in rec.warnings)
        assert "4,884,480 parameters" in screen.query_one("#rec-reasons").text
        where = text(screen, "#methods-where")
        assert "no NVIDIA GPU found" in where and "CPU only" in where
        lora_row = screen.query_one("#row-lora", MethodRow)
        assert "4.88M (3.6%)" in str(lora_row.query_one(".m-trainable").render())
        bar = screen.query_one("#bar-lora", MemoryBar)
        assert bar.need == screen.estimates["lora"].memory.total and bar.capacity  # against free RAM
        assert "134.5M (all)" in str(screen.query_one("#row-full").query_one(".m-trainable").render())
        await pilot.press("u")
        await pilot.pause()
        assert app.current_mode == "train"
        assert app.project.method == "lora"
        settings = app.project.settings
        assert settings["batch_size"] == 8 and settings["lora"]["targets"] == "all-linear"
        cfg = RunConfig.from_dict({"method": app.project.method, **settings})  # the Train screen's validation
        assert cfg.learning_rate == 2e-4 and cfg.epochs == 2


async def test_a_detected_gpu_too_small_for_lora_gets_qlora_and_full_can_still_be_chosen(rtx4090):
    app = TunedeckApp(model="llama-3.1-8b")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_method(pilot)
        await pilot.press("down", "down", "enter")  # style
        assert screen.question.key == "feedback"  # tone and style: SFT, DPO or KTO is asked
        await pilot.press("enter")  # ideal answers: SFT
        await pilot.press("enter", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "NVIDIA GeForce RTX 4090, 22 GiB free" in str(screen.query_one("#opt-gpu-here").label)
        await pilot.press("enter", "enter", "enter")
        await wait_for_model(screen, pilot)
        assert screen.arch.total_params == 8_030_261_248
        verdicts = {m: screen.query_one(f"#bar-{m}", MemoryBar).verdict for m in ("lora", "qlora", "full")}
        assert verdicts["full"] == "no" and verdicts["qlora"] == "fits"
        assert screen.recommendation.method == "qlora"
        assert "GPU 0 NVIDIA GeForce RTX 4090 (22.0 GiB free)" in text(screen, "#methods-where")
        assert screen.query_one("#row-qlora").has_class("-recommended")
        screen.query_one("#result").scroll_to_widget(screen.query_one("#use-full"), animate=False)
        await pilot.pause()
        await pilot.click("#use-full")
        await pilot.pause()
        assert app.current_mode == "train" and app.project.method == "full"
        assert "lora" not in app.project.settings and app.project.settings["learning_rate"] == 1e-5
        RunConfig.from_dict({"method": "full", **app.project.settings})


async def test_a_file_of_preference_pairs_gets_dpo_explained_and_carried_to_train(no_gpu, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    shutil.copy(demo.data_file(demo.DEMO_PREFERENCE), pairs)
    app = TunedeckApp(data=str(pairs))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_method(pilot)
        await app.workers.wait_for_complete()  # the file read: its format and rows
        await pilot.pause()
        assert screen.data_format == "preference" and screen.example_count == 340
        assert text(screen, "#q-step") == "Question 1 of 7"  # what the examples are is asked
        await pilot.press("down", "enter")  # wrong format
        await pilot.pause()
        assert text(screen, "#q-title") == "What do your examples look like?"
        assert "preference pairs (prompt / chosen / rejected)" in text(screen, "#q-help")
        assert screen.query_one("#q-feedback").pressed_button.id == "opt-feedback-dpo"  # from the file
        assert "DPO: learn from pairs" in text(screen, "#q-terms")
        await pilot.press("enter")
        await pilot.pause()
        assert "Your data (" in text(screen, "#q-help") and "340 pairs" in text(screen, "#q-help")
        for _ in range(5):
            await pilot.press("enter")
        await pilot.pause()
        rec = screen.recommendation
        assert rec.method == "lora" and rec.objective == "dpo"
        assert text(screen, "#rec-headline") == "Recommendation: Fine-tune with LoRA on preference pairs (DPO)"
        objectives = screen.query_one("#rec-objectives")  # SFT vs DPO vs KTO in plain words
        assert objectives.display and "SFT (supervised fine-tuning) learns from ideal answers" in objectives.text
        assert "DPO learns from pairs" in objectives.text and "KTO learns from single answers" in objectives.text
        assert any("train SFT first" in w for w in rec.warnings)  # no SFT run to start from
        assert text(screen, "#rec-settings").startswith("Starting settings: DPO · beta 0.1 · learning rate 5e-5")
        await pilot.press("u")
        await pilot.pause()
        assert app.current_mode == "train" and app.project.method == "lora"
        assert app.project.settings["objective"] == "dpo" and "init_from" not in app.project.settings
        train = app.screen
        assert train.query_one("#field-objective").value == "dpo"
        assert train.query_one("#field-learning-rate").value == "5e-05"
        assert text(train, "#config-error").startswith("✔ Ready: DPO with lora on demo")


async def test_dpo_starts_from_the_sft_run_in_view_and_knowledge_drops_the_question(no_gpu):
    from dataclasses import replace

    from run_folders import finished_sft_run

    run = finished_sft_run()
    app = TunedeckApp(data=demo.DEMO_PREFERENCE)
    app.project = replace(app.project, run_id=run.id)  # the run trained (or watched) before
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_method(pilot)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.sft_run == run.id
        await pilot.press("enter")  # missing knowledge: no objective trains facts in, so it is not asked
        await pilot.pause()
        assert text(screen, "#q-step") == "Question 2 of 6"
        await pilot.press("b", "down", "enter", "enter")  # wrong format; pairs: DPO
        for _ in range(5):
            await pilot.press("enter")
        await pilot.pause()
        rec = screen.recommendation
        assert rec.objective == "dpo" and not any("train SFT first" in w for w in rec.warnings)
        assert any(f"starts from your SFT run {run.id}" in r for r in rec.reasons)
        assert f"DPO from run {run.id}" in text(screen, "#rec-settings")
        await pilot.press("u")
        await pilot.pause()
        assert app.project.settings["init_from"] == run.id
        assert text(app.screen, "#config-error").startswith(f"✔ Ready: DPO with lora from run {run.id} on demo")
        RunConfig.from_dict({"method": "lora", **app.project.settings})


async def _answer_demo_for_a_planned_24gb_gpu(pilot):
    screen = await open_method(pilot)
    await pilot.press("down", "enter", "enter", "enter")  # format, 340 examples, rarely
    await pilot.press("down", "down", "enter")  # a 24 GB GPU
    await pilot.press("enter", "enter")
    await wait_for_model(screen, pilot)
    await pilot.pause()


def test_snapshot_first_question_80x24(snap_compare, no_gpu):
    async def first(pilot):
        await open_method(pilot)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(TunedeckApp(), terminal_size=(80, 24), run_before=first)


def test_snapshot_demo_advice_for_a_24gb_gpu_80x24(snap_compare, no_gpu):
    assert snap_compare(TunedeckApp(), terminal_size=(80, 24), run_before=_answer_demo_for_a_planned_24gb_gpu)


def test_snapshot_demo_advice_for_a_24gb_gpu_160x48(snap_compare, no_gpu):
    assert snap_compare(TunedeckApp(), terminal_size=(160, 48), run_before=_answer_demo_for_a_planned_24gb_gpu)
