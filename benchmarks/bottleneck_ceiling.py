"""The controlled bottleneck's numbers: base pass@1 and pass@k with and without the fact.

    .venv/bin/python benchmarks/bottleneck_ceiling.py --n 64

For each recall tier (data/make_data.py): the base policy (no LoRA) samples n completions of
every test problem's agent-free prompt (the tier's own one-shot example), at T = 1:
  none     as evaluation sees it (what training must raise)
  inline   the fact written as the first line of the answer ("zorb = 127.\\n"): the ceiling,
           what a perfect memory of the fact reaches with no other learning
Prints pass@1 and pass@k (unbiased estimator) with 95% bootstrap intervals over problems.
"""

import argparse

from aipo_lite.config import Config
from aipo_lite.engine.sampling import sample
from aipo_lite.evaluation.agent_free import bootstrap_ci, pass_at_k
from aipo_lite.model.policy import load_policy
from aipo_lite.tasks.loading import load_tasks
from aipo_lite.tasks.prompts import agent_free_prompt
from aipo_lite.tasks.rewards import score

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--n", type=int, default=64)
ap.add_argument("--tiers", nargs="+", default=["recall", "recall_t"])
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()

cfg = Config(lora_r=0, seed=args.seed)
policy = load_policy(cfg)
tok = policy.tokenizer
for tier in args.tiers:
    tasks = load_tasks("synth", "test", tiers=[tier])
    for cond in ("none", "inline"):
        prompts = [agent_free_prompt(tok, t.question, cfg.prompt_style, t.kind)
                   + (f"{t.facts[0]}.\n" if cond == "inline" else "") for t in tasks]
        outs, st = sample(policy.sampler(), tok, prompts, n=args.n, temperature=1.0, max_new_tokens=24,
                          batch_size=256, seed=args.seed, progress=False)
        correct = [sum(score(c.text, t.answer, cfg.reward_mode) for c in o) for t, o in zip(tasks, outs)]
        row = []
        for k in (1, args.n):
            vals = [pass_at_k(args.n, int(c), k) for c in correct]
            lo, hi = bootstrap_ci(vals, seed=args.seed)
            row.append(f"pass@{k} {sum(vals) / len(vals):.3f} [{lo:.3f}, {hi:.3f}]")
        print(f"{tier:9s} {cond:6s} {len(tasks)} problems x {args.n}: " + "  ".join(row)
              + f"  ({st.seconds:.0f} s)  e.g. {outs[0][0].text[:40]!r}", flush=True)
