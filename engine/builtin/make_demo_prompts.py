"""Write the built-in prompts-only demo (``demo-prompts``): the demo's support tickets without answers, for GRPO.

The data a person has when answers can be checked but nobody wrote the ideal ones: prompts only. Each
row is ``{"prompt": [messages]}``, the conversation the model answers:

  1. the demo's system prompt (one line of JSON with six keys, nothing else),
  2. ONE worked example, as a conversation turn: an example ticket (``EXAMPLE_TICKET``, fixed, not one of
     the prompts) and the assistant's one-line JSON answer to it,
  3. the real ticket.

The worked example is the recipe for people with prompts but no answers: write one example into the
prompt. It is what gives GRPO a signal on the demo: the base model (SmolLM2-135M-Instruct) asked with
the system prompt and the ticket alone never writes JSON, so every sampled answer scores 0 with the
JSON rewards and GRPO learns nothing; with one example exchange before the ticket, its answers sampled
at temperature 1 are valid JSON about half the time (and the same example written into the system
prompt instead does not help: 0%), a spread GRPO can climb. No answer column: the rewards (json_valid,
json_keys) check the answers' form, they need no reference.

The tickets are the SFT demo's (``make_demo_data``): its train split's tickets are the train prompts,
its validation split's the validation prompts (held out for ``tunedeck eval``). Deterministic; run it
to regenerate the files (after ``make_demo_data``):

    python -m engine.builtin.make_demo_prompts
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.builtin.make_demo_data import SYSTEM

EXAMPLE_TICKET = ("Hello team, the Quartz Router I bought last week keeps dropping the connection every evening. "
                  "Please look at this soon. Thanks.")
EXAMPLE_ANSWER = {"category": "technical", "priority": "high", "product": "Quartz Router", "order_id": None,
                  "sentiment": "neutral", "needs_human": False}


def example_exchange() -> list[dict]:
    """The worked example, as a user turn and the assistant's answer."""
    return [{"role": "user", "content": EXAMPLE_TICKET},
            {"role": "assistant", "content": json.dumps(EXAMPLE_ANSWER, separators=(", ", ": "))}]


def prompt_row(ticket: str) -> dict:
    return {"prompt": [{"role": "system", "content": SYSTEM}, *example_exchange(),
                       {"role": "user", "content": ticket}]}


def tickets(path: Path) -> list[str]:
    """The user turns (tickets) of an SFT demo file."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                messages = json.loads(line)["messages"]
                out.append(next(m["content"] for m in messages if m["role"] == "user"))
    return out


def main() -> None:
    here = Path(__file__).parent
    for split in ("train", "validation"):
        rows = tickets(here / f"demo-{split}.jsonl")
        assert EXAMPLE_TICKET not in rows, "the worked example must not be one of the prompts"
        out = here / f"demo-prompts-{split}.jsonl"
        with open(out, "w", encoding="utf-8") as f:
            for ticket in rows:
                f.write(json.dumps(prompt_row(ticket), ensure_ascii=False) + "\n")
        print(f"wrote {len(rows)} prompts to {out}")


if __name__ == "__main__":
    main()
