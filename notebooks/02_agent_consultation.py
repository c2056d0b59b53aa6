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
# # 02 · Agent consultation: what do the agents add during exploration?
#
# One batch per prompt group: `g_ind` independent rollouts (agent-free prompt, as evaluation)
# and `g_asst` assisted rollouts (a prompt that teaches the consult tags; the detector,
# verify-before-commit and the routed agent; `consult_budget` consults at most). A second run
# with `consult_budget=0` keeps the assisted prompt but no agent, to separate the prompt's
# effect from the agents'. Transcripts are coloured by token provenance. Every backend in
# `compare_backends` gets its own assisted run on the same problems and seed: `rule`
# (privileged fields, no LLM), `hf` (a local transformers model, `agent_model`, optionally
# 4-bit) and `openai` (a server at `agent_base_url`, e.g. `python -m llama_cpp.server`).

# %% tags=["parameters"]
profile = "demo"                  # preset in aipo_lite.config.PROFILES
run_dir = "../runs/notebooks/02_agent_consultation"
overrides = {}                    # any aipo_lite.Config field, e.g. {"consult_budget": 1, "guidance_form": "inline"}

# %%
import dataclasses
import json
from collections import Counter

from IPython.display import HTML, display

from aipo_lite import (Config, provenance_html, load_policy, agents_from_config,
    detector_from_config, pass_at_1_table, rollout_group, tasks_from_config)

cfg, out = Config.for_notebook(profile, run_dir, overrides)

# %%
policy = load_policy(cfg)
tasks = tasks_from_config(cfg, "test", cfg.probe_tiers, cfg.probe_problems_per_tier)
detector = detector_from_config(cfg)
runs, agents_used = {}, {}
for name, backend, budget in [(b, b, cfg.consult_budget) for b in cfg.compare_backends] + [("no agent", "rule", 0)]:
    agents = agents_from_config(dataclasses.replace(cfg, agent_backend=backend))
    groups, stats = rollout_group(policy, tasks, agents, detector, g_ind=cfg.g_ind, g_asst=cfg.g_asst,
                                  consult_budget=budget, temperature=cfg.rollout_temperature,
                                  max_new_tokens=cfg.rollout_max_new_tokens, prompt_style=cfg.prompt_style,
                                  reward_mode=cfg.reward_mode, generator=cfg.seed, guidance_form=cfg.guidance_form,
                                  concurrency=cfg.agent_concurrency if backend == "openai" else 1)
    runs[name], agents_used[name] = groups, agents
    print(f"{name}: consult_budget={budget}, {stats}")

# %% [markdown]
# ## Transcripts (white: policy, green: agent, amber: inserted tags)

# %%
first = cfg.compare_backends[0]
assisted = [r for g in runs[first] for r in g if r.assisted]
shown = [r for r in assisted if r.consults][:4] + [r for r in assisted if r.reward][:2]
display(HTML("".join(provenance_html(r, policy.tokenizer) for r in shown)))

# %% [markdown]
# ## Assisted vs independent pass@1, per tier and per consulted agent

# %%
table = {name: pass_at_1_table(groups) for name, groups in runs.items()}
for name, rows in table.items():
    print(f"== {name}" + (" (assisted prompt, consult_budget=0)" if name == "no agent" else " agents"))
    cols = list(next(iter(rows.values())))
    print(f"{'':8s}" + "".join(f"{c:>20s}" for c in cols))
    for tier, row in rows.items():
        print(f"{tier:8s}" + "".join(f"{'-' if row[c] is None else format(row[c], '.3f'):>20s}" for c in cols))
counts = {name: dict(Counter(f"{c.trigger}->{c.agent} ({c.status})" for g in runs[name] for r in g for c in r.consults))
          for name in cfg.compare_backends}
print("\nconsults by trigger and agent:", json.dumps(counts, indent=1))
print("agent faults:", {name: {role: dict(a.faults) for role, a in agents_used[name].items()} for name in cfg.compare_backends})
(out / "consultation.json").write_text(json.dumps({"pass_at_1": table, "consults": counts}, indent=1))

# %% [markdown]
# ## What this shows, and what it does not

# %%
for name, rows in table.items():
    allrow = rows.get("all", next(iter(rows.values())))
    print(f"{name}: " + ", ".join(f"{c} {'-' if v is None else format(v, '.2f')}" for c, v in allrow.items()))
print("shows: how often the policy consults, which agent answers, and the assisted rollouts' pass@1 beside the "
      "independent ones' on the same problems (the numbers above).")
print("does not show: agent-free skill (a consult helps only the rollout it is in; notebook 04 trains on them), "
      f"nor significance: {cfg.probe_problems_per_tier} problems per tier, one seed.")
