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
#
# %% [markdown]
# # 03 · Importance-ratio clipping: how much should the policy learn from an agent's tokens?
#
# AGENT tokens were not sampled from the policy, so a plain policy gradient on them is
# off-policy. docs/methods.md §3 lists five per-token weights w on A·∇log π_θ(a_t) (stop-gradient
# on w): `sft` (1), `is` (π_θ: vanishes exactly where the policy cannot yet produce the
# token), `is_clip` (π_θ inside the PPO clip range, else 0), `luffy` (∇ of π/(π+γ)) and
# `aipo` (the span's geometric-mean probability clipped to [w_min, w_max]: no product
# collapse, no vanishing, no over-trust). The first plot shows them as functions of π_θ; the
# rest measures them on one assisted batch of the real policy.

# %% tags=["parameters"]
profile = "demo"                  # preset in aipo_lite.config.PROFILES
run_dir = "../runs/notebooks/03_importance_ratio_clipping"
overrides = {}                    # any aipo_lite.Config field, e.g. {"agent_w_min": 0.1}

# %%
import json

import matplotlib.pyplot as plt

from aipo_lite import (Config, weight_probe, plot_weight_curves, load_policy, agents_from_config,
    detector_from_config, rollout_group, tasks_from_config, to_train_seqs, claims)

cfg, out = Config.for_notebook(profile, run_dir, overrides)

# %%
fig = plot_weight_curves(cfg.agent_w_min, cfg.agent_w_max, cfg.luffy_gamma, cfg.clip_eps_low)
fig.savefig(out / "weights_vs_prob.png", dpi=120)

# %% [markdown]
# ## One assisted batch of the real policy
# Agent tokens in the training view `cfg.view`; their probability under the policy, each
# mode's weights, and the LoRA gradient norm of the agent-token loss alone (advantage +1).

# %%
policy = load_policy(cfg)
tasks = tasks_from_config(cfg, "test", cfg.probe_tiers, cfg.probe_problems_per_tier)
groups, stats = rollout_group(policy, tasks, agents_from_config(cfg), detector_from_config(cfg), g_ind=0,
                              g_asst=cfg.g_asst, consult_budget=cfg.consult_budget,
                              temperature=cfg.rollout_temperature, max_new_tokens=cfg.rollout_max_new_tokens,
                              prompt_style=cfg.prompt_style, generator=cfg.seed, guidance_form=cfg.guidance_form)
seqs = [s for s in to_train_seqs(groups, policy.tokenizer, cfg.view, cfg.credit, cfg.prompt_style)
        if any(k == 2 for k in s.kind)]
print(f"{len(seqs)} of {sum(map(len, groups))} assisted rollouts hold agent tokens")
probe = weight_probe(policy, seqs, cfg) if seqs else {}

# %%
summary = {}
if probe:
    prob = probe["aipo"]["prob"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    axes[0].hist(prob.log10().numpy(), bins=30)
    axes[0].set_xlabel("log10 π_θ(agent token)")
    axes[0].set_ylabel("tokens")
    axes[0].set_title(f"{len(prob)} agent tokens, view={cfg.view}")
    for mode, r in probe.items():
        axes[1].scatter(r["prob"], r["w"], s=6, label=mode)
        summary[mode] = {"w_mean": float(r["w"].mean()), "w_min": float(r["w"].min()),
                         "w_max": float(r["w"].max()), "grad_norm": r["grad_norm"]}
    axes[1].set_xscale("log")
    axes[1].set_xlabel("π_θ(agent token)")
    axes[1].set_ylabel("weight")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "agent_tokens.png", dpi=120)
    summary["token_prob"] = {"median": float(prob.median()), "below_0.05": float((prob < 0.05).float().mean())}
    print(f"{'mode':8s} {'w mean':>8s} {'w min':>8s} {'w max':>8s} {'grad norm':>10s}")
    for mode in probe:
        s = summary[mode]
        print(f"{mode:8s} {s['w_mean']:8.3f} {s['w_min']:8.3f} {s['w_max']:8.3f} {s['grad_norm']:10.4f}")
(out / "weights.json").write_text(json.dumps(summary, indent=1))

# %% [markdown]
# ## What this shows, and what it does not

# %%
if summary:
    tp, g = summary["token_prob"], {m: summary[m]["grad_norm"] for m in probe}
    print(f"shows: median π of the agent's tokens {tp['median']:.3f}, {tp['below_0.05']:.0%} below 0.05; gradient "
          "norm of the agent-token loss per weight: " + ", ".join(f"{m} {v:.4f}" for m, v in g.items()) + ".")
    if "is" in g:
        print(f"  a weight of π itself ('is') gives {g['is'] / max(g['aipo'], 1e-12):.2f}x the gradient of AIPO's "
              "clipped weight on these tokens" + (" (smaller: the vanishing gradient AIPO's clip avoids)."
                                                  if g["is"] < g["aipo"] else "."))
print("does not show: which weight trains best; that takes runs over seeds. The committed ones (claims table, "
      "docs/results.md, where each row says why it was tested there; agent-free pass@1):")
for c in claims.weight_claims():
    print(f"  {c['arm']} − {c['ref']} on {c['tier']} {c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}] over {c['seeds']} "
          f"seeds ({c['protocol_model']}): {c['status']}" if "diff" in c else f"  {c['arm']} − {c['ref']}: {c['status']}")
