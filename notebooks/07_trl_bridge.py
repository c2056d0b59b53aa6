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
# # 07 · The TRL bridge: the same step through the kit's trainer and through TRL's `GRPOTrainer`
#
# Researchers who outgrow one device move to TRL (accelerate, DeepSpeed, vLLM). `aipo_lite.integrations.trl_bridge`
# carries AIPO there: TRL 1.16's `GRPOTrainer` with the kit's rollouts (independent + assisted, agents,
# provenance), its advantages (independent baseline) and its token loss (the agent-token weight on
# AGENT tokens), TRL's machinery for the rest. Here, on the same rollouts, one step's loss and LoRA
# gradient norm through both paths, side by side (fp32; they must agree to rounding), then a few
# steps of training through TRL with its own logging. By default on a tiny random model
# (`bridge_model="tiny"`: plumbing only, its rewards are replaced by a fixed 1/0 pattern so each group
# has signal); `bridge_model="smollm2"` compares on the real policy. The training at the end runs
# SmolLM2 with its real rewards.
#
# Several processes: `accelerate launch --multi_gpu --num_processes 2 -m aipo_lite.integrations.trl_bridge --profile smoke --run-dir runs/trl2`
# (on a CPU-only machine this runs two gloo processes; `tests/test_trl_bridge.py` checks that they
# keep identical adapters and log the losses of one process on the same global batches).

# %% tags=["parameters"]
profile = "demo"                  # preset in aipo_lite.config.PROFILES
run_dir = "../runs/notebooks/07_trl_bridge"
overrides = {}                    # any aipo_lite.Config field (the bridge settings below are applied on top)
bridge_model = "tiny"             # "tiny" (random 2-layer Llama, seconds) or "smollm2" (the real policy)
bridge_steps = 2                  # training steps through TRL at the end

# %%
import json
import os

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from aipo_lite import (trl_bridge, Config, load_policy, load_tasks, agrees, compare_step, make_tiny_model,
    random_adapter)

cfg, out = Config.for_notebook(profile, run_dir, overrides)
if bridge_model not in ("tiny", "smollm2"):
    raise ValueError(f"bridge_model={bridge_model!r} is not valid; choose 'tiny' or 'smollm2'")
model = {"model": make_tiny_model(out / "tiny")} if bridge_model == "tiny" else {}
# the controlled-bottleneck guidance (the agent's line written inline first), fp32, a small step
bridge = {**cfg.to_dict(), **cfg.grid_overrides, **model, "dtype": "float32", "lora_r": 4, "lora_dropout": 0.0,
          "prompts_per_step": 2, "rollout_max_new_tokens": 8 if bridge_model == "tiny" else 16, "micro_batch_size": 4,
          "run_dir": str(out / "trl")}
tasks = load_tasks("synth", "train", tiers=bridge["train_tiers"])
print(f"TRL bridge for TRL {trl_bridge.SUPPORTED_TRL}; model: {bridge_model}")

# %% [markdown]
# ## One step, both paths, same rollouts

# %%
arms = {"grpo": dict(g_ind=4, g_asst=0), **{f"aipo ({w})": dict(agent_weight=w) for w in ("aipo", "sft", "is", "is_clip", "luffy")}}
rows = []
for name, change in arms.items():
    c = Config(**{**bridge, **change})
    policy = load_policy(c)
    random_adapter(policy.model)  # non-zero, so both LoRA matrices get gradients
    r = compare_step(c, policy, tasks[:2], mixed_rewards=bridge_model == "tiny")
    rows.append({"arm": name, **{k: v for k, v in r.items() if k != "advantages"}})
print(f"{'arm':16s} {'loss kit':>11s} {'loss TRL':>11s} {'|grad| kit':>11s} {'|grad| TRL':>11s} {'max |Δgrad|':>11s} agent tokens")
for r in rows:
    print(f"{r['arm']:16s} {r['loss_kit']:11.6f} {r['loss_trl']:11.6f} {r['grad_norm_kit']:11.6f} "
          f"{r['grad_norm_trl']:11.6f} {r['max_grad_diff']:11.2e} {r['agent_tokens']}")
(out / "compare.json").write_text(json.dumps(rows, indent=1))

# %% [markdown]
# ## A few AIPO steps through TRL on the real policy (TRL's logging names; the kit's own under their metrics.jsonl names, `train/…`)
#
# SmolLM2 with its real rewards on the controlled bottleneck (`recall`): the assisted rollouts get
# the fact from the Knowledge base as their first line, the independent ones must recall it.

# %%
c = Config(**{**bridge, "model": cfg.model, "rollout_max_new_tokens": 16, "train_steps": bridge_steps})
policy = load_policy(c)
trainer = trl_bridge.AIPOGRPOTrainer(c, policy.model, policy.tokenizer, tasks,
                                     trl_bridge.grpo_config(c, str(out / "trl"), 1, save_strategy="no"))
trainer.train()
keys = ["loss", "grad_norm", "reward", "train/reward_ind", "train/reward_asst", "train/consult_rate",
        "train/agent_w_mean", "step_time"]
logs = [h for h in trainer.state.log_history if "loss" in h]
for h in logs:
    print({k: round(h[k], 4) for k in keys if k in h})
(out / "trl_log.json").write_text(json.dumps(logs, indent=1))

# %% [markdown]
# ## What this shows, and what it does not

# %%
worst = max(r["max_grad_diff"] for r in rows)
off = [r["arm"] for r in rows if not agrees(r)]
print(f"shows: one step of the kit's objective through TRL's GRPOTrainer "
      + (f"matches the kit's own loss and gradient for all {len(rows)} configurations (within fp32 summation order; "
         f"largest gradient difference {worst:.1e})" if not off else
         f"does NOT match the kit's own loss or gradient for {off} (largest gradient difference {worst:.1e}): "
         "the bridge disagrees with the trainer there")
      + f"; AIPO trains through TRL on the real policy ({len(logs)} logged steps above).")
print("does not show: TRL's speed or learning curve against the kit's trainer over a run (benchmarks/vs_trl.py).")
