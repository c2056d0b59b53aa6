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
# # 04 · Training: GRPO, AIPO and SFT on what only the agents know
#
# The kit's headline protocol (`demo` profile; docs/results.md): twelve questions about four
# invented facts ("What is zorb?") whose values exist only in the agents' knowledge base. Three
# LoRA runs from the same base, seed, steps and rollouts per step: `grpo` (4 independent
# rollouts: its reward is 0, so it has no gradient), `aipo` (2 independent + 2 assisted: the
# Reasoning agent writes the fact as the first line; agent tokens weighted by `agent_weight`;
# docs/methods.md §3) and `sft` (likelihood on the assisted successes only: the distillation
# baseline). Each final adapter is then evaluated **agent-free** (plain prompt, no agents) on
# the same facts asked in question templates never trained on (`recall_t`), `grid_eval_n`
# samples per question: one seed, with a 95 % interval over questions. Beside it: the committed
# 3-seed result of the same protocol (`results/headline_recall4.json`), shown only if it was made
# with the settings asked here. With `equal_wall_time` (off in the demo, where GRPO has no
# gradient), GRPO is also continued to AIPO's training wall time (`grpo_equal_time`). Run folders
# are named by their training settings, so re-running reads finished runs and a changed override
# trains anew.

# %% tags=["parameters"]
profile = "demo"                  # preset in aipo_lite.config.PROFILES
run_dir = "../runs/notebooks/04_training"
overrides = {}                    # any aipo_lite.Config field, e.g. {"train_steps": 20, "seed": 1}

# %%
import json

from aipo_lite import Config, headline, plot_headline, plot_training_curves

cfg, out = Config.for_notebook(profile, run_dir, overrides)

# %%
results = headline.run(cfg, [cfg.seed], out)  # trains grpo, aipo, sft (in this process), then evaluates
rows, diffs = headline.summary(results, cfg)
record, mismatch = headline.committed(cfg)
committed_rows = headline.summary_of(record) if record and not mismatch else None

# %%
histories = {arm: res["metrics"][0] for arm, res in results.items() if res["metrics"]}
fig = plot_training_curves(histories)
fig.savefig(out / "training_curves.png", dpi=120)

# %% [markdown]
# The last panel is **hint reliance** (HiLL, arXiv 2604.00698; `train/hint_reliance`,
# docs/metrics.md): per token of the assisted successes each step trains, log π under the
# agent-free prompt minus under the guided context. Near 0 the policy would write the agent's
# line itself; the more negative, the more a success still rests on the guidance. GRPO has no
# assisted rollouts, so no curve.

# %%
for arm, hist in histories.items():
    vals = [m["train/hint_reliance"] for m in hist if m.get("train/hint_reliance") is not None]
    print(f"{arm:5s} hint reliance " + (f"first {vals[0]:+.2f}, last {vals[-1]:+.2f} nats/token over {len(vals)} steps"
                                        if vals else "— (no assisted successes trained)"))

# %% [markdown]
# ## Agent-free pass@1 on questions never trained on: this run beside the committed seeds

# %%
tier = cfg.heldout_tiers[0]
fig = plot_headline(rows, committed_rows, tier, title=f"{cfg.train_steps} steps, lr {cfg.learning_rate}; "
                    + (f"committed: seeds {record['seeds']}, {record.get('dtype', '?')}, {record['date']}"
                       if committed_rows else "no committed comparison"))
fig.savefig(out / "headline.png", dpi=120)
for r in rows:
    c = r["pass@1"]
    print(f"{r['arm']:5s} {r['tier']:9s} pass@1 {c['mean']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]   "
          f"pass@{cfg.grid_eval_n} {r[f'pass@{cfg.grid_eval_n}']['mean']:.3f}")
print(headline.verdict(diffs))
print(headline.verdict(diffs, "sft"))
print(headline.verdict(diffs, "sft", "aipo"))
if mismatch:
    print("The committed result is not shown: it was made with other settings:", *mismatch, sep="\n  ")
else:
    for r in committed_rows:
        c = r["pass@1"]
        print(f"committed {r['arm']:5s} {r['tier']:9s} pass@1 {c['mean']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}] "
              f"per seed {c['per_seed']}")
_ = (out / "training.json").write_text(json.dumps({"rows": rows, "differences": diffs,
                                               "committed": record["name"] if committed_rows else None,
                                               "committed_mismatch": mismatch}, indent=1))

# %% [markdown]
# ## What this shows, and what it does not

# %%
print(headline.what_this_shows(rows, diffs, committed_rows, cfg))
