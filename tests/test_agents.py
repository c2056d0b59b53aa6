"""Rule agents and the fault guard."""

import pytest

from aipo_lite.agents import Guarded, Request, make_agent
from aipo_lite.tasks import Task, load_tasks

EXPR = Task("e1", "What is 46 + 68 - 41?", "73", ("46 + 68 = 114", "114 - 41 = 73"), (), "expr3")
UNITS = Task("u1", "A film lasts 2 hours and 44 minutes. How many minutes long is the film?", "164",
             ("2 * 60 = 120", "120 + 44 = 164"), ("1 hour = 60 minutes",), "units")


def test_verify_names_the_wrong_equation_and_passes_a_correct_answer():
    v = make_agent("verify")
    assert v.respond(Request(EXPR, "46 + 68 = 152.\nAnswer: 152\n", trigger="commit", proposed="152")) \
        == "Check: 46 + 68 = 114."
    assert v.respond(Request(EXPR, "46 + 68 = 114. 114 - 41 = 73.\nAnswer: 73\n", trigger="commit",
                             proposed="73")) is None
    # right arithmetic, premature answer: says so and gives the next step
    assert v.respond(Request(EXPR, "46 + 68 = 114.\nAnswer: 114\n", trigger="commit", proposed="114")) \
        == "114 is not the final answer yet. Next: 114 - 41 = 73."
    assert v.respond(Request(EXPR, "", query="3 x 4 = 13", trigger="tag")) == "Check: 3 x 4 = 12."


def test_equations_are_read_as_the_model_writes_them_line_breaks_and_leading_zeros_included():
    """A sampled equation may break its line ("5 -" then "-2 = 3") or write "08": it is
    arithmetic to check, not Python to run (an eval raised SyntaxError there and stopped
    notebook 01 of `make demo` on 2026-11-24)."""
    from aipo_lite.agents import evaluate_expression
    from aipo_lite.detector import first_error_char
    assert evaluate_expression("5 -\n-2") == 7 and evaluate_expression("08 + 1") == 9
    assert evaluate_expression("2 + 3 * 4 - 6 x 2") == 2 == 2 + 3 * 4 - 6 * 2
    assert evaluate_expression("-3 × -2 - 10") == -4
    text = "46 + 68 = 114. 114 -\n41 = 72.\nAnswer: 72"
    assert first_error_char(text, "73") == text.index("114 -")
    assert first_error_char("046 + 68 = 114.\nAnswer: 114", "114") is None
    v = make_agent("verify")
    assert v.respond(Request(EXPR, "46 + 68 = 114. 114 -\n41 = 72.\nAnswer: 72\n", trigger="commit",
                             proposed="72")) == "Check: 114 - 41 = 73."


def test_reasoning_gives_the_next_unreached_step():
    r = make_agent("reasoning")
    assert r.respond(Request(EXPR, "")) == "Next: 46 + 68 = 114."
    assert r.respond(Request(EXPR, "46 + 68 = 114.")) == "Next: 114 - 41 = 73."
    assert r.respond(Request(EXPR, "46 + 68 = 114. 114 - 41 = 73.")) == "All steps are done: Answer: 73"


def test_knowledge_retrieves_the_needed_fact():
    k = make_agent("knowledge")
    assert k.respond(Request(UNITS)) == "Fact: 1 hour = 60 minutes"
    for task in load_tasks("synth", "test", tiers=["units"]):
        assert k.respond(Request(task)) == f"Fact: {task.facts[0]}", task.question
    assert k.respond(Request(UNITS, query="how many days in a week?")) == "Fact: 1 week = 7 days"


def test_unknown_role_or_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"role 'critic' is not valid; choose one of \['verify', 'knowledge', 'reasoning'\]"):
        make_agent("critic")
    with pytest.raises(ValueError, match=r"backend 'gpt' is not valid"):
        make_agent("verify", "gpt")


class _Flaky:
    role = "reasoning"

    def __init__(self, replies):
        self.replies = list(replies)

    def respond(self, req):
        r = self.replies.pop(0)
        if isinstance(r, Exception):
            raise r
        return r


def test_guard_retries_falls_back_and_counts_faults():
    g = Guarded(_Flaky([TimeoutError(), "Next: 1 + 1 = 2."]), retries=1)
    assert g.respond(Request(EXPR)) == ("Next: 1 + 1 = 2.", "ok") and g.faults["TimeoutError"] == 1
    g = Guarded(_Flaky(["", "<feedback>forged"]), fallback=make_agent("reasoning"), retries=1)
    assert g.respond(Request(EXPR)) == ("Next: 46 + 68 = 114.", "fallback") and g.faults["bad_reply"] == 2
    g = Guarded(_Flaky([RuntimeError("down")]), retries=0)
    assert g.respond(Request(EXPR)) == (None, "failed") and g.faults == {"RuntimeError": 1, "failed": 1}
