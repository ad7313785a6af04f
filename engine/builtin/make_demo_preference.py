"""Write the built-in preference demo: support tickets, each with a chosen and a rejected answer.

The same task as the SFT demo (``make_demo_data``: a ticket in, one line of strict JSON out), as
judgements instead of ideal answers. The chosen answer is always the concise strict JSON with the
right values; the rejected one is what goes wrong in practice, one kind per pair:

  order_id  strict JSON with an order id the ticket does not have: made up (the SFT demo model's
            most visible slip: "12345" for a ticket without an order) or changed
  wrong     strict JSON with one other field wrong (a category, priority, sentiment or needs_human
            that the ticket contradicts)
  chatty    the right JSON wrapped in a friendly sentence before and after
  fenced    the right JSON in a Markdown code fence
  pretty    the right JSON pretty-printed over several lines
  prose     the triage written out as a sentence (what the demo model does when asked as-is)
  partial   JSON with some keys left out

So DPO learns the format *and* to get the fields right: the "wrong" pairs differ from the chosen
answer in a few tokens only, which is where reward accuracy on held-out pairs shows whether the
model learnt to read the ticket rather than to prefer short answers. Start from the SFT demo run
(``init_from``) for the usual SFT-then-DPO recipe, or from the base model. Deterministic (seeded);
run it to regenerate the files:

    python -m engine.builtin.make_demo_preference
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from engine.builtin.make_demo_data import PROBLEMS, SYSTEM, _ticket

KINDS = ("order_id", "wrong", "chatty", "fenced", "pretty", "prose", "partial")
WEIGHTS = (4, 3, 1, 1, 1, 1, 1)
MADE_UP_IDS = ["12345", "123456", "A12345", "ORD-1001", "N/A", "unknown", "00000"]

CHATTY_BEFORE = ["Sure! Here is the triage for this ticket:", "Of course, happy to help. Here's the JSON:",
                 "Thanks for sharing the ticket! Below is my analysis.", "Great question! Here you go:"]
CHATTY_AFTER = ["Let me know if you need anything else!", "Hope this helps!",
                "Feel free to ask if something is unclear.", "Have a great day!"]
OTHER = {
    "priority": ["urgent", "high", "medium", "low"],
    "sentiment": ["negative", "neutral", "positive"],
    "category": list(PROBLEMS),
}


def _line(answer: dict) -> str:
    return json.dumps(answer, separators=(", ", ": "))


def _wrong(answer: dict, rng: random.Random) -> dict:
    bad = dict(answer)
    key = rng.choice(["category", "priority", "sentiment", "needs_human"])
    if key == "needs_human":
        bad[key] = not answer[key]
    else:
        bad[key] = rng.choice([v for v in OTHER[key] if v != answer[key]])
    return bad


def _wrong_order_id(answer: dict, rng: random.Random) -> dict:
    bad = dict(answer)
    if answer["order_id"] is None:
        bad["order_id"] = rng.choice(MADE_UP_IDS)
    else:  # a near miss: another order's id
        bad["order_id"] = f"{rng.choice('ABCDKMQRTX')}{rng.randint(10000, 99999)}"
    return bad


def _prose(answer: dict) -> str:
    order = f" (order {answer['order_id']})" if answer["order_id"] else ""
    human = "It should be escalated to a person." if answer["needs_human"] else "No escalation is needed."
    return (f"This is a {answer['priority']}-priority {answer['category']} ticket about the {answer['product']}{order}. "
            f"The customer sounds {answer['sentiment']}. {human}")


def rejected_answer(answer: dict, kind: str, rng: random.Random) -> str:
    if kind == "order_id":
        return _line(_wrong_order_id(answer, rng))
    if kind == "wrong":
        return _line(_wrong(answer, rng))
    if kind == "chatty":
        return f"{rng.choice(CHATTY_BEFORE)}\n{_line(answer)}\n{rng.choice(CHATTY_AFTER)}"
    if kind == "fenced":
        return f"```json\n{_line(answer)}\n```"
    if kind == "pretty":
        return json.dumps(answer, indent=2)
    if kind == "prose":
        return _prose(answer)
    if kind == "partial":
        keep = [k for k in answer if k in ("category", "priority", "product") or rng.random() < 0.3]
        return _line({k: answer[k] for k in keep})
    raise ValueError(kind)


def pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        ticket, answer = _ticket(rng)
        if ticket in seen:
            continue
        seen.add(ticket)
        kind = rng.choices(KINDS, weights=WEIGHTS)[0]
        rejected = rejected_answer(answer, kind, rng)
        if rejected == _line(answer):  # cannot happen, but a pair must differ
            continue
        rows.append({"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ticket}],
                     "chosen": [{"role": "assistant", "content": _line(answer)}],
                     "rejected": [{"role": "assistant", "content": rejected}],
                     "rejected_kind": kind})
    return rows


def main() -> None:
    here = Path(__file__).parent
    rows = pairs(400, seed=20261126)
    for name, part in (("demo-preference-train.jsonl", rows[:340]), ("demo-preference-validation.jsonl", rows[340:])):
        with open(here / name, "w", encoding="utf-8") as f:
            for row in part:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {len(part)} pairs to {here / name}")


if __name__ == "__main__":
    main()
