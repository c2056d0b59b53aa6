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
# # 05 · Boundary expansion: pass@k of base, GRPO and AIPO, k = 1 … 64
#
# The capability-boundary test (Yue et al. 2025; docs/methods.md §5): unbiased pass@k from
# `boundary_n` agent-free samples per held-out problem, on a log2 axis with 95% bootstrap
# intervals, and the problem-level table at the largest k: solved by base only / trained only
# / both / neither, on the held-out questions (`heldout_tiers`: in the demo, the facts asked in
# templates never trained on). RL without guidance tends to win at small k and lose at large
# k; the claim to test is that AIPO lifts the large-k end too. The trained runs are notebook
# 04's (its folder next to this one, the same settings); if they are missing they are trained
# here first.

# %% tags=["parameters"]
profile = "demo"                  # preset in aipo_lite.config.PROFILES
run_dir = "../runs/notebooks/05_boundary_expansion"
overrides = {}                    # any aipo_lite.Config field, e.g. {"boundary_n": 128}

# %%
import json
from pathlib import Path

from aipo_lite import Config, grid, solved_table, plot_pass_at_k, tasks_from_config, train

cfg, out = Config.for_notebook(profile, run_dir, overrides)
# notebook 04's runs if it trained these very settings (folders are named by them), else train here
root = grid.runs_root(cfg, ["grpo", "aipo"], [cfg.seed], Path(cfg.run_dir).parent / "04_training", out)
print("trained runs from:", root)

# %%
ks = sorted({2 ** i for i in range(cfg.boundary_n.bit_length())} | {cfg.boundary_n})  # 1, 2, 4, ... and boundary_n
tasks = tasks_from_config(cfg, "test", cfg.heldout_tiers, cfg.boundary_problems_per_tier)
results = {}
for name in ("base", "grpo", "aipo"):
    run = root / "base" if name == "base" else Path(grid.arm_config(cfg, name, cfg.seed, root).run_dir)
    if name != "base":
        train(grid.arm_config(cfg, name, cfg.seed, root))  # no-op when notebook 04 already trained these settings
    # agent-free samples of the final adapter, cached in the run folder under a key naming what was
    # sampled: notebook 04's evaluation when it asked for the same problems and n, sampled here otherwise
    results[name] = grid.final_eval_result(cfg, run, tasks, cfg.boundary_n, ks, trained=name != "base")
    print(name, results[name].table_markdown(), sep="\n")

# %%
fig = plot_pass_at_k(results, title=f"agent-free pass@k, n={cfg.boundary_n} samples per problem")
fig.savefig(out / "pass_at_k.png", dpi=120)

# %% [markdown]
# ## Problems solved at the largest k

# %%
k = ks[-1]
solved = {name: solved_table(results["base"], results[name], k) for name in ("grpo", "aipo")}
for name, rows in solved.items():
    print(f"{name} vs base at k={k}:")
    for tier, counts in rows.items():
        print(f"  {tier:6s} " + "  ".join(f"{key}: {v}" for key, v in counts.items()))
(out / "boundary.json").write_text(json.dumps({"ks": ks, "n": cfg.boundary_n,
                                              "pass_at_k": {n: r.table for n, r in results.items()},
                                              "solved_at_max_k": solved}, indent=1))
for name, r in results.items():
    r.save(out / f"eval_{name}.json")

# %% [markdown]
# ## What this shows, and what it does not

# %%
top = {name: {t: row[f"pass@{k}"]["mean"] for t, row in r.table.items()} for name, r in results.items()}
one = {name: {t: row["pass@1"]["mean"] for t, row in r.table.items()} for name, r in results.items()}
for t in top["base"]:
    print(f"{t}: pass@1 base {one['base'][t]:.2f}, grpo {one['grpo'][t]:.2f}, aipo {one['aipo'][t]:.2f}; "
          f"pass@{k} base {top['base'][t]:.2f}, grpo {top['grpo'][t]:.2f}, aipo {top['aipo'][t]:.2f}")
    d = {ref: results["aipo"].minus(results[ref], k, t) for ref in ("base", "grpo")}
    lifted = all(x["lo"] > 0 for x in d.values())
    print(f"  shows: AIPO's pass@{k} is {'above' if lifted else 'not beyond its interval above'} both the base's and "
          f"GRPO's on {t}: "
          + ", ".join(f"AIPO − {ref} {x['diff']:+.2f} [{x['lo']:+.2f}, {x['hi']:+.2f}]" for ref, x in d.items())
          + f" (95 % paired over {d['base']['problems']} problems; {solved['aipo'].get(t, {}).get('trained only', 0)} "
          "solved only after AIPO training).")
print(f"does not show: k beyond {k} (n={cfg.boundary_n} samples), other seeds (one seed here), or tasks the base "
      "model can already solve, where Yue et al.'s large-k loss of plain RLVR would be the test.")
