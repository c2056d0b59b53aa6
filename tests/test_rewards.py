import pytest

from aipo_lite.tasks.rewards import extract_answer, score


@pytest.mark.parametrize("completion, answer, expected", [
    ("3 + 4 = 7.\nAnswer: 7", "7", 1.0),
    ("Answer: 1,234", "1234", 1.0),             # thousands separator
    ("Answer: 1234", "1,234", 1.0),
    ("Answer: -5", "-5", 1.0),                  # negative
    ("Answer: \u22125", "-5", 1.0),             # unicode minus
    ("Answer: 5", "-5", 0.0),
    ("Answer: 0.5", "1/2", 1.0),                # decimal vs fraction
    ("Answer: 3/4", "0.75", 1.0),
    ("The result is \\boxed{\\frac{3}{4}}", "0.75", 1.0),
    ("Answer: 2.50", "2.5", 1.0),
    ("Answer: 42.", "42", 1.0),                 # trailing period
    ("**Answer:** 12", "12", 1.0),              # markdown bold
    ("answer: 12", "12", 1.0),
    ("Answer: 8\nQuestion: what is 4 + 5?\nAnswer: 9", "8", 1.0),  # first committed answer counts
    ("Answer: 8\nAnswer: 9", "9", 0.0),         # ... so listing answers gains nothing
    ("\\boxed{7} and later Answer: 9", "7", 1.0),
    ("3 + 4 = 7", "7", 0.0),                    # no committed answer (strict)
    ("", "7", 0.0),
    ("Answer: unknown", "7", 0.0),
])
def test_score_strict(completion, answer, expected):
    assert score(completion, answer) == expected


def test_lenient_falls_back_to_last_number():
    assert score("3 + 4 = 7", "7", "lenient") == 1.0
    assert score("first 3, then 1,200 apples.", "1200", "lenient") == 1.0
    assert score("Answer: 6\n7", "7", "lenient") == 0.0   # a committed answer still wins
    assert extract_answer("no digits here", "lenient") is None


def test_bad_mode_is_named():
    with pytest.raises(ValueError, match="reward_mode='loose'"):
        score("Answer: 1", "1", "loose")
