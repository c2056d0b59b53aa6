"""Whatever a policy writes, the code that reads it does not raise: answer extraction, the reward,
the detector, notebook 01's error locator, and the three rule agents on every trigger.

Seeded random texts built from pieces a small model does write (numbers with leading zeros or 30
digits, operators, line breaks inside equations, tags, answer lines, \\boxed{, unicode digits and
minus). An `eval` of a sampled equation once raised SyntaxError here and stopped `make demo`; a
60 s run of this generator with that code failed within 10 s."""

import random

from aipo_lite.agents.base import Request, make_agent
from aipo_lite.rollout.consult import inline_line
from aipo_lite.rollout.detector import Detector, first_error_char, route
from aipo_lite.tasks.loading import load_tasks
from aipo_lite.tasks.rewards import extract_answer, score

PIECES = ["0", "1", "2", "7", "08", "12", "999", "-", "+", "*", " x ", "×", "=", "/", ".", ",", "\n", " ", "\t",
          "Answer:", "answer =", "**Answer**:", "\\boxed{", "}", "{", "\\frac{3}{4}", "$", "<verify>", "</verify>",
          "<knowledge>", "</knowledge>", "<reason>", "</reason>", "<feedback>", "</feedback>", "Next:", "Check:",
          "Fact:", "\u2212", "(", ")", "^", "%", "10^5", "1e9", "9" * 60, "\u00bd", "\u0663", "Step 1:", " hours", " is "]


def _text(rng: random.Random) -> str:
    text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40)))
    if rng.random() < 0.5:  # an equation-like stretch with odd spacing and numbers
        def ws():
            return rng.choice(["", " ", "\n", " \n", "\t"])

        def num():
            return rng.choice(["", "-"]) + rng.choice(["0", "7", "08", "12", "007", "999", "9" * 30])
        eq = num() + "".join(ws() + rng.choice("-+*x×") + ws() + num() for _ in range(rng.randint(1, 4)))
        eq += ws() + "=" + ws() + num()
        cut = rng.randint(0, len(text))
        text = text[:cut] + eq + text[cut:]
    return text


def test_readers_of_model_text_never_raise():
    rng = random.Random(0)
    tasks = load_tasks("synth", "test", limit_per_tier=1)
    agents = [make_agent(role) for role in ("verify", "knowledge", "reasoning")]
    detector = Detector()
    for _ in range(1500):
        text, task = _text(rng), rng.choice(tasks)
        proposed = extract_answer(text)
        extract_answer(text, "lenient")
        assert score(text, task.answer) in (0.0, 1.0)
        at = first_error_char(text, task.answer)
        assert at is None or 0 <= at <= len(text)
        route(text, task.kind)
        detector.check(text, [rng.random() * 3 for _ in range(20)], 1.0)
        inline_line(text)
        for agent in agents:
            for trigger in ("tag", "entropy", "commit"):
                reply = agent.respond(Request(task, text, query=text[-20:], trigger=trigger, proposed=proposed))
                assert reply is None or isinstance(reply, str)
