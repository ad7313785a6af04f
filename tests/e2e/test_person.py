"""The whole demo, driven like a person at a keyboard: the real `tunedeck` in a real terminal (tmux),
keys sent with `tmux send-keys`, and what the screen shows read back with `tmux capture-pane`.

    open the app on the demo -> Data: rows, a row's trained tokens, the length statistics, max length
    256 -> Method: answer the six questions, see the advice, carry LoRA (and max length 256) to Train
    -> Train: `?` says ctrl+s starts; a short run (8 steps of 4 examples) -> the terminal is killed
    (SIGKILL: nothing runs on exit) -> the worker goes on -> `tunedeck attach RUN` in a new terminal
    -> the run ends, completed, on screen -> Chat: compare mode, a support ticket, the base and
    fine-tuned answers stream, finish, and differ (the fine-tuned one is the trained JSON) -> q quits,
    leaving no process behind.

Every wait polls the screen and fails with the last screen it saw. The run folder is checked where
it is the truth (one worker, every step logged once, the adapter written). About 1.5-2.5 minutes on
a 2-core machine, most of it the 8 training steps and loading the chat models.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from engine.runs import get_run

ROOT = Path(__file__).resolve().parents[2]
SIZE = (100, 30)
STEPS = 8
TICKET = ("Hello, I ordered the Atlas Office Chair (order M51234) three weeks ago and it still has "
          "not arrived. I want a refund now.")
RUN_ID = re.compile(r"\b\d{8}-\d{6}-demo-lora\b")
FIGURES = re.compile(r"\d+ tok · [\d.]+ tok/s")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def tunedeck_command() -> list[str]:
    """The console script beside this Python (what `make run` starts), else `python -m engine`."""
    script = Path(sys.executable).with_name("tunedeck")
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine"]


class Terminal:
    """One tmux session on a private tmux server (its own socket; the user's tmux is never touched)."""

    def __init__(self, socket: str, name: str, argv: list[str], size=SIZE) -> None:
        self.tmux = ["tmux", "-L", socket]
        self.name = name
        self.last = ""
        env = {k: os.environ[k] for k in ("TUNEDECK_HOME", "TUNEDECK_CONFIG")}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false")
        # COLUMNS/LINES (set under pytest) would win over the terminal's own size: drop them.
        # NO_COLOR would hide the wizard's highlight, which the test reads like a person does.
        command = ("exec env -u COLUMNS -u LINES -u NO_COLOR "
                   + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shlex.join(argv))
        clean = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX", "NO_COLOR")}
        # remain-on-exit: if the app dies, its last screen (a traceback) stays readable for the failure message
        subprocess.run([*self.tmux, "new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]),
                        "-c", str(ROOT), command, ";", "set-option", "-t", name, "remain-on-exit", "on"],
                       check=True, env=clean)
        self.pid = int(self._tmux("display", "-p", "-t", name, "#{pane_pid}").stdout)

    def _tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.tmux, *args], capture_output=True, text=True, timeout=30)

    def screen(self, escapes: bool = False) -> str:
        out = self._tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", self.name)
        if out.returncode == 0 and not escapes:
            self.last = out.stdout
        return out.stdout if out.returncode == 0 else self.last

    def press(self, *keys: str, pause: float = 0.5) -> None:
        """Keys one at a time, each given time to land (a person looks before the next key: Textual
        delivers keys typed ahead of a focus change to the widget that had the focus)."""
        for key in keys:
            self._tmux("send-keys", "-t", self.name, key)
            time.sleep(pause)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.name, "-l", text)
        time.sleep(0.3)

    def alive(self) -> bool:
        """Whether the program in the terminal still runs (its pane stays, dead, after it exits)."""
        out = self._tmux("display", "-p", "-t", self.name, "#{pane_dead}")
        return out.returncode == 0 and out.stdout.strip() == "0"

    def wait(self, what: str, test, timeout: float, every: float = 0.25) -> str:
        """Poll the screen until ``test(screen)`` (a string: it is on the screen) holds."""
        check = (lambda s: test in s) if isinstance(test, str) else test
        deadline = time.time() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.time() > deadline:
                pytest.fail(f"waited {timeout:.0f} s for {what}; the terminal ({self.name}) last showed:\n"
                            f"{screen}", pytrace=False)
            time.sleep(every)


def has_all(*texts: str):
    return lambda screen: all(t in screen for t in texts)


def highlighted_option(term: Terminal, labels: list[str]) -> str | None:
    """The wizard answer under the keyboard highlight: drawn bold on a coloured background, which plain
    text cannot show, so read it from the screen with its escape sequences."""
    for line in term.screen(escapes=True).splitlines():
        for label in labels:
            at = line.find(label)
            if at >= 0 and "\x1b[1m" in line[max(0, at - 40):at]:
                return label
    return None


def focused_field(screen: str) -> str | None:
    """The Train form explains the focused field on its own line, `Label: what it means`: its label."""
    for line in screen.splitlines():
        match = re.match(r"^ ([A-Z][A-Za-z ]+): ", line)
        if match and match.group(1) in FIELD_LABELS:
            return match.group(1)
    return None


FIELD_LABELS = {"Model", "Data", "Method", "Learning rate", "Epochs", "Max steps", "Batch size", "Grad accumulation",
                "Max length", "LoRA rank", "LoRA alpha", "LoRA dropout", "LoRA targets"}


def press_and_see(term: Terminal, key: str, read, what: str, timeout: float = 10) -> None:
    """Press ``key`` and wait until ``read(screen)`` changes: the next key goes only where a person
    would see it go (on a busy machine the screen can lag a key by more than a blink)."""
    before = read(term.screen())
    term.press(key, pause=0)
    term.wait(what, lambda screen: read(screen) != before, timeout, every=0.1)
    time.sleep(0.1)


def focus_field(term: Terminal, label: str) -> None:
    """Tab through the settings until the field explained below the form is ``label``."""
    for _ in range(len(FIELD_LABELS) + 2):
        if focused_field(term.screen()) == label:
            return
        press_and_see(term, "Tab", focused_field, f"Tab to move the focus on (towards {label})")
    pytest.fail(f"Tab never reached the {label} field:\n{term.screen()}", pytrace=False)


def set_field(term: Terminal, label: str, text: str) -> None:
    """Tab to a field and type over its value (selected when the field takes the focus); "" empties it."""
    focus_field(term, label)
    if text:
        term.type(text)
    else:
        term.press("BSpace", pause=0)
    shown = text or "empty"
    term.wait(f"{label} to read {shown}", lambda screen: field_value(screen, label) == shown, 10, every=0.1)


def field_value(screen: str, label: str) -> str:
    """The value shown in the form row ``label`` (label column 18 wide, then the value)."""
    match = re.search(rf"(?m)^ {re.escape(label)} +(\S+)", screen)
    return match.group(1) if match else ""


def chat_panes(screen: str) -> tuple[str, str]:
    """The two panes of compare mode, side by side in the screen, as (left, right) text."""
    left, right = [], []
    for line in screen.splitlines():
        if "││" in line:
            a, b = line.split("││", 1)
            left.append(a.strip().lstrip("│").strip())
            right.append(b.strip().rstrip("│").strip())
    return "\n".join(left), "\n".join(right)


def answer(pane: str, who: str) -> tuple[str, bool]:
    """(the answer under the ``who`` label, whether it has finished: its figures line is shown)."""
    lines = pane.splitlines()
    labels = [k for k, line in enumerate(lines) if line.split("⧉")[0].strip() == who]
    if not labels:
        return "", False
    words, done = [], False
    for line in lines[labels[-1] + 1:]:
        if FIGURES.search(line):
            done = True
            break
        if line != "…":  # the marker of an answer still streaming
            words.append(line)
    return " ".join(" ".join(words).split()), done


@pytest.fixture
def terminals():
    if shutil.which("tmux") is None:
        pytest.skip("tmux is needed to drive the app in a real terminal")
    socket = f"tunedeck-e2e-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    made: list[Terminal] = []

    def open_terminal(name: str, *args: str) -> Terminal:
        term = Terminal(socket, name, [*tunedeck_command(), *args])
        made.append(term)
        return term

    yield open_terminal
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)  # this test's server only


def test_a_person_fine_tunes_the_demo_and_compares_it_in_chat(terminals, demo_model_dir, tunedeck_home):
    t0 = time.time()
    timings: list[str] = []

    def mark(stage: str) -> None:
        timings.append(f"{stage} {time.time() - t0:.0f}s")

    worker_pid = None
    try:
        # --- the app opens on the demo, with the path to follow -----------------------------------------
        app = terminals("app")
        app.wait("the home screen", has_all("Your first fine-tune", "SmolLM2-135M-Instruct",
                                             "340 train / 60 validation"), 30)

        # --- Data: the rows, one row as trained tokens, the lengths; max length 256 -----------------------
        app.press("1")
        screen = app.wait("the demo rows", has_all("340 rows", "no bad rows", "   1 ✓ "), 30)
        assert "line   first user turn" in screen and screen.count(" ✓ ") >= 5
        app.wait("the first row as a conversation", has_all("line 1 · row 1 · messages", "ASSISTANT  trained"), 15)
        app.press("t")
        screen = app.wait("the first row as tokens with the trained ones counted",
                          lambda s: re.search(r"\d+ tokens · \d+ trained", s) and "<|im_start|>assistant" in s, 60)
        total, trained = map(int, re.search(r"(\d+) tokens · (\d+) trained", screen).groups())
        assert 0 < trained < total, screen
        app.press("l")
        screen = app.wait("the token-length statistics", has_all("340 examples · tokens each: min",
                                                                   "every example fits in 1024 tokens"), 90)
        assert re.search(r"[\d,]+ trained tokens of [\d,]+ \(max length 1024\)", screen), screen
        app.press("m", pause=1.0)  # the max length field takes the focus, its value selected
        app.type("256")
        app.press("Enter")
        app.wait("the statistics again for max length 256", has_all("every example fits in 256 tokens",
                                                                     "(max length 256)"), 60)
        mark("data")

        # --- Method: six questions, the advice, LoRA carried to Train --------------------------------------
        app.press("2")
        app.wait("the first question", has_all("Question 1 of 6", "What is wrong with the model's answers"), 15)
        problems = ["It lacks facts it needs", "Wrong output format", "Wrong tone or style",
                    "Doesn't do the task reliably", "Works, but too slow"]
        for _ in range(len(problems)):
            if highlighted_option(app, problems) == "Wrong output format":
                break
            press_and_see(app, "Down", lambda _: highlighted_option(app, problems), "the highlight to move down")
        assert highlighted_option(app, problems) == "Wrong output format", app.screen()
        app.press("Enter")
        app.wait("question 2, with the demo's example count", has_all("Question 2 of 6", "340 examples"), 10)
        for n in range(3, 7):  # the rest keep their preselected answers: Enter chooses and goes on
            app.press("Enter")
            app.wait(f"question {n}", f"Question {n} of 6", 10)
        app.press("Enter")
        screen = app.wait("the recommendation", has_all("Recommendation: Fine-tune with LoRA", "Why",
                                                         "What would change the answer", "Starting settings"), 15)
        assert "max length 256" in screen, "the max length set on Data was not carried into the advice:\n" + screen
        app.press("u")
        screen = app.wait("the Train settings carried from Method",
                          has_all("Set up a run", "✔ Ready: lora on demo"), 15)
        assert field_value(screen, "Method") == "LoRA" and field_value(screen, "Max length") == "256", screen
        assert field_value(screen, "Learning rate") == "0.0002" and field_value(screen, "Epochs") == "2", screen
        mark("method")

        # --- Train: how to start? `?` lists this screen's keys -----------------------------------------------
        app.press("?")
        app.wait("the help with the Train keys", lambda s: "On this screen (Train)" in s
                 and re.search(r"ctrl\+s +Start", s), 10)
        app.press("Escape")
        app.wait("the help to close", lambda s: "On this screen" not in s and "Set up a run" in s, 10)

        # --- Train: a short run (8 steps of 4 examples, a higher learning rate), ctrl+s ---------------------
        set_field(app, "Learning rate", "1e-3")
        set_field(app, "Epochs", "")  # one of epochs and max steps
        set_field(app, "Max steps", str(STEPS))
        set_field(app, "Batch size", "4")
        set_field(app, "Grad accumulation", "1")  # already 1 on a CPU; a GPU starts at 4
        screen = app.wait("the settings to check out", f"✔ Ready: lora on demo, {STEPS} steps, 4 examples per update.",
                          10)
        assert field_value(screen, "Epochs") == "empty" and field_value(screen, "Learning rate") == "1e-3", screen
        app.press("C-s")
        screen = app.wait("the monitor of the new run", lambda s: RUN_ID.search(s) and "Monitor" in s
                          and re.search(r"[◌●] (starting|running)", s), 120)  # Start waits for the pre-flight check
        run_id = RUN_ID.search(screen).group(0)
        run = get_run(run_id)
        assert run.dir.parent.parent == tunedeck_home
        config = run.config()
        assert (config["method"], config["max_steps"], config["batch_size"], config["max_length"]) == \
            ("lora", STEPS, 4, 256), config
        assert config["learning_rate"] == pytest.approx(1e-3) and config.get("epochs") is None, config
        screen = app.wait("the first training steps on screen", lambda s: re.search(rf"step [1-9]\d*/{STEPS}", s)
                          and ("● running" in s or "✔ completed" in s), 180)
        mark("training")

        # --- the terminal dies (SIGKILL: no clean-up at all); the worker does not notice -------------------
        worker_pid = run.read_status()["pid"]
        assert os.getsid(worker_pid) != os.getsid(app.pid), "the worker shares the TUI's session"

        def logged() -> int:
            return max((e["step"] for e in run.events() if e["type"] == "log"), default=0)

        step_at_kill = logged()
        os.kill(app.pid, signal.SIGKILL)
        deadline = time.time() + 10
        while app.alive():
            assert time.time() < deadline, "the TUI survived SIGKILL"
            time.sleep(0.1)
        deadline = time.time() + 120
        while logged() <= step_at_kill and step_at_kill < STEPS:  # (a fast GPU may have finished already)
            assert psutil.pid_exists(worker_pid), f"the worker died with the TUI: {run.log_tail(20)}"
            assert time.time() < deadline, f"no step logged in 120 s after the TUI was killed: {run.log_tail(20)}"
            time.sleep(0.5)
        assert run.read_status()["state"] in ("running", "completed"), run.read_status()
        mark("killed")

        # --- a new terminal: `tunedeck attach RUN`, the curve so far, then the end ------------------------
        attach = terminals("attach", "attach", run_id)
        screen = attach.wait("the re-attached monitor",
                             lambda s: run_id in s and re.search(rf"step \d+/{STEPS}", s) and "loss" in s, 30)
        assert re.search(r"(● running|✔ completed)", screen), screen
        screen = attach.wait("the run to complete", has_all("✔ completed", f"step {STEPS}/{STEPS}",
                                                             f"Completed {STEPS} steps"), 300)
        mark("completed")
        status = run.read_status()
        assert (status["state"], status["step"], status["pid"]) == ("completed", STEPS, worker_pid), status
        events = run.events()
        assert [e["step"] for e in events if e["type"] == "log"] == list(range(1, STEPS + 1))
        assert sum(e["type"] == "start" for e in events) == 1  # one worker, start to end: never resumed
        assert events[-1]["type"] == "end" and events[-1]["state"] == "completed"
        assert (run.adapter_dir / "adapter_config.json").is_file()

        # --- Chat: compare mode, a support ticket, both answers stream and finish, and differ --------------
        attach.press("4")
        attach.wait("the fine-tuned model loaded", has_all("fine-tuned · adapter", "+ adapter",
                                                            "Ask something; Enter sends"), 180)
        attach.press("C-t")
        attach.wait("compare mode", has_all("base · SmolLM2-135M-Instruct", "Ask both models; Enter sends"), 10)
        attach.type(TICKET)
        attach.wait("the ticket typed in", TICKET[-40:], 5)  # the prompt line scrolls to its end
        attach.press("Enter", pause=0)
        streaming_seen = False

        def both_finished(screen: str) -> bool:
            nonlocal streaming_seen
            tuned_pane, base_pane = chat_panes(screen)
            tuned, tuned_done = answer(tuned_pane, "fine-tuned")
            base, base_done = answer(base_pane, "base")
            if (tuned and not tuned_done) or (base and not base_done):
                streaming_seen = True
            return tuned_done and base_done and "Ask both models" in screen

        screen = attach.wait("both answers to finish", both_finished, 150, every=0.15)
        mark("chat")
        tuned_pane, base_pane = chat_panes(screen)
        assert TICKET[:30] in " ".join(tuned_pane.split()) and TICKET[:30] in " ".join(base_pane.split())
        tuned, base = answer(tuned_pane, "fine-tuned")[0], answer(base_pane, "base")[0]
        assert streaming_seen, "no answer was seen part-way: the tokens did not stream\n" + screen
        assert tuned and base, screen
        assert tuned != base, "the fine-tuned model answers exactly like the base model:\n" + screen
        # what the demo teaches: one line of JSON with the ticket's fields (greedy decoding, 8 steps suffice)
        assert tuned.startswith('{"category": ') and '"order_id": "M51234"' in tuned, \
            "the fine-tuned model does not answer in the trained JSON:\n" + screen
        print(f"\n{screen}\nfine-tuned: {tuned}\nbase: {base}")

        # --- quit: the app and its chat process go away ------------------------------------------------
        children = psutil.Process(attach.pid).children(recursive=True)
        attach.press("Escape")  # leave the prompt, so q is a key and not a letter
        attach.press("q", pause=0)
        deadline = time.time() + 20
        while attach.alive():
            assert time.time() < deadline, "q did not quit the app:\n" + attach.screen()
            time.sleep(0.2)
        gone, left = psutil.wait_procs(children, timeout=15)
        assert not left, f"processes left behind after quitting: {[p.pid for p in left]}"
        mark("quit")
    finally:
        print("\n" + " · ".join(timings))
        if worker_pid is not None:  # a failed test leaves no training behind on a shared machine
            try:
                worker = psutil.Process(worker_pid)
                if "engine.worker" in " ".join(worker.cmdline()):
                    worker.kill()
            except psutil.Error:
                pass
