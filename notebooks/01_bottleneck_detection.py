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
# # 01 · Bottleneck detection: does token entropy spike before the reasoning goes wrong?
#
# Samples real agent-free SmolLM2 rollouts on multi-step tiers, marks where each first goes
# wrong (the first false equation, else a wrong committed answer) and where the entropy
# detector (`aipo_lite.rollout.detector`, docs/methods.md §3) would first fire, then measures the
# detector as a predictor: *precision* = firings that came at or before an error / all
# firings; *recall* = errors preceded by a firing / all errors — at the config's thresholds
# and over a sweep of `detector_tau_abs`.

# %% tags=["parameters"]
profile = "demo"                  # preset in aipo_lite.config.PROFILES
run_dir = "../runs/notebooks/01_bottleneck_detection"
overrides = {}                    # any aipo_lite.Config field, e.g. {"detector_window": 4}

# %%
import json


from aipo_lite import (Config, Detector, char_to_token, describe_detection, first_entropy_firing, first_error_char,
    precision_recall, plot_entropy_traces, plot_precision_recall, load_policy, rollout_group,
    tasks_from_config)

cfg, out = Config.for_notebook(profile, run_dir, overrides)

# %% [markdown]
# ## Real rollouts with their per-token entropies

# %%
policy = load_policy(cfg)
tok = policy.tokenizer
tasks = tasks_from_config(cfg, "test", cfg.probe_tiers, cfg.probe_problems_per_tier)
groups, stats = rollout_group(policy, tasks, agents={}, detector=Detector(), g_ind=cfg.g_ind, g_asst=0,
                              temperature=cfg.rollout_temperature, max_new_tokens=cfg.rollout_max_new_tokens,
                              prompt_style=cfg.prompt_style, generator=cfg.seed)
traces = []
for r in (r for g in groups for r in g):
    err = first_error_char(r.text, r.task.answer)
    traces.append({"id": r.task.id, "kind": r.task.kind, "text": r.text, "reward": r.reward,
                   "entropies": r.entropies,
                   "error": None if err is None else char_to_token(tok, r.ids, err)})
print(f"{len(traces)} rollouts, {stats['policy_tokens']} tokens; "
      f"{sum(t['error'] is not None for t in traces)} contain an error, pass@1 {sum(t['reward'] for t in traces) / len(traces):.3f}")

# %% [markdown]
# ## Entropy traces: detector firing (dashed) and first error (red)

# %%
def fire_at(trace, tau_abs=cfg.detector_tau_abs, tau_rel=cfg.detector_tau_rel):
    return first_entropy_firing(trace["entropies"], cfg.detector_window, cfg.detector_init_tokens, tau_abs, tau_rel)

for tr in traces:
    tr["fire"] = fire_at(tr)
shown = [dict(tr, title=f"{tr['kind']}: {tr['text'][:70]!r}") for tr in traces if tr["error"] is not None][:6]
fig = plot_entropy_traces(shown, f"(tau_abs={cfg.detector_tau_abs}, tau_rel={cfg.detector_tau_rel}, w={cfg.detector_window})")
fig.savefig(out / "entropy_traces.png", dpi=120)

# %% [markdown]
# ## Precision and recall of "fires before the first error"

# %%
default = precision_recall([t["fire"] for t in traces], [t["error"] for t in traces])
print("at the config's thresholds:", default)
sweep = []
for tau_abs in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0):
    pr = precision_recall([fire_at(t, tau_abs=tau_abs) for t in traces], [t["error"] for t in traces])
    sweep.append({"label": f"τ_abs={tau_abs}", "tau_abs": tau_abs, **pr})
    print(f"tau_abs={tau_abs:.1f}  precision={pr['precision']:.2f}  recall={pr['recall']:.2f}  (tp={pr['tp']} fp={pr['fp']} fn={pr['fn']})")
fig = plot_precision_recall(sweep)
fig.savefig(out / "detector_precision_recall.png", dpi=120)
(out / "detector.json").write_text(json.dumps({"default": default, "sweep": sweep, "rollouts": len(traces),
                                               "errors": sum(t["error"] is not None for t in traces)}, indent=1))

# %% [markdown]
# ## What this shows, and what it does not

# %%
print("shows: " + describe_detection(default, sweep, [t["error"] for t in traces], cfg.detector_window,
                                    cfg.detector_init_tokens) + ".")
print("does not show: that firing there helps (notebooks 02 and 04 measure what a consult changes), nor "
      "thresholds for another model or task: tune them on your own rollouts.")
