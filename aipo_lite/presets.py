"""Named presets of Config fields: the profiles (`demo`: the CPU main job; `grid`: notebook 06's
full method grid; `smoke`: seconds-sized, for tests) and GRID_BASE, the method grid's default
protocol (Config.grid_overrides). Plain data: config.py validates them when a Config is built."""

from __future__ import annotations

# The controlled-bottleneck protocol (docs/LOG.md): train on `recall`, evaluate on `recall` and
# `recall_t`, inline guidance of the fact at the first line, 40 steps.
GRID_BASE = dict(train_tiers=["recall"], heldout_tiers=["recall", "recall_t"], train_steps=40, prompts_per_step=4,
                 g_ind=2, g_asst=2, consult_budget=1, detector_every_line=True, guidance_form="inline",
                 rollout_max_new_tokens=16, eval_max_new_tokens=16, train_eval_problems_per_tier=12, train_eval_n=4,
                 train_eval_every=20, checkpoint_every=10, log_completions_every=0)

# The headline protocol (docs/results.md; how it was chosen: docs/LOG.md, 2026-12-07): the controlled
# bottleneck cut to its first 4 facts (12 training questions), 10 steps at lr 5e-4, evaluated
# agent-free on the same facts asked in templates never trained on (`recall_t`, 8 questions).
HEADLINE = dict(train_tiers=["recall"], train_problems_per_tier=12, heldout_tiers=["recall_t"], train_steps=10,
                learning_rate=5e-4, prompts_per_step=4, g_ind=2, g_asst=2, consult_budget=1, detector_every_line=True,
                guidance_form="inline", rollout_max_new_tokens=16, train_eval_problems_per_tier=8, train_eval_n=4,
                train_eval_every=0, checkpoint_every=5, log_completions_every=0, grid_eval_n=16,
                grid_eval_problems_per_tier=8, boundary_problems_per_tier=8, boundary_n=16, equal_wall_time=False)
# The claims table's protocol where the policy already explores (docs/results.md, claims): `add3`
# (a + b + c), where the base policy's pass@1 is ~0.1 and pass@8 ~0.45 (docs/speed.md, base
# pass@k), so most groups of 4 rollouts are all-zero (AAPO's case), successes are sparse (RRL's)
# and a wrong first line decides the answer (ARPO's branching); 40 steps at the kit's default rate
# (at the headline's 5e-4, GRPO's entropy collapsed to 0.04 by step 14 and its held-out pass@1 fell
# from 0.19 to 0.06 by step 20: docs/LOG.md), evaluated agent-free on 30 held-out add3 problems x 16 samples.
EXPLORE = dict(train_tiers=["add3"], train_problems_per_tier=0, heldout_tiers=["add3"], train_steps=40,
               learning_rate=2e-4, prompts_per_step=4, g_ind=2, g_asst=2, consult_budget=2,
               detector_every_line=True, guidance_form="inline", rollout_max_new_tokens=48,
               eval_max_new_tokens=48, train_eval_problems_per_tier=8, train_eval_n=4, train_eval_every=20,
               checkpoint_every=10, log_completions_every=0, grid_eval_n=16, grid_eval_problems_per_tier=30,
               equal_wall_time=False)
# `boundary`: the explore runs themselves (the same training fields, so the same folders), evaluated
# with 128 samples per problem for pass@k at large k (256 costs twice as much: not run).
# `mixed`: AIPO vs SFT where RL can matter: a tier the policy explores (add3) and one only the
# agents unlock (recall, first 4 facts) trained together (12 problems each), evaluated on held-out
# add3, the trained facts in new question forms (recall_t) and inside new sums (recall_use), and a
# tier no arm trains (mul1x2: what training cost the base's breadth).
MIXED = {**EXPLORE, "train_tiers": ["add3", "recall"], "train_problems_per_tier": 12,
         "heldout_tiers": ["add3", "recall_t", "recall_use", "mul1x2"]}
# `headline_gemma`: the headline protocol with a second policy family, Gemma 3 270M base (no chat template).
HEADLINE_GEMMA = {**HEADLINE, "model": "gemma3-270m"}
# `headline_use`: the headline runs evaluated on `recall_use` (the facts inside sums never trained).
# `mixed_80`: the mixed runs continued to 80 steps (copies of their step-40 folders resumed), because
# at step 40 every trained arm's held-out pass@1 was still rising (AIPO 0.08 -> 0.32 from step 20).
MIXED_80 = {**MIXED, "train_steps": 80}
CLAIM_PROTOCOLS = {"headline": HEADLINE, "explore": EXPLORE, "mixed": MIXED, "headline_gemma": HEADLINE_GEMMA,
                   "mixed_80": MIXED_80,
                   "boundary": {**EXPLORE, "grid_eval_n": 128},
                   "headline_use": {**HEADLINE, "heldout_tiers": ["recall_use"]}}
CLAIM_RUNS_OF = {"boundary": "explore", "headline_use": "headline"}  # protocols that only evaluate others' runs
# The demo's slice of the method grid: the headline protocol itself (no overrides), seed 0, so
# notebook 06 finds notebook 04's GRPO and AIPO runs and trains only the arms they lack.
DEMO_GRID: dict = {}
# The tests' slice: the 40-step protocol cut to 2 steps of 2 prompts.
SMOKE_GRID = {**GRID_BASE, "train_steps": 2, "prompts_per_step": 2, "train_eval_every": 0,
              "train_eval_problems_per_tier": 4, "train_eval_n": 2, "checkpoint_every": 2}
# Presets. `demo` is what `make demo` runs on a 2-core CPU; `smoke` is for tests.
PROFILES: dict[str, dict] = {
    "demo": dict(eval_problems_per_tier=10, eval_n=4, eval_ks=[1, 2, 4], probe_problems_per_tier=6,
                 **HEADLINE, grid_arms=["grpo", "aipo", "aipo+arpo"], grid_seeds=[0],
                 grid_overrides=DEMO_GRID),
    # `grid`: the demo with the full method grid of the README (Config's grid_* defaults: 40 steps,
    # every arm, 3 seeds, every held-out problem x 16); notebook 06 with it trains for hours on a CPU
    # (re-running reads the finished runs).
    "grid": dict(eval_problems_per_tier=10, eval_n=8, eval_ks=[1, 2, 4, 8], probe_problems_per_tier=6),
    "smoke": dict(eval_tiers=["add1d", "add3"], eval_problems_per_tier=2, eval_n=2, eval_ks=[1, 2],
                  eval_max_new_tokens=24, bootstrap_samples=50, probe_problems_per_tier=1, g_ind=2,
                  g_asst=2, rollout_max_new_tokens=24, train_tiers=["add1d", "add3"], heldout_tiers=["add3"],
                  train_steps=2, prompts_per_step=1, train_eval_every=0, train_eval_problems_per_tier=1,
                  train_eval_n=2, checkpoint_every=0, log_completions_every=1, boundary_problems_per_tier=1,
                  boundary_n=4, lora_r=4, equal_wall_time=False, grid_arms=["grpo", "aipo+rrl"], grid_seeds=[0],
                  grid_eval_n=2, grid_eval_problems_per_tier=1, grid_overrides=SMOKE_GRID),
}
