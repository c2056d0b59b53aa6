"""Generate the built-in verifiable task suite `synth` and the knowledge base.

    python data/make_data.py            # rewrites data/synth/{train,test}.jsonl, data/knowledge.jsonl

Deterministic (fixed seed per tier); a test regenerates into a temp dir and compares bytes.
Each row: id, question, answer (a string), steps (reference solution steps), facts (facts
the solution needs; privileged, for agents only), kind (the tier).

Tiers (what SmolLM2-135M can do with them is in docs/environment.md):
  add1d   a + b, 1-digit                      add2d   a + b, 2-digit
  mul1x2  a * b, 1-digit times 2-digit        add3    a + b + c, 1-digit
  expr3   a + b - c, 2-digit (result >= 0)    units   two-step word problem needing a unit fact

Controlled bottleneck (the only missing piece is a fact the base model cannot know):
  recall    "What is zorb?" for invented names whose 3-digit values exist only in
            knowledge.jsonl ("zorb = 417"); train and test hold the same facts in the same
            three question templates (a memory test: the fact, not the question, is held out
            from the base model)
  recall_t  test only: the same facts in two templates never used in training (transfer)
  recall_use  test only: the fact used inside a new one-step problem, "What is zorb + 7?", with
            added numbers (2..9) and a question form training never shows (use, not recall)
Measured on SmolLM2-135M (README, "A controlled bottleneck"): with the fact written as the
first line of the answer, pass@1 ~0.89 (the ceiling); without it 0.00 (a 3-digit value is not
guessed within 64 samples). 2-digit values were guessable, and "zorb + n" kept the ceiling
below 0.5 (the model's own arithmetic errors).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

N_TEST = 60
N_TRAIN = 300
SEED = 1234

# (fact, question template, big-unit range, small-unit range, how the steps combine)
UNITS = [
    ("1 hour = 60 minutes", 60, "A film lasts {a} hours and {b} minutes. How many minutes long is the film?", (1, 4), (5, 59), "add"),
    ("1 minute = 60 seconds", 60, "A song is {a} minutes and {b} seconds long. How many seconds long is the song?", (2, 6), (5, 59), "add"),
    ("1 day = 24 hours", 24, "A machine runs for {a} days and {b} hours. How many hours does it run?", (1, 5), (1, 23), "add"),
    ("1 week = 7 days", 7, "A trip lasts {a} weeks and {b} days. How many days does the trip last?", (2, 9), (1, 6), "add"),
    ("1 year = 12 months", 12, "A child is {a} years and {b} months old. How old is the child in months?", (2, 9), (1, 11), "add"),
    ("1 foot = 12 inches", 12, "A board is {a} feet and {b} inches long. How many inches long is the board?", (2, 9), (1, 11), "add"),
    ("1 meter = 100 centimeters", 100, "A rope is {a} meters and {b} centimeters long. How many centimeters long is the rope?", (1, 9), (5, 95), "add"),
    ("1 kilogram = 1000 grams", 1000, "A bag holds {a} kilograms and {b} grams of rice. How many grams of rice does it hold?", (1, 5), (50, 950), "add"),
    ("1 dozen = 12", 12, "Sam buys {a} dozen eggs and uses {b} of them. How many eggs are left?", (2, 9), (1, 11), "sub"),
    ("1 dozen = 12", 12, "A box holds {a} dozen pencils. {b} pencils are given away. How many pencils remain?", (2, 9), (1, 11), "sub"),
]

RULES = [
    "To add three numbers, add the first two, then add the third number to that result.",
    "Evaluate + and - from left to right: a + b - c means (a + b) - c.",
    "To multiply a 1-digit number by a 2-digit number, multiply the tens and the ones separately and add: 7 * 23 = 7 * 20 + 7 * 3 = 140 + 21 = 161.",
    "To add two 2-digit numbers, add the tens, add the ones, then combine: 47 + 38 = 70 + 15 = 85.",
    "To convert a quantity given in two units into the smaller unit, multiply the larger unit by its conversion factor, then add the remaining smaller units.",
    "If some items are used or given away, subtract them from the total number of items.",
    "Finish with the final number on its own line as 'Answer: <number>'.",
]


def _arith(tier: str, rng: random.Random) -> tuple[str, int, list[str], list[str]]:
    if tier == "add1d":
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return f"What is {a} + {b}?", a + b, [f"{a} + {b} = {a + b}"], []
    if tier == "add2d":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        return f"What is {a} + {b}?", a + b, [f"{a} + {b} = {a + b}"], [RULES[3]]
    if tier == "mul1x2":
        a, b = rng.randint(2, 9), rng.randint(10, 99)
        return f"What is {a} * {b}?", a * b, [f"{a} * {b} = {a * b}"], [RULES[2]]
    if tier == "add3":
        a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
        return (f"What is {a} + {b} + {c}?", a + b + c,
                [f"{a} + {b} = {a + b}", f"{a + b} + {c} = {a + b + c}"], [RULES[0]])
    if tier == "expr3":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        c = rng.randint(10, min(99, a + b))
        return (f"What is {a} + {b} - {c}?", a + b - c,
                [f"{a} + {b} = {a + b}", f"{a + b} - {c} = {a + b - c}"], [RULES[1]])
    if tier == "units":
        fact, factor, template, (lo_a, hi_a), (lo_b, hi_b), op = rng.choice(UNITS)
        a, b = rng.randint(lo_a, hi_a), rng.randint(lo_b, hi_b)
        big = a * factor
        ans = big + b if op == "add" else big - b
        sign = "+" if op == "add" else "-"
        return (template.format(a=a, b=b), ans,
                [f"{a} * {factor} = {big}", f"{big} {sign} {b} = {ans}"], [fact])
    raise ValueError(f"unknown tier {tier!r}")


TIERS = ["add1d", "add2d", "mul1x2", "add3", "expr3", "units"]

# invented names (no meaning to the base model) and the question templates of the recall tiers
NAMES = ["zorb", "blick", "quon", "flimp", "darg", "troz", "snib", "vell", "gorp", "wund", "plax", "mirv"]
RECALL_TEMPLATES = ["What is {n}?", "What number is {n}?", "What is the value of {n}?"]
TRANSFER_TEMPLATES = ["Tell me which number {n} stands for.", "If you write {n} as a number, what is it?"]
USE_TEMPLATES = ["What is {n} + {k}?", "Add {k} to {n}. What do you get?"]


def definitions(seed: int = SEED) -> dict[str, int]:
    """Each invented name's value: distinct, 3-digit, seeded."""
    rng = random.Random(f"{seed}-recall")
    values = rng.sample(range(100, 1000), len(NAMES))
    return dict(zip(NAMES, values))


def recall_rows(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """(train, test) of the recall tiers: recall in train and test, recall_t and recall_use in test only."""
    defs = definitions(seed)
    def rows(kind, templates, split):
        out = [{"question": t.format(n=n), "answer": str(v), "steps": [f"{n} = {v}"],
                "facts": [f"{n} = {v}"], "kind": kind} for n, v in defs.items() for t in templates]
        for i, r in enumerate(out):
            r["id"] = f"{kind}-{split}-{i:04d}"
        return out
    return rows("recall", RECALL_TEMPLATES, "train"), (rows("recall", RECALL_TEMPLATES, "test")
                                                       + rows("recall_t", TRANSFER_TEMPLATES, "test")
                                                       + use_rows(defs, seed))


def use_rows(defs: dict[str, int], seed: int) -> list[dict]:
    """recall_use (test only): each fact inside a one-step sum with a seeded 1-digit number."""
    rng = random.Random(f"{seed}-recall_use")
    out = []
    for n, v in defs.items():
        for t in USE_TEMPLATES:
            k = rng.randint(2, 9)
            out.append({"question": t.format(n=n, k=k), "answer": str(v + k), "steps": [f"{n} = {v}", f"{v} + {k} = {v + k}"],
                        "facts": [f"{n} = {v}"], "kind": "recall_use"})
    for i, r in enumerate(out):
        r["id"] = f"recall_use-test-{i:04d}"
    return out


def make_tier(tier: str, seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """Unique problems of one tier, split into disjoint (train, test) by question text."""
    rng = random.Random(f"{seed}-{tier}")
    n_test = N_TEST
    n_train = 40 if tier == "add1d" else N_TRAIN  # add1d has only 100 distinct problems
    seen: dict[str, tuple] = {}
    for _ in range(100_000):
        if len(seen) == n_test + n_train:
            break
        q, ans, steps, facts = _arith(tier, rng)
        seen.setdefault(q, (ans, steps, facts))
    rows = [{"question": q, "answer": str(ans), "steps": steps, "facts": facts, "kind": tier}
            for q, (ans, steps, facts) in seen.items()]
    splits = {"test": rows[:n_test], "train": rows[n_test:]}
    for split, split_rows in splits.items():
        for i, row in enumerate(split_rows):
            row["id"] = f"{tier}-{split}-{i:04d}"
    return splits["train"], splits["test"]


def knowledge_rows() -> list[dict]:
    facts = sorted({u[0] for u in UNITS})
    rows = [{"id": f"fact-{i:03d}", "text": t, "type": "fact"} for i, t in enumerate(facts)]
    rows += [{"id": f"rule-{i:03d}", "text": t, "type": "rule"} for i, t in enumerate(RULES)]
    rows += [{"id": f"def-{i:03d}", "text": f"{n} = {v}", "type": "definition"}
             for i, (n, v) in enumerate(definitions().items())]
    return rows


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key_order = ["id", "question", "answer", "steps", "facts", "kind"]
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in key_order if k in r} | r) + "\n")


def main(out_dir: Path) -> None:
    train, test = [], []
    for tier in TIERS:
        tr, te = make_tier(tier)
        train += tr
        test += te
    tr, te = recall_rows()
    train += tr
    test += te
    _write(out_dir / "synth" / "train.jsonl", train)
    _write(out_dir / "synth" / "test.jsonl", test)
    _write(out_dir / "knowledge.jsonl", knowledge_rows())
    print(f"wrote {len(train)} train / {len(test)} test rows and "
          f"{len(knowledge_rows())} knowledge rows under {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
