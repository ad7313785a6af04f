"""Write the built-in demo dataset: support tickets -> one line of strict JSON.

The task teaches behaviour, not knowledge: every fact in the answer is in the ticket, and the
small demo model, asked as-is, answers in prose. A few CPU minutes of LoRA are enough to make
it answer in exactly this JSON shape. Deterministic (seeded); run it to regenerate the files:

    python -m engine.builtin.make_demo_data
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = (
    "You triage customer support tickets. Reply with one line of JSON with the keys "
    "category, priority, product, order_id, sentiment and needs_human, and nothing else."
)

PRODUCTS = [
    "AeroPress Kettle", "Nimbus Headphones", "Pixel Frame 10", "TrailRunner Shoes", "Lumo Desk Lamp",
    "Orbit Smartwatch", "CloudSync Pro plan", "Basil Blender", "Vega Gaming Mouse", "Harbor Backpack",
    "Juniper Yoga Mat", "Quartz Router", "Sprout Plant Pot", "Atlas Office Chair", "Echo Doorbell",
]

OPENERS = {
    "negative": ["This is really frustrating.", "I'm very disappointed.", "Honestly, this is unacceptable.",
                 "I am fed up.", "Not happy at all."],
    "neutral": ["Hi,", "Hello team,", "Hi there.", "Good morning,", ""],
    "positive": ["Hi! Love your products.", "Hello, thanks for the great service so far.",
                 "Hi team, big fan here.", "Thanks in advance for your help!"],
}

URGENCY = {
    "urgent": ["I need this fixed today, it is blocking my business.", "Please help ASAP, this is urgent!",
               "This is an emergency, I need it resolved right now."],
    "high": ["Please look at this soon.", "I'd appreciate a quick reply.", "This is getting in the way of my work."],
    "medium": ["", "When you get a chance, please take a look.", "Let me know what you find."],
    "low": ["No rush at all.", "Whenever you have time.", "Just letting you know, it's not urgent."],
}

PROBLEMS = {
    "billing": [
        "I was charged twice for my {product} on order {order}.",
        "My invoice for order {order} shows the wrong amount for the {product}.",
        "The {product} subscription renewed at a higher price than I agreed to.",
        "My card was charged for the {product} but I never got a receipt.",
    ],
    "shipping": [
        "My {product} from order {order} still hasn't arrived after two weeks.",
        "Tracking for order {order} has not updated in five days and I'm waiting on the {product}.",
        "The {product} arrived at the wrong address. Order {order}.",
        "The box with my {product} was crushed on delivery (order {order}).",
    ],
    "technical": [
        "My {product} keeps disconnecting every few minutes.",
        "The {product} won't turn on since the latest update.",
        "I can't pair the {product} with my phone, it fails every time.",
        "The {product} shows an error code E42 when I start it.",
    ],
    "account": [
        "I can't log in to my account to manage my {product}, the reset email never comes.",
        "Please change the email on my account, I use it for the {product}.",
        "My account got locked after I registered my {product}.",
        "How do I add a second user to my account for the {product}?",
    ],
    "refund": [
        "I'd like a refund for the {product} on order {order}, it's not what I expected.",
        "I returned the {product} from order {order} a month ago and still have no refund.",
        "Can I get my money back for the {product}? Order {order}.",
        "The {product} broke after one day, I want a full refund for order {order}.",
    ],
}

NEEDS_HUMAN_CUES = ["I want to speak to a real person.", "Please escalate this to a manager.",
                    "I'd like someone to call me about this."]

CLOSERS = ["Thanks.", "Regards, Sam", "Cheers", "Best, Priya", "-- Tom", "Thank you!", "", "Kind regards, Ana"]


def _ticket(rng: random.Random) -> tuple[str, dict]:
    category = rng.choice(list(PROBLEMS))
    sentiment = rng.choices(["negative", "neutral", "positive"], weights=[4, 4, 2])[0]
    priority = rng.choices(["urgent", "high", "medium", "low"], weights=[2, 3, 4, 2])[0]
    if sentiment == "positive" and priority == "urgent":
        priority = "high"
    product = rng.choice(PRODUCTS)
    template = rng.choice(PROBLEMS[category])
    has_order = "{order}" in template
    order = f"{rng.choice('ABCDKMQRTX')}{rng.randint(10000, 99999)}" if has_order else None
    wants_human = rng.random() < 0.25
    needs_human = wants_human or (priority == "urgent" and sentiment == "negative")
    parts = [rng.choice(OPENERS[sentiment]), template.format(product=product, order=order),
             rng.choice(URGENCY[priority])]
    if wants_human:
        parts.append(rng.choice(NEEDS_HUMAN_CUES))
    parts.append(rng.choice(CLOSERS))
    ticket = " ".join(p for p in parts if p)
    answer = {
        "category": category,
        "priority": priority,
        "product": product,
        "order_id": order,
        "sentiment": sentiment,
        "needs_human": needs_human,
    }
    return ticket, answer


def examples(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        ticket, answer = _ticket(rng)
        if ticket in seen:
            continue
        seen.add(ticket)
        rows.append({"messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": ticket},
            {"role": "assistant", "content": json.dumps(answer, separators=(", ", ": "))},
        ]})
    return rows


def main() -> None:
    here = Path(__file__).parent
    rows = examples(400, seed=20261122)
    for name, part in (("demo-train.jsonl", rows[:340]), ("demo-validation.jsonl", rows[340:])):
        with open(here / name, "w", encoding="utf-8") as f:
            for row in part:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {len(part)} rows to {here / name}")


if __name__ == "__main__":
    main()
