"""Result files (results/*.json) and the tables generated from them (docs/results.md, the README)."""

import json
import shutil

import pytest

from aipo_lite.experiments import grid, results


def test_docs_and_readme_tables_are_the_generated_ones():
    """Nobody edits a result table by hand: regenerating from results/ changes nothing."""
    records = results.load_all()
    assert records, "results/ holds no result file"
    assert (results.ROOT / "docs" / "results.md").read_text() == results.render(records)
    readme = (results.ROOT / "README.md").read_text()
    block = readme[readme.index(results.START) + len(results.START):readme.index(results.END)]
    assert block.strip() == results.readme_block(records).strip()
    for r in records:  # every file says how it was made
        assert {"command", "date", "machine", "seeds", "source", "protocol"} <= set(r), r["name"]


def _measured():
    ev = lambda correct: [{"id": f"p{i}", "kind": "recall_t", "n": 4, "correct": c} for i, c in enumerate(correct)]
    return {"base": {"evals": [ev([0, 0, 0])], "metrics": []},
            "grpo": {"evals": [ev([0, 0, 0]), ev([0, 1, 0])], "metrics": [[{"speed/step_time": 2.0}] * 2] * 2},
            "aipo": {"evals": [ev([4, 3, 2]), ev([2, 4, 4])], "metrics": [[{"speed/step_time": 5.0}] * 2] * 2}}


def test_a_measured_file_recomputes_the_grid_table(tmp_path):
    res = _measured()
    rec = results.save(tmp_path / "r.json", res, name="r", title="t", command="c", seeds=[0, 1],
                       protocol={"train_steps": 2}, tiers=["recall_t"], ks=[1, 4], dtype="float32")
    assert json.loads((tmp_path / "r.json").read_text()) == rec and rec["source"] == "measured"
    rows, diffs = results.tables(rec, samples=200)
    assert rows == grid.table(res, ["recall_t"], [1, 4], 200)  # s/step and wall time (2 steps) included
    assert next(r for r in rows if r["arm"] == "aipo")["wall_s"] == 10.0
    aipo = next(d for d in diffs if d["arm"] == "aipo")
    assert aipo["beyond_interval"] and aipo["diff"] > 0.5
    assert "aipo − grpo on `recall_t`" in results.section(rec)


def test_write_regenerates_docs_and_readme(tmp_path):
    (tmp_path / "docs").mkdir()
    shutil.copytree(results.ROOT / "results", tmp_path / "results")
    (tmp_path / "README.md").write_text(f"intro\n{results.START}\nstale\n{results.END}\nrest\n")
    results.write(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "stale" not in text and text.startswith("intro\n") and text.endswith("rest\n") and "| result |" in text
    assert (tmp_path / "docs" / "results.md").read_text() == results.render(results.load_all(tmp_path / "results"))
    figure = tmp_path / results.CURVES  # the train-time curves, drawn from the same files, linked from results.md
    assert figure.stat().st_size > 10_000 and f"({results.CURVES.removeprefix('docs/')})" in results.render([])
    assert (results.ROOT / results.CURVES).exists()  # committed beside results.md (bytes follow matplotlib's version)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_headline_runs_end_to_end_and_continues_grpo_to_aipos_wall_time(tiny_model_dir, tmp_path, dtype):
    """The headline protocol's function on a tiny model: every arm trained and evaluated, the
    equal-wall-time GRPO continues the GRPO run (same first steps), and a committed file made
    with other settings is refused with the differing fields named."""
    from aipo_lite.config import Config
    from aipo_lite.experiments import headline
    cfg = Config.from_profile("smoke", model=tiny_model_dir, dtype=dtype, equal_wall_time=True,
                              heldout_tiers=["add1d"], grid_eval_problems_per_tier=2, grid_eval_n=2)
    res = headline.run(cfg, [0], tmp_path, arms=("grpo", "aipo"), log=lambda s: None)
    assert set(res) == {"base", "grpo", "aipo", "grpo_equal_time"}
    grpo, cont = res["grpo"]["metrics"][0], res["grpo_equal_time"]["metrics"][0]
    assert cont[:len(grpo)] == grpo and len(cont) >= len(grpo)
    rows, diffs = headline.summary(res, cfg, samples=50)
    assert {r["arm"] for r in rows} == set(res) and all(len(r["pass@1"]["per_seed"]) == 1 for r in rows)
    assert {d["minus"] for d in diffs} == {"grpo"}  # no SFT arm: no SFT − AIPO
    record, mismatch = headline.committed(cfg)
    assert record is None or any(m.startswith("model:") for m in mismatch)


def test_the_demo_finds_its_committed_seeds_for_either_policy_family():
    """make demo's notebook 04 shows its live seed beside the committed 3 seeds of its very
    protocol: the file exists for the demo as shipped and for model='gemma3-270m' (a field added
    after a file was made counts as its default there); another learning rate finds none."""
    from aipo_lite.config import Config
    from aipo_lite.experiments import headline
    assert headline.committed(Config.from_profile("demo"))[1] == []
    record, mismatch = headline.committed(Config.from_profile("demo", model="gemma3-270m"))
    assert mismatch == [] and record["protocol"]["model"] == "gemma3-270m"
    record, mismatch = headline.committed(Config.from_profile("demo", learning_rate=1e-4))
    assert record["name"] == headline.RESULT and mismatch == ["learning_rate: committed 0.0005, asked 0.0001"]
    text = headline.what_this_shows([], [], None, Config.from_profile("demo", model="gemma3-270m", train_tiers=["add3"]))
    assert "`gemma3-270m`" in text and "tiers add3" in text and "by construction" not in text  # its own settings


def test_the_demo_states_sft_against_aipo_from_its_own_interval():
    """Notebook 04's closing cell says whether SFT − AIPO is beyond its interval in this seed,
    from the numbers (a Gemma demo had SFT 0.85 against AIPO 0.05: not 'cannot separate')."""
    from aipo_lite.config import Config
    from aipo_lite.experiments import grid, headline
    cfg = Config.from_profile("demo")
    tier = cfg.heldout_tiers[0]
    seed = lambda correct: [[{"n": 16, "correct": correct, "kind": tier} for _ in range(8)]]  # 8 problems
    res = {arm: {"evals": seed(c), "metrics": []} for arm, c in (("grpo", 0), ("aipo", 1), ("sft", 15))}
    assert grid.per_seed_values(res["sft"]["evals"], tier, 1) == [[15 / 16] * 8]
    rows, diffs = headline.summary(res, cfg, samples=200)
    sa = next(d for d in diffs if (d["arm"], d["minus"]) == ("sft", "aipo"))
    assert sa["diff"] == pytest.approx(14 / 16) and sa["beyond_interval"]
    assert "SFT − AIPO +0.875 [" in headline.what_this_shows(rows, diffs, None, cfg)
    res["sft"] = res["aipo"]
    rows, diffs = headline.summary(res, cfg, samples=200)
    assert "SFT − AIPO +0.000 [+0.000, +0.000], within noise" in headline.what_this_shows(rows, diffs, None, cfg)


def test_claims_table_gives_each_claim_its_verdict_from_the_interval():
    """A claim holds when the difference's interval excludes 0 in the claimed direction, does
    not hold when it excludes 0 the other way, is inconclusive otherwise; a claim whose file or
    arm is missing is shown as not run yet."""
    from aipo_lite.experiments import claims
    res = _measured()
    res["sft"] = {"evals": res["aipo"]["evals"], "metrics": []}  # the same counts: difference 0
    rec = results.save("/dev/null", res, name="claims_headline", title="t", command="c", seeds=[0, 1],
                       protocol={"train_steps": 2}, tiers=["recall_t"], ks=[1, 4], dtype="float32")
    by = {"claims_headline": rec}
    find = lambda arm, ref: next(c for c in claims.CLAIMS if (c["arm"], c["ref"], c["file"]) == (arm, ref, "claims_headline"))
    holds = claims.evaluate_claim(find("aipo", "grpo"), by, samples=200)
    assert holds["status"] == "holds" and holds["lo"] > 0 and holds["s_per_step"] == {"aipo": 5.0, "grpo": 2.0}
    assert holds["base_pass1"] == 0.0 and holds["wall_s"] == {"aipo": 10.0, "grpo": 4.0}
    assert claims.evaluate_claim(find("aipo", "sft"), by, samples=200)["status"] == "inconclusive at this scale"
    assert claims.evaluate_claim(find("aipo_drgrpo", "drgrpo"), by)["status"] == "not run yet"
    flipped = dict(find("aipo", "grpo"), arm="grpo", ref="aipo")
    assert claims.evaluate_claim(flipped, by, samples=200)["status"] == "does not hold"
    table = claims.markdown([rec], samples=200)
    assert table.count("**not run yet**") == len(claims.CLAIMS) - 2 and "**holds**" in table


def test_notebook_03_reads_the_weight_claims_from_the_committed_results():
    """Notebook 03's 'does not show' line: the coefficient's claims as the claims table evaluates
    them (not a sentence written once), with the model of the runs."""
    from aipo_lite.experiments import claims
    rows = claims.weight_claims()
    assert {(c["ref"], c["tier"]) for c in rows} == {("aipo_is", "recall_t"), ("aipo_is_clip", "recall_t"), ("sft", "recall_t"),
                                                    ("aipo_rllm", "recall_t"), ("aipo_rllm", "add3"), ("aipo_is", "add3")}
    table = {r["claim"]: r["status"] for r in claims.evaluate_all(claims.committed())}
    assert all(c["status"] == table[c["claim"]] and c["protocol_model"] == "smollm2" for c in rows)
