import math
from itertools import combinations

import pytest

from aipo_lite.evaluation.agent_free import bootstrap_ci, pass_at_k, pass_at_k_table


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


def test_minus_is_a_paired_difference_over_the_same_problems():
    """Notebook 05's boundary verdict: model A's pass@k minus B's, problem by problem (matched by
    id, whatever the order), with a paired interval; one problem of eight is not beyond it."""
    from aipo_lite.evaluation.agent_free import EvalResult

    def result(correct, order=1):
        probs = [{"id": f"p{i}", "kind": "add3", "answer": "1", "n": 4, "correct": c, "completions": []}
                 for i, c in enumerate(correct)][::order]
        return EvalResult(probs, [1, 4], pass_at_k_table(probs, [1, 4]), {})
    a, b = result([4] * 8), result([0] * 8, order=-1)
    d = a.minus(b, 4)
    assert d["diff"] == d["lo"] == d["hi"] == 1.0 and d["beyond_interval"] and d["problems"] == 8
    one = result([4] + [0] * 7).minus(b, 4, "add3")
    assert one["diff"] == pytest.approx(1 / 8) and one["lo"] == 0.0 and not one["beyond_interval"]
    with pytest.raises(ValueError, match="same problems"):
        result([4] * 9).minus(b, 4)


def test_describe_names_the_tiers_sampling_more_does_not_lift():
    """Notebook 00's closing sentence: 'pass@k lifts every tier' only when it does; a tier where
    no sample solved anything is named as staying at pass@1."""
    from aipo_lite.evaluation.agent_free import EvalResult

    probs = ([{"id": f"a{i}", "kind": "add1d", "answer": "1", "n": 4, "correct": c, "completions": []} for i, c in enumerate([1, 2])]
             + [{"id": f"u{i}", "kind": "units", "answer": "1", "n": 4, "correct": 0, "completions": []} for i in range(2)])
    text = EvalResult(probs, [1, 4], pass_at_k_table(probs, [1, 4]), {}).describe(4)
    assert "from 0.00 (units) to 0.38 (add1d)" in text
    assert "lifts 1 of them above pass@1 (add1d 0.38 → 1.00)" in text and "units (0.00) stay where pass@1 left them" in text
    only = [p for p in probs if p["kind"] == "add1d"]
    assert "stay" not in EvalResult(only, [1, 4], pass_at_k_table(only, [1, 4]), {}).describe(4)


def test_evaluate_end_to_end_on_a_tiny_model(tiny_model_dir, tmp_path):
    """Plumbing only (a random model): structure, counts, JSON round trip, plot."""
    from aipo_lite.config import Config
    from aipo_lite.evaluation.agent_free import EvalResult, evaluate
    from aipo_lite.experiments.plots import plot_pass_at_k
    from aipo_lite.model.policy import load_policy
    from aipo_lite.tasks.loading import load_tasks

    cfg = Config(model=tiny_model_dir, lora_r=4, dtype="float32", eval_n=4, eval_ks=[1, 4],
                 eval_max_new_tokens=6, eval_batch_size=5, bootstrap_samples=20)
    tasks = load_tasks("synth", "test", tiers=["add1d", "units"], limit_per_tier=3)
    result = evaluate(load_policy(cfg), tasks, cfg, progress=False)
    assert [p["id"] for p in result.problems] == [t.id for t in tasks]
    assert all(p["n"] == 4 and len(p["completions"]) == 4 and p["correct"] == sum(p["rewards"])
               for p in result.problems)
    assert set(result.table) == {"add1d", "units", "all"} and result.ks == [1, 4]
    assert result.sampling["sequences"] == 24 and 0 < result.sampling["generated_tokens"] <= 24 * 6
    loaded = EvalResult.load(result.save(tmp_path / "eval.json"))
    assert loaded == result
    assert "| all | 6 |" in loaded.table_markdown()
    plot_pass_at_k({"tiny": loaded}).savefig(tmp_path / "p.png")
