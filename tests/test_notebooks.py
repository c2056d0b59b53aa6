"""Notebooks: paired with jupytext, parameterized for papermill, runnable headless."""

import json

import jupytext
import pytest

from aipo_lite import run_notebooks
from aipo_lite.run_notebooks import NOTEBOOK_DIR, notebooks


def test_every_notebook_is_paired_and_parameterized():
    nbs = notebooks()
    assert [nb.name for nb in nbs][:1] == ["00_quickstart.ipynb"]
    for nb in nbs:
        ipynb, py = jupytext.read(nb), jupytext.read(nb.with_suffix(".py"))
        assert [(c.cell_type, c.source) for c in ipynb.cells] == [(c.cell_type, c.source) for c in py.cells], \
            f"{nb.name} and its .py differ: run `jupytext --sync {nb}`"
        params = [c for c in ipynb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, nb.name
        for name in ("profile", "run_dir", "overrides"):
            assert f"{name} =" in params[0].source, (nb.name, name)
        assert all(not c.get("outputs") for c in ipynb.cells if c.cell_type == "code"), \
            f"{nb.name} is committed with outputs"


def test_bad_overrides_are_rejected_before_running(capsys):
    assert run_notebooks.main(["--profile", "smoke", "--overrides", '{"eval_nn": 1}', "--out", "/nonexistent"]) == 2
    assert "unknown config field(s) ['eval_nn']" in capsys.readouterr().err
    assert run_notebooks.main(["--profile", "smoke", "--overrides", '{"eval_n": 0}', "--out", "/nonexistent"]) == 2
    assert "eval_n=0 must be >= 1" in capsys.readouterr().err


def test_unknown_notebook_names_and_reserved_overrides_run_nothing(capsys, tmp_path):
    out = tmp_path / "never"
    assert run_notebooks.main(["--profile", "smoke", "--only", "0O", "--out", str(out)]) == 2
    assert "--only ['0O'] matches no notebook" in capsys.readouterr().err
    for name in ("run_dir", "profile"):
        assert run_notebooks.main(["--profile", "smoke", "--overrides", json.dumps({name: "x"}), "--out", str(out)]) == 2
        assert f"--overrides may not set ['{name}']" in capsys.readouterr().err
    assert not out.exists()


def test_bad_papermill_parameter_fails_naming_the_field(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match=r"ConfigError: eval_top_p=2\.0 must be in \(0, 1\]"):
        pm.execute_notebook(str(NOTEBOOK_DIR / "00_quickstart.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"profile": "smoke", "overrides": {"eval_top_p": 2.0}},
                            cwd=str(NOTEBOOK_DIR), kernel_name="python3", progress_bar=False)


@pytest.mark.slow
def test_quickstart_runs_headless_with_smoke_parameters(tmp_path):
    summary = run_notebooks.run("smoke", tmp_path, only=["00"], log_output=False)
    assert [n["status"] for n in summary["notebooks"]] == ["ok"], summary
    result = json.loads((tmp_path / "00_quickstart" / "eval_base.json").read_text())
    assert set(result["table"]) == {"add1d", "add3", "all"}
    assert result["table"]["all"]["pass@1"]["problems"] == 4
    assert all(p["n"] == 2 and len(p["completions"]) == 2 for p in result["problems"])
    assert (tmp_path / "00_quickstart" / "pass_at_k_base.png").stat().st_size > 10_000
    assert (tmp_path / "00_quickstart.ipynb").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["profile"] == "smoke"


@pytest.mark.slow
def test_bottleneck_notebook_runs_headless_with_smoke_parameters(tmp_path):
    summary = run_notebooks.run("smoke", tmp_path, only=["01"], log_output=False)
    assert [n["status"] for n in summary["notebooks"]] == ["ok"], summary
    result = json.loads((tmp_path / "01_bottleneck_detection" / "detector.json").read_text())
    assert result["rollouts"] == 4 and len(result["sweep"]) == 6  # 2 probe tiers x 1 problem x g_ind 2
    assert {"precision", "recall", "tp", "fp", "fn"} <= set(result["default"])


@pytest.mark.slow
def test_consultation_notebook_runs_headless_with_smoke_parameters(tmp_path):
    summary = run_notebooks.run("smoke", tmp_path, only=["02"], log_output=False)
    assert [n["status"] for n in summary["notebooks"]] == ["ok"], summary
    result = json.loads((tmp_path / "02_agent_consultation" / "consultation.json").read_text())
    assert set(result["pass_at_1"]) == {"rule", "no agent"}  # compare_backends + the budget-0 arm
    assert set(result["pass_at_1"]["rule"]) == {"add3", "expr3", "all"}
    assert {"independent", "assisted", "consulted verify"} <= set(result["pass_at_1"]["rule"]["add3"])


@pytest.mark.slow
def test_weights_notebook_runs_headless_with_smoke_parameters(tmp_path):
    summary = run_notebooks.run("smoke", tmp_path, only=["03"], log_output=False)
    assert [n["status"] for n in summary["notebooks"]] == ["ok"], summary
    result = json.loads((tmp_path / "03_importance_ratio_clipping" / "weights.json").read_text())
    assert {"sft", "is", "is_clip", "luffy", "aipo"} <= set(result)
    assert result["sft"]["w_min"] == result["sft"]["w_max"] == 1.0
    assert 0.5 <= result["aipo"]["w_min"] <= result["aipo"]["w_max"] <= 1.0  # floored and capped
    assert (tmp_path / "03_importance_ratio_clipping" / "weights_vs_prob.png").stat().st_size > 10_000


@pytest.mark.slow
def test_training_boundary_and_methods_notebooks_share_runs_and_samples(tmp_path):
    """04 trains and evaluates; 05 draws its boundary from 04's runs and, asked for the same
    problems and n, from 04's very samples; 06 on 04's protocol (no grid_overrides) finds 04's
    runs, trains only the arm they lack (aipo+arpo) into 04's folder and tabulates every arm with
    intervals (the demo's layout)."""
    overrides = {"boundary_n": 2, "grid_overrides": {}, "grid_arms": ["grpo", "aipo", "aipo+arpo"], "grid_seeds": [0]}
    summary = run_notebooks.run("smoke", tmp_path, only=["04", "05", "06"], overrides=overrides, log_output=False)
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "ok", "ok"], summary
    training = json.loads((tmp_path / "04_training" / "training.json").read_text())
    assert {r["arm"] for r in training["rows"]} == {"base", "grpo", "aipo", "sft"}
    assert {d["arm"] for d in training["differences"]} == {"base", "aipo", "sft"}  # each minus grpo
    # the committed headline result was made with other settings than smoke's: named, not shown
    assert training["committed"] is None and training["committed_mismatch"]
    if (NOTEBOOK_DIR.parent / "results" / "headline_recall4.json").exists():
        assert any(m.startswith("train_tiers:") for m in training["committed_mismatch"])
    for arm in ("grpo", "sft", "aipo"):  # fixed metric names, a checkpoint at the end; folders named by settings
        (run,) = (tmp_path / "04_training").glob(f"{arm}-s0-*")
        steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in steps] == [0, 1, 2] and "eval/pass1" in steps[0] and "eval/pass1" in steps[-1]
        assert (run / "checkpoints" / "latest").read_text() == "step-000002"
    assert steps[-1]["train/consult_rate"] is not None  # the aipo arm consulted agents
    assert (tmp_path / "04_training" / "headline.png").stat().st_size > 10_000
    boundary = json.loads((tmp_path / "05_boundary_expansion" / "boundary.json").read_text())
    assert boundary["ks"] == [1, 2] and set(boundary["pass_at_k"]) == {"base", "grpo", "aipo"}
    assert sum(boundary["solved_at_max_k"]["aipo"]["all"].values()) == 1  # 1 held-out problem in smoke
    for arm in ("grpo", "aipo"):  # one evaluation per run: 04's, read again by 05 and 06
        (run,) = (tmp_path / "04_training").glob(f"{arm}-s0-*")
        (evaluation,) = (run / "evals").glob("final_eval-*.json")
        problems = json.loads(evaluation.read_text())["problems"]
        saved = json.loads((tmp_path / "05_boundary_expansion" / f"eval_{arm}.json").read_text())["problems"]
        assert [p["completions"] for p in saved] == [p["completions"] for p in problems]
    out = tmp_path / "06_methods"
    assert not list(out.glob("*-s0-*"))  # nothing trained in 06's own folder
    rows = json.loads((out / "table.json").read_text())
    assert {(r["arm"], r["tier"]) for r in rows} == {(a, "add3") for a in ("base", "grpo", "aipo", "aipo+arpo")}
    for r in rows:  # every cell: a mean inside its interval, one mean per seed
        assert r["pass@1"]["lo"] <= r["pass@1"]["mean"] <= r["pass@1"]["hi"]
        assert len(r["pass@1"]["per_seed"]) == r["seeds"]
    (run,) = (tmp_path / "04_training").glob("aipo+arpo-s0-*")  # the one arm 04 lacked
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps] == [0, 1, 2] and "train/arpo_branches_per_group" in steps[-1]
    assert {d["minus"] for d in json.loads((out / "differences.json").read_text())} == {"grpo", "aipo"}
    assert (out / "curves.png").stat().st_size > 10_000


@pytest.mark.slow
def test_trl_bridge_notebook_runs_headless_with_smoke_parameters(tmp_path):
    pytest.importorskip("trl")
    summary = run_notebooks.run("smoke", tmp_path, only=["07"], log_output=False)
    assert [n["status"] for n in summary["notebooks"]] == ["ok"], summary
    rows = json.loads((tmp_path / "07_trl_bridge" / "compare.json").read_text())
    assert [r["arm"] for r in rows][:2] == ["grpo", "aipo (aipo)"] and len(rows) == 6
    for r in rows:  # the side-by-side table: both paths agree on every arm
        assert r["loss_trl"] == pytest.approx(r["loss_kit"], rel=1e-5, abs=1e-6)
        assert r["grad_norm_trl"] == pytest.approx(r["grad_norm_kit"], rel=1e-5)
    logs = json.loads((tmp_path / "07_trl_bridge" / "trl_log.json").read_text())
    assert len(logs) == 2 and all("train/reward_asst" in h for h in logs)
