# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Methods: GRPO, AIPO, ARPO, AAPO, RRL and their combinations, over seeds
#
# Every arm (`grid_arms`, defined in `aipo_lite/grid.py`) is one change of the same base config
# (`grid_overrides`: by default the controlled bottleneck of the README, where the fact a problem
# needs is only in the knowledge base) and keeps its rollouts per group and groups per step:
# **equal budget in rollouts**. AAPO's reference rollouts and ARPO's branches cost time, so the
# table also gives each arm's step time against GRPO's, and the curves the equal-wall-time view.
# Each arm runs with every seed of `grid_seeds`; the final adapters are evaluated **agent-free**
# on the held-out tiers; pass@k is the mean over seeds × problems with a 95 % two-level
# bootstrap interval (seeds, then problems). A difference counts only when the interval of the
# difference excludes 0. Each run's folder is named by arm, seed and
# its training settings: re-running with the same settings trains nothing that is done.
# The `demo` profile runs a CPU-sized slice: the headline protocol of notebook 04 (no
# `grid_overrides`), one seed, GRPO, AIPO and AIPO+ARPO. Notebook 04's runs and evaluations are
# read from its folder (same settings, same folder names), so only AIPO+ARPO trains here; one
# seed says that the parts run, not which is better. The 3-seed grid is in docs/results.md.

# %% tags=["parameters"]
profile = "demo"                  # preset in aipo_lite.config.PROFILES
run_dir = "../runs/notebooks/06_methods"
overrides = {}                    # any aipo_lite.Config field, e.g. {"grid_arms": ["grpo", "aipo"], "grid_seeds": [0, 1, 2]}
claims_protocol = ""              # "" = the claims table from the committed results only; else a protocol of
                                  # aipo_lite.presets.CLAIM_PROTOCOLS whose `claims_arms` x grid_seeds train here
claims_arms = []                  # e.g. ["grpo", "aapo"]: finished runs are read, new arms or seeds train

# %%
import json
from pathlib import Path

from aipo_lite import grid, Config, plot_grid_curves, plot_grid_table, tasks_from_config

cfg, out = Config.for_notebook(profile, run_dir, overrides)
base = grid.base_config(cfg)
# notebook 04's folder if it holds runs of these very settings (folders are named by them): the
# arms it lacks are trained into it; else everything is trained here
root = grid.runs_root(base, cfg.grid_arms, cfg.grid_seeds, Path(cfg.run_dir).parent / "04_training", out)
print("runs from and into:", root)
for arm in cfg.grid_arms:
    print(f"{arm:12s} -> {grid.arm_config(base, arm, 0, root).method}")

# %%
grid.train_grid(base, cfg.grid_arms, cfg.grid_seeds, root, subprocess_runs=False)

# %% [markdown]
# ## Held-out agent-free pass@k per arm

# %%
n = cfg.grid_eval_n
tests = tasks_from_config(base, "test", base.heldout_tiers, cfg.grid_eval_problems_per_tier)
results = grid.collect(base, cfg.grid_arms, cfg.grid_seeds, root, tests, n)
rows = grid.table(results, base.heldout_tiers, sorted({1, n}))
print(grid.markdown(rows, sorted({1, n})))
(out / "table.json").write_text(json.dumps(rows, indent=1))

# %% [markdown]
# ## Which differences are larger than the intervals? (pass@1, each arm minus GRPO and minus AIPO)

# %%
diffs, done = [], []
for ref in ("grpo", "aipo"):
    if ref in results:  # each pair once: the arms already compared with GRPO are not compared with AIPO again
        rest = {arm: r for arm, r in results.items() if arm not in done}
        for tier in base.heldout_tiers:
            diffs += grid.differences(rest, ref, tier, 1)
        done.append(ref)
for d in diffs:
    verdict = "larger than the interval" if d["beyond_interval"] else "within noise"
    print(f"{d['arm']:12s} - {d['minus']:5s} {d['tier']:9s} {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]  {verdict}")
(out / "differences.json").write_text(json.dumps(diffs, indent=1))

# %% [markdown]
# ## Per-step cost against GRPO

# %%
cost = grid.cost(results)
for arm, c in cost.items():
    print(f"{arm:12s} {c['s_per_step']:6.2f} s/step  x{c['vs_grpo']:.2f} GRPO" if c["vs_grpo"] else
          f"{arm:12s} {c['s_per_step']:6.2f} s/step")

# %%
fig = plot_grid_curves(results)
fig.savefig(out / "curves.png", dpi=120)
for tier in base.heldout_tiers:
    plot_grid_table(rows, tier).savefig(out / f"pass1_{tier}.png", dpi=120)

# %% [markdown]
# ## The claims table: each seed paper's claim, over seeds, from the committed results
#
# Read from `results/claims_*.json` (made by `benchmarks/claims.py`: ≥ 3 seeds per arm, the
# tiers chosen per claim; docs/results.md says why): nothing is retrained to draw it. With
# `claims_protocol` and `claims_arms`, the arms × `grid_seeds` of that protocol train here
# (resumable) and their file, written to this run's folder, replaces the committed one in the table.

# %%
from IPython.display import Markdown, display

from aipo_lite import claims, plot_claims

records = {r["name"]: r for r in claims.committed()}
if claims_protocol:
    new = claims.run(claims_protocol, claims_arms, cfg.grid_seeds, out / "claims" / claims_protocol,
                     out / f"claims_{claims_protocol}.json", f"notebook 06 (claims_protocol={claims_protocol!r})",
                     subprocess_runs=False)
    records[new["name"]] = new
claim_rows = claims.evaluate_all(list(records.values()))
display(Markdown(claims.markdown(list(records.values()))))
plot_claims(claim_rows).savefig(out / "claims.png", dpi=120)
verdicts = {v: sum(r["status"] == v for r in claim_rows) for v in
            ("holds", "does not hold", "inconclusive at this scale", "not run yet")}

# %% [markdown]
# ## What this shows, and what it does not

# %%
beyond = [d for d in diffs if d["beyond_interval"]]
print(f"shows: every arm of {list(results)} ran {base.train_steps} steps on the protocol and was evaluated "
      f"agent-free; {len(beyond)} of {len(diffs)} differences are beyond their interval"
      + (": " + "; ".join(f"{d['arm']} − {d['minus']} on {d['tier']} {d['diff']:+.3f}" for d in beyond) if beyond else "."))
print(f"does not show: which method is better unless the interval says so, and with {len(cfg.grid_seeds)} seed(s) and "
      f"{base.train_steps} steps it rarely can; the 3-seed grid is in docs/results.md.")
print("the claims table (committed results, >= 3 seeds): " + ", ".join(f"{n} {v}" for v, n in verdicts.items())
      + "; docs/results.md gives each claim's tier, interval, cost and why it was tested there.")
