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
# # 04 · Training: GRPO vs AIPO at equal budget
#
# Two LoRA runs from the same base with the same seed, steps, prompts per step and rollouts
# per prompt: `grpo` (all rollouts independent, no agents) and `aipo` (g_ind independent +
# g_asst assisted rollouts; agent tokens weighted by `agent_weight`, trained in the `view`,
# `credit` and `baseline` of the config; docs/methods.md §3). The training mix (`train_tiers`)
# includes `expr3`, where the base model's pass@k is ≈ 0 and plain GRPO gets no gradient.
# Held-out pass@1 is always agent-free (plain prompt, no tags, no detector). Assisted steps
# cost more, so a third curve continues GRPO to AIPO's wall time (`equal_wall_time`).
# Each arm trains in a folder named by its training settings (`grpo-<key>`, `aipo-<key>`): re-running
# with the same settings resumes and does not retrain; a changed override trains anew.

# %% tags=["parameters"]
profile = "demo"                  # preset in aipo_lite.config.PROFILES
run_dir = "../runs/notebooks/04_training"
overrides = {}                    # any aipo_lite.Config field, e.g. {"agent_weight": "sft", "train_steps": 20}

# %%
import gc
import json

from aipo_lite import (Config, arm_config, extend_to_wall_time, wall_time,
    plot_training_curves, train)

cfg, out = Config.for_notebook(profile, run_dir, overrides)

# %%
histories = {}
for arm in ("grpo", "aipo"):
    print(f"=== {arm}")
    # step 0 is the base model under the same seeded held-out evaluation in both arms: sampled once
    histories[arm] = train(arm_config(cfg, arm, out), start_eval=histories["grpo"][0] if histories else None)
    gc.collect()
if cfg.equal_wall_time:
    print("=== grpo continued to AIPO's wall time")
    histories["grpo_equal_time"] = extend_to_wall_time(arm_config(cfg, "grpo", out), wall_time(histories["aipo"]),
                                                       "grpo_equal_time")

# %%
fig = plot_training_curves(histories)
fig.savefig(out / "training_curves.png", dpi=120)

# %% [markdown]
# ## Held-out agent-free pass@1: start and end of each run

# %%
table = {}
for arm, hist in histories.items():
    evals = [m for m in hist if "eval/pass1" in m]
    steps = [m for m in hist if "train/reward_mean" in m]
    table[arm] = {"steps": steps[-1]["step"], "wall_s": round(wall_time(hist), 1),
                  "mean_step_s": round(wall_time(hist) / len(steps), 1),
                  "start": {k: v for k, v in evals[0].items() if k.startswith("eval/pass1")},
                  "end": {k: v for k, v in evals[-1].items() if k.startswith("eval/pass1")},
                  "zero_std_frac": sum(m["train/zero_std_frac"] for m in steps) / len(steps),
                  "consult_rate": steps[-1]["train/consult_rate"],
                  # agent calls, and those answered by the rule fallback or not at all (LLM backends)
                  "agent_calls": sum(v for m in steps for k, v in m.items() if k.startswith("agents/") and k.endswith("/calls")),
                  "agent_fallbacks": sum(v for m in steps for k, v in m.items()
                                         if k.startswith("agents/") and k.endswith(("/fallbacks", "/failed")))}
tiers = [k for k in table["aipo"]["end"]]
print(f"{'run':16s} {'steps':>5s} {'wall s':>8s} " + " ".join(f"{t.replace('eval/pass1', 'p@1'):>14s}" for t in tiers)
      + "  agent calls (fallbacks)")
for arm, row in table.items():
    print(f"{arm:16s} {row['steps']:5d} {row['wall_s']:8.0f} "
          + " ".join(f"{row['start'].get(t, float('nan')):6.3f}->{row['end'].get(t, float('nan')):6.3f}" for t in tiers)
          + f"  {row['agent_calls']} ({row['agent_fallbacks']})")
(out / "training.json").write_text(json.dumps(table, indent=1))
