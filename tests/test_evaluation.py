import math
from itertools import combinations

import pytest

from aipo_lite.evaluation import bootstrap_ci, pass_at_k, pass_at_k_table


@pytest.mark.parametrize("n, c, k", [(8, 0, 1), (8, 3, 1), (8, 3, 4), (8, 5, 4), (8, 8, 8), (10, 1, 10), (16, 2, 5)])
def test_pass_at_k_is_the_exact_combinatorial_probability(n, c, k):
    # brute force: probability that a random k-subset of n samples holds a correct one
    samples = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), k))
    brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_large_n_is_exact():
    n, c, k = 5000, 7, 64
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)  # exact integers, then one division
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)
    assert pass_at_k(n, 1, 1) == pytest.approx(1 / n)
    assert pass_at_k(n, c, 1) == pytest.approx(c / n)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError):
        pass_at_k(8, 9, 1)
    with pytest.raises(ValueError):
        pass_at_k(8, 1, 9)


def test_bootstrap_interval_contains_the_mean_and_is_deterministic():
    values = [0.0] * 30 + [1.0] * 10
    lo, hi = bootstrap_ci(values, 2000, seed=1)
    assert lo < 0.25 < hi and 0.1 < lo and hi <= 0.42
    assert bootstrap_ci(values, 2000, seed=1) == (lo, hi)
    assert bootstrap_ci([0.5], 100) == (0.5, 0.5)


def test_table_per_tier_and_overall():
    problems = [{"kind": "a", "n": 4, "correct": 4}, {"kind": "a", "n": 4, "correct": 0},
                {"kind": "b", "n": 4, "correct": 1}]
    table = pass_at_k_table(problems, [1, 4], bootstrap_samples=0)
    assert table["a"]["pass@1"]["mean"] == 0.5 and table["a"]["pass@4"]["mean"] == 0.5
    assert table["b"]["pass@1"]["mean"] == 0.25 and table["b"]["pass@4"]["mean"] == 1.0
    assert table["all"]["pass@1"]["mean"] == pytest.approx(1.25 / 3)
    assert table["all"]["pass@1"]["problems"] == 3
