"""The bottleneck detector on synthetic entropy traces and texts."""

import pytest

from aipo_lite.rollout.detector import Detector, Trigger, entropy_fires, route


def test_entropy_needs_init_and_window_tokens():
    assert not entropy_fires([3.0] * 7, window=4, init_tokens=4, tau_abs=1.0, tau_rel=0.5)
    # flat high entropy: H_init is high too, so the relative threshold is not crossed
    assert not entropy_fires([3.0] * 8, window=4, init_tokens=4, tau_abs=1.0, tau_rel=0.5)


def test_entropy_spike_after_a_calm_start_fires():
    calm, spike = [0.2] * 4, [2.0] * 4
    assert entropy_fires(calm + spike, window=4, init_tokens=4, tau_abs=1.0, tau_rel=0.5)
    # the absolute floor: a rise from 0.2 to 0.9 clears H_init + tau_rel but not tau_abs
    assert not entropy_fires(calm + [0.9] * 4, window=4, init_tokens=4, tau_abs=1.0, tau_rel=0.5)
    # the relative margin: from a start at 1.0, 1.4 clears tau_abs but not H_init + tau_rel
    assert not entropy_fires([1.0] * 4 + [1.4] * 4, window=4, init_tokens=4, tau_abs=1.0, tau_rel=0.5)
    # only the last `window` tokens count
    assert not entropy_fires(calm + spike + [0.1] * 4, window=4, init_tokens=4, tau_abs=1.0, tau_rel=0.5)


def test_known_h_init_is_used_for_later_segments():
    assert entropy_fires([2.0] * 4, window=4, init_tokens=4, tau_abs=1.0, tau_rel=0.5, h_init=0.2)
    assert not entropy_fires([2.0] * 3, window=4, init_tokens=4, tau_abs=1.0, tau_rel=0.5, h_init=0.2)


@pytest.mark.parametrize("text, agent, query", [
    ("5 + 4 = 9. <verify>5 + 4 = 9</verify>", "verify", "5 + 4 = 9"),
    ("<knowledge>how many minutes in an hour?</knowledge>", "knowledge", "how many minutes in an hour?"),
    ("12 + 30 = 42. <reason>what next?</reason>\n", "reasoning", "what next?"),
])
def test_closed_tags_name_the_agent(text, agent, query):
    assert Detector().check(text, [], None) == Trigger("tag", agent, query)


def test_open_tag_does_not_fire():
    assert Detector(use_entropy=False).check("5 + 4 = 9. <verify>5 + 4", [], None) is None


def test_verify_before_commit():
    d = Detector(use_entropy=False)
    assert d.check("5 + 4 = 9.\nAnswer: 9\n", [], None) == Trigger("commit", "verify", "")
    assert d.check("5 + 4 = 9.\nAnswer: 9", [], None) is None      # number may go on: wait for the newline
    assert d.check("Answer: 9\nthen more text\n", [], None) is None  # fired once, at the commit
    assert Detector(use_entropy=False, verify_before_commit=False).check("Answer: 9\n", [], None) is None


def test_routing_rule():
    assert route("anything", "commit") == "verify"
    assert route("The film lasts two hours", "entropy") == "knowledge"   # no progress yet
    assert route("2 * 60 = 120. Then", "entropy") == "reasoning"
    trig = Detector().check("Hmm, the film lasts\n", [0.1] * 8 + [3.0] * 8, None)
    assert trig == Trigger("entropy", "knowledge", "")


def test_entropy_consults_land_at_line_ends_and_see_the_whole_line():
    d, spiky = Detector(), [0.1] * 8 + [3.0] * 8 + [0.1] * 8  # spike mid-line, calm at its end
    assert d.check("Hmm, the film", spiky[:16], None) is None       # mid-line: never
    assert d.check("Hmm, the film lasts two hours\n", spiky, None) == Trigger("entropy", "knowledge", "")
    assert d.check("Hmm, the film lasts two hours\n", spiky, None, since=20) is None  # spike was in an earlier line
    assert d.check("<verify>", spiky, None) is None                  # a tag's '>' is no line end


def test_first_error_finds_false_equations_then_wrong_answers():
    from aipo_lite.rollout.detector import first_error_char
    text = "46 + 68 = 114. 114 - 41 = 75.\nAnswer: 75"
    assert first_error_char(text, "73") == text.index("114 - 41")
    assert first_error_char("46 + 68 = 114.\nAnswer: 114", "73") == len("46 + 68 = 114.\n")
    assert first_error_char("46 + 68 = 114. 114 - 41 = 73.\nAnswer: 73", "73") is None
    assert first_error_char("Let me think", "73") is None


def test_first_firing_and_precision_recall():
    from aipo_lite.rollout.detector import first_entropy_firing, precision_recall
    trace = [0.2] * 4 + [2.0] * 4 + [0.1] * 4
    assert first_entropy_firing(trace, 4, 4, 1.0, 0.5) == 5  # H_init 0.2; window (0.2, 0.2, 2, 2) = 1.1 > 1.0
    assert first_entropy_firing([0.2] * 12, 4, 4, 1.0, 0.5) is None
    assert first_entropy_firing([3.0] * 3, 2, 4, 1.0, 0.5) is None  # no H_init yet
    pr = precision_recall(fires=[7, 7, None, 3, None], errors=[9, 5, 4, None, None])
    assert (pr["tp"], pr["fp"], pr["fn"]) == (1, 2, 2)
    assert pr["precision"] == 1 / 3 and pr["recall"] == 1 / 3


def test_notebook_01_measures_the_detector_the_rollouts_run():
    """first_entropy_firing (notebook 01) fires at the first token where a rollout's consult hook
    would find a firing window: H_init fixed after init_tokens, every full window after (it
    measured a stricter detector, waiting for init_tokens + window tokens, before)."""
    import random

    from aipo_lite.rollout.detector import Detector, first_entropy_firing
    rng = random.Random(0)
    for _ in range(200):
        window, init = rng.choice([2, 4, 8]), rng.choice([2, 4, 8])
        trace = [rng.uniform(0, 3) * (rng.random() < 0.3) for _ in range(rng.randint(0, 24))]
        det = Detector(window=window, init_tokens=init, tau_abs=1.2, tau_rel=0.5)
        h_init = sum(trace[:init]) / init if len(trace) >= init else None
        rollout = next((t - 1 for t in range(1, len(trace) + 1) if h_init is not None and det.entropy_due(trace[:t], h_init, t - 1)), None)
        assert first_entropy_firing(trace, window, init, 1.2, 0.5) == rollout, (trace, window, init)


def test_notebook_01_says_what_its_numbers_say():
    """The closing sentence of notebook 01: a sweep that never fires before an error is said so (not
    'trades one for the other'), and errors earlier than the detector can fire are counted."""
    from aipo_lite.rollout.detector import describe_detection, precision_recall
    errors = [3, 5, 20, None]
    none = precision_recall([25, None, None, 15], errors)
    text = describe_detection(none, [dict(none, tau_abs=1.0)], errors, window=8, init_tokens=8)
    assert "at or before 0 of the 3 first errors (recall 0.00)" in text and "precision 0.00" in text
    assert "no threshold of the sweep fires before any error" in text
    assert "cannot fire before token 7" in text and "2 of the 3 errors come earlier" in text
    some = precision_recall([15, None, 16, None], errors)
    text = describe_detection(some, [dict(some, tau_abs=1.0), dict(precision_recall([None] * 4, errors), tau_abs=3.0)],
                              errors, window=8, init_tokens=8)
    assert "recall runs 0.00–0.33 and precision 0.50–0.50" in text
    quiet = precision_recall([None] * 4, errors)
    assert "precision undefined" in describe_detection(quiet, [quiet], errors, window=2, init_tokens=1)


def test_first_error_reads_numbers_as_the_model_writes_them():
    """GSM8K-style numbers (separators, decimals, money) are not false errors in notebook 01's labels."""
    from aipo_lite.rollout.detector import first_error_char
    assert first_error_char("1,000 + 2 = 1,002.\n0.5 * 4 = 2.\n$1,200 + $300 = $1,500.\nAnswer: 1500", "1500") is None
    text = "1,000 + 2 = 1,002.\n0.5 * 4 = 3.\nAnswer: 3"
    assert first_error_char(text, "2") == text.index("0.5")
