# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Agent consultation: what do the agents add during exploration?
#
# One batch per prompt group: `g_ind` independent rollouts (agent-free prompt, as evaluation)
# and `g_asst` assisted rollouts (a prompt that teaches the consult tags; the detector,
# verify-before-commit and the routed agent; `consult_budget` consults at most). A second run
# with `consult_budget=0` keeps the assisted prompt but no agent, to separate the prompt's
# effect from the agents'. Transcripts are coloured by token provenance.
# Only the `rule` agent backend exists so far (the `hf` and `openai` backends are open work).

# %% tags=["parameters"]
profile = "demo"                  # preset in aipo_lite.config.PROFILES
run_dir = "../runs/notebooks/02_agent_consultation"
overrides = {}                    # any aipo_lite.Config field, e.g. {"consult_budget": 1}

# %%
import json
from collections import Counter

import torch
from IPython.display import HTML, display

from aipo_lite.config import Config
from aipo_lite.plots import provenance_html
from aipo_lite.policy import load_policy
from aipo_lite.rollout import agents_from_config, detector_from_config, rollout_group
from aipo_lite.tasks import load_tasks

cfg, out = Config.for_notebook(profile, run_dir, overrides)

# %%
policy = load_policy(cfg)
tasks = load_tasks(cfg.tasks, "test", tiers=cfg.probe_tiers, limit_per_tier=cfg.probe_problems_per_tier)
agents, detector = agents_from_config(cfg), detector_from_config(cfg)
runs = {}
for budget in (cfg.consult_budget, 0):
    groups, stats = rollout_group(policy, tasks, agents, detector, g_ind=cfg.g_ind, g_asst=cfg.g_asst,
                                  consult_budget=budget, temperature=cfg.rollout_temperature,
                                  max_new_tokens=cfg.rollout_max_new_tokens, prompt_style=cfg.prompt_style,
                                  reward_mode=cfg.reward_mode, generator=torch.Generator().manual_seed(cfg.seed))
    runs[budget] = [r for g in groups for r in g]
    print(f"consult_budget={budget}: {stats}")

# %% [markdown]
# ## Transcripts (white: policy, green: agent, amber: inserted tags)

# %%
assisted = [r for r in runs[cfg.consult_budget] if r.assisted]
shown = [r for r in assisted if r.consults][:4] + [r for r in assisted if r.reward][:2]
display(HTML("".join(provenance_html(r, policy.tokenizer) for r in shown)))

# %% [markdown]
# ## Assisted vs independent pass@1, per tier and per consulted agent

# %%
def rate(rs):
    return sum(r.reward for r in rs) / len(rs) if rs else float("nan")

table = {}
for tier in cfg.probe_tiers:
    rs = [r for r in runs[cfg.consult_budget] if r.task.kind == tier]
    no_agent = [r for r in runs[0] if r.task.kind == tier and r.assisted]
    table[tier] = {"independent": rate([r for r in rs if not r.assisted]),
                   "assisted": rate([r for r in rs if r.assisted]),
                   "assisted_prompt_no_agent": rate(no_agent)}
    for role in agents:
        table[tier][f"assisted, consulted {role}"] = rate([r for r in rs if r.assisted and any(c.agent == role for c in r.consults)])
print(f"{'':28s}" + "".join(f"{t:>10s}" for t in table))
for key in next(iter(table.values())):
    print(f"{key:28s}" + "".join(f"{table[t][key]:10.3f}" for t in table))
counts = Counter(f"{c.trigger}->{c.agent} ({c.status})" for r in assisted for c in r.consults)
print("\nconsults by trigger and agent:", dict(counts))
print("agent faults:", {role: dict(a.faults) for role, a in agents.items()})
(out / "consultation.json").write_text(json.dumps({"pass_at_1": table, "consults": dict(counts),
                                                   "backend": cfg.agent_backend}, indent=1))
