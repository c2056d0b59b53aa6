"""Rule agents and the fault guard."""

import pytest

from aipo_lite.agents.base import Request, make_agent
from aipo_lite.agents.guard import Guarded
from aipo_lite.tasks.loading import Task, load_tasks

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
    from aipo_lite.rollout.detector import first_error_char
    from aipo_lite.tasks.equations import evaluate_expression
    assert evaluate_expression("5 -\n-2") == 7 and evaluate_expression("08 + 1") == 9
    assert evaluate_expression("2 + 3 * 4 - 6 x 2") == 2 == 2 + 3 * 4 - 6 * 2
    assert evaluate_expression("-3 × -2 - 10") == -4
    text = "46 + 68 = 114. 114 -\n41 = 72.\nAnswer: 72"
    assert first_error_char(text, "73") == text.index("114 -")
    assert first_error_char("046 + 68 = 114.\nAnswer: 114", "114") is None
    v = make_agent("verify")
    assert v.respond(Request(EXPR, "46 + 68 = 114. 114 -\n41 = 72.\nAnswer: 72\n", trigger="commit",
                             proposed="72")) == "Check: 114 - 41 = 73."


# GSM8K-style lines whose arithmetic is right: Verify must not "correct" them (the digits-only
# reader checked "000 + 2 = 1" in the first and "5 * 4 = 20" in the second).
RIGHT_LINES = [
    "1,000 + 2 = 1,002.",
    "0.5 * 4 = 2.",
    "She pays $1,200 + $300 = $1,500 in total.",
    "1, 2 + 3 = 5",                                   # a list comma glues nothing
    "He has 4 cats, 2 + 3 = 5 dogs and 1,000 fish.",
    "1,000,000 - 1 = 999,999.",
    "3.50 * 2 = 7.00",
    "It is -3 + -2 = -5 degrees.",
    "10.5 - 0.5 = 10.",
    "$12.50 / 5 = $2.50.",
    "10 / 4 = 2.5.",
    "6 ÷ 4 x 2 = 3",
    "Each pays 10 / 3 = 3.33 dollars.",               # rounded to its written places
    "The bill grows 100 + 20% = 120.",                # percentages are not read: skipped
    "So 2 + 3 = 4 + 1 = 5.",                          # a chain: '4 + 1 = 5' is the equation
    "From 10:30 + 15 = 10:45 it rains.",              # a clock time is no number here
    "2^3 + 1 = 9 and 3x + 2 = 11 and x - 3 + 2 = 5",  # no tail of an unread expression
    "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48 + 24 = 72 clips altogether.",
]
WRONG_LINES = [  # (line, Verify's correction, written in the line's own style)
    ("1,000 + 2 = 1,003.", "Check: 1,000 + 2 = 1,002."),
    ("0.5 * 4 = 3", "Check: 0.5 * 4 = 2."),
    ("She pays $1,200 + $300 = $1,600 in total.", "Check: $1,200 + $300 = $1,500."),
    ("1, 2 + 3 = 6", "Check: 2 + 3 = 5."),
    ("It is -3 + -2 = -1 degrees.", "Check: -3 + -2 = -5."),
    ("$2.50 * 3 = $7.00.", "Check: $2.50 * 3 = $7.50."),
    ("7 / 2 = 3.", "Check: 7 / 2 = 3.5."),
    ("1,000 * 1,000 = 100,000.", "Check: 1,000 * 1,000 = 1,000,000."),
    ("999 + 2 = 1000.", "Check: 999 + 2 = 1001."),
    ("0.1 + 0.2 = 0.4", "Check: 0.1 + 0.2 = 0.3."),
    ("10.5 - 0.5 = 11.", "Check: 10.5 - 0.5 = 10."),
    ("Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48 + 24 = 82 clips altogether.", "Check: 48 + 24 = 72."),
]


def test_verify_reads_numbers_as_gsm8k_writes_them():
    v = make_agent("verify")
    for line in RIGHT_LINES:
        assert v.respond(Request(EXPR, line, trigger="entropy")) == "The steps so far are correct.", line
    for line, check in WRONG_LINES:
        assert v.respond(Request(EXPR, line, trigger="entropy")) == check, line
        assert v.respond(Request(EXPR, "", query=line, trigger="tag")) == check, line
    # a correction is itself a right line
    for _line, check in WRONG_LINES:
        assert v.respond(Request(EXPR, check.removeprefix("Check: "), trigger="commit")) is None, check


def test_numbers_are_read_exactly():
    from fractions import Fraction

    from aipo_lite.tasks.equations import evaluate_expression
    assert evaluate_expression("1,000 + 0.5") == Fraction(2001, 2)
    assert evaluate_expression("$1,200 + $300") == 1500 and isinstance(evaluate_expression("0.5 * 4"), int)
    assert evaluate_expression("7 / 2") == Fraction(7, 2) and evaluate_expression("6 ÷ 4 x 2") == 3
    assert evaluate_expression("0.1 + 0.2") == Fraction(3, 10)  # exact, not 0.30000000000000004
    assert evaluate_expression("10 \u2212 3 + -2") == 5


def test_the_error_labels_of_notebook_01_do_not_misread_gsm8k_numbers():
    """detector.first_error_char reads EQUATION (integers, int(rhs)): it skips what it cannot
    read instead of labelling a piece of it ("000 + 2 = 1") as the first error."""
    from aipo_lite.rollout.detector import first_error_char
    from aipo_lite.tasks.equations import EQUATION
    assert first_error_char("1,000 + 2 = 1,002.\nAnswer: 1002", "1002") is None
    assert first_error_char("0.5 * 4 = 2.\nAnswer: 2", "2") is None
    assert first_error_char("1, 2 + 3 = 6.\nAnswer: 6", "6") == len("1, ")
    assert [m[0] for m in EQUATION.finditer("10.5 - 0.5 = 10. 1,000 + 1 = 1,001. 3 x 4 = 12.")] == ["3 x 4 = 12"]


def test_a_step_is_reached_by_its_value():
    from aipo_lite.tasks.equations import step_reached as _step_reached
    assert _step_reached("1000 + 2 = 1002", "so 1,000 + 2 = 1,002.")
    assert _step_reached("She pays $1,200 + $300 = $1,500 in total.", "1200 + 300 = 1500")
    assert _step_reached("2.5 * 2 = 5", "= $5.00")
    assert not _step_reached("a = 10", "x = 10.5")
    assert not _step_reached("a = 1,002", "x = 1,0025")
    assert not _step_reached("a = 10", "x = -10") and not _step_reached("no result", "= 3")
    gsm = Task("g1", "Natalia sold clips to 48 friends in April, and half as many in May. How many in all?", "72",
               ("Natalia sold 48/2 = 24 clips in May.", "Natalia sold 48 + 24 = 72 clips altogether in April and May."),
               (), "gsm8k")
    r = make_agent("reasoning")
    assert r.respond(Request(gsm, "")) == "Next: Natalia sold 48/2 = 24 clips in May."
    assert r.respond(Request(gsm, "48 / 2 = 24.")) == "Next: Natalia sold 48 + 24 = 72 clips altogether in April and May."
    assert r.respond(Request(gsm, "48 / 2 = 24. 48 + 24 = 72.")) == "All steps are done: Answer: 72"


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
