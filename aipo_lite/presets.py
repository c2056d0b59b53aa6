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
# with 256 samples per problem for pass@k at large k (Yue et al.'s k; first run at 64, which did not
# tell the base from the trained arms: 0.90 / 0.87 / 0.91).
# `mixed`: AIPO vs SFT where RL can matter: a tier the policy explores (add3) and one only the
# agents unlock (recall, first 4 facts) trained together (12 problems each), evaluated on held-out
# add3, the trained facts in new question forms (recall_t) and inside new sums (recall_use), and a
# tier no arm trains (mul1x2: what training cost the base's breadth).
MIXED = {**EXPLORE, "train_tiers": ["add3", "recall"], "train_problems_per_tier": 12,
         "heldout_tiers": ["add3", "recall_t", "recall_use", "mul1x2"]}
# `gym`: the explore protocol on a reasoning-gym dataset where the base policy's pass@1 is ~0.2
# (basic_arithmetic, 2-3 one-digit terms, + and -; results/base_reasoning_gym.json).
GYM = {**EXPLORE, "tasks": "reasoning_gym:basic_arithmetic", "train_tiers": ["basic_arithmetic"],
       "heldout_tiers": ["basic_arithmetic"], "task_settings": {"basic_arithmetic": {
           "max_terms": 3, "max_digits": 1, "operators": ["+", "-"], "allow_parentheses": False, "allow_negation": False}}}
# `explore_80`: the explore protocol run twice as long, because at step 40 AIPO's held-out pass@1
# was still rising (0.41 at step 20, 0.52 at 40; GRPO 0.46, 0.45). Its GRPO and AIPO runs continued
# copies of the explore runs' step-40 folders (train_steps is not a training field: a resumed run
# is the run itself, checkpointed RNG included), so steps 1-40 are those runs' own.
EXPLORE_80 = {**EXPLORE, "train_steps": 80}
# `mixed_80`: the mixed runs' AIPO and SFT arms continued to 80 steps (copies of their step-40 folders
# resumed, on the kit that trained them), because at step 40 their held-out pass@1 was still rising.
MIXED_80 = {**MIXED, "train_steps": 80}
# `headline_gemma`: the headline protocol with a second policy family, Gemma 3 270M base (no chat template).
HEADLINE_GEMMA = {**HEADLINE, "model": "gemma3-270m"}
# `boundary_units`: the boundary where the base has almost none: `units` (two-step word problems that
# need a unit fact; base pass@16 0 in the 2026-11-23 hard-tier grid), trained with the explore
# protocol's fields and evaluated with 128 samples per problem (add3's base already reaches 0.90 at 64).
BOUNDARY_UNITS = {**EXPLORE, "train_tiers": ["units"], "heldout_tiers": ["units"], "grid_eval_n": 128}
# `headline_use`: the headline runs evaluated on `recall_use` (the facts inside sums never trained).
# `explore_weights`: the explore protocol again, for AIPO's coefficient against the `rllm` weight where
# that weight differs from `is` (a negative advantage on assisted rollouts, which `recall` never gives).
CLAIM_PROTOCOLS = {"headline": HEADLINE, "explore": EXPLORE, "mixed": MIXED, "headline_gemma": HEADLINE_GEMMA, "gym": GYM,
                   "explore_80": EXPLORE_80, "mixed_80": MIXED_80, "boundary_units": BOUNDARY_UNITS,
                   "boundary": {**EXPLORE, "grid_eval_n": 256},
                   "headline_use": {**HEADLINE, "heldout_tiers": ["recall_use"]}, "explore_weights": EXPLORE}
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
