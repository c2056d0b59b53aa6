"""Independent vs assisted pass@1 with agents, consult counts, and rollout throughput.

    .venv/bin/python benchmarks/assisted_rollouts.py --tiers add3 expr3 --per-tier 16 --g 4
    .venv/bin/python benchmarks/assisted_rollouts.py --backend openai --base-url http://127.0.0.1:8080/v1

Three arms on the same problems, all at the same batch (problems x 2g rows):
  independent       agent-free prompt (as evaluation)
  assisted          assisted prompt + agents (detector, verify-before-commit, budget)
  assisted_no_agent assisted prompt, consult_budget 0 (separates the prompt's effect)
and plain `sampling.sample` at the same batch size for the throughput comparison.
"""

import argparse
import time
from collections import Counter

import torch

from aipo_lite.config import Config
from aipo_lite.engine.sampling import sample
from aipo_lite.model.policy import load_policy
from aipo_lite.rollout.groups import agents_from_config, detector_from_config, pass_at_1_table, rollout_group
from aipo_lite.tasks.loading import load_tasks
from aipo_lite.tasks.prompts import agent_free_prompt

ap = argparse.ArgumentParser()
ap.add_argument("--tiers", nargs="+", default=["add3", "expr3"])
ap.add_argument("--per-tier", type=int, default=16)
ap.add_argument("--g", type=int, default=4, help="independent and assisted rollouts per problem")
ap.add_argument("--budget", type=int, default=2)
ap.add_argument("--form", choices=["tagged", "inline"], default="tagged", help="guidance form (Config.guidance_form)")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--backend", choices=["rule", "hf", "openai"], default="rule", help="agent backend")
ap.add_argument("--base-url", default=None, help="openai backend: server base URL (default: Config's)")
ap.add_argument("--skip-baselines", action="store_true",
                help="only the assisted run (no consult_budget=0 run, no plain-sampling throughput run)")
args = ap.parse_args()

cfg = Config(lora_r=0, consult_budget=args.budget, agent_backend=args.backend, guidance_form=args.form, seed=args.seed,
             **({"agent_base_url": args.base_url} if args.base_url else {}))
policy = load_policy(cfg)
tok = policy.tokenizer
tasks = load_tasks("synth", "test", tiers=args.tiers, limit_per_tier=args.per_tier)
agents, detector = agents_from_config(cfg), detector_from_config(cfg)


def print_gpu_memory() -> None:
    """CUDA only: torch's peak allocated / reserved since the last call, and the device's memory in
    use now (mem_get_info: also what lies outside torch's allocator: graphs, cuBLAS, the context)."""
    if policy.device.type != "cuda":
        return
    free, total = torch.cuda.mem_get_info()
    print(f"gpu memory: peak allocated {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, peak reserved "
          f"{torch.cuda.max_memory_reserved() / 2**30:.1f} GiB, device in use {(total - free) / 2**30:.1f} GiB")
    torch.cuda.reset_peak_memory_stats()


for budget in (args.budget,) if args.skip_baselines else (args.budget, 0):
    t0 = time.perf_counter()
    groups, stats = rollout_group(policy, tasks, agents, detector, g_ind=args.g, g_asst=args.g,
                                  consult_budget=budget, max_new_tokens=cfg.rollout_max_new_tokens,
                                  generator=cfg.seed, guidance_form=cfg.guidance_form)
    sec = time.perf_counter() - t0
    tokens = stats["policy_tokens"] + stats["forced_tokens"]
    print(f"\n== consult_budget={budget}: {len(tasks) * 2 * args.g} rows, {tokens} tokens "
          f"({stats['forced_tokens']} forced) in {sec:.0f} s = {tokens / sec:.1f} tok/s")
    for tier, row in pass_at_1_table(groups).items():
        print(f"{tier:6s} " + " | ".join(f"{k} {v:.3f}" for k, v in row.items() if v is not None))
    print("consults (trigger, agent, status):", dict(Counter(
        (c.trigger, c.agent, c.status) for g in groups for r in g for c in r.consults)))
    print("faults:", {role: dict(a.faults) for role, a in agents.items()})
    print_gpu_memory()

if not args.skip_baselines:  # plain sampling at the same batch: the throughput reference
    prompts = [agent_free_prompt(tok, t.question) for t in tasks]
    _, st = sample(policy.sampler(), tok, prompts, n=2 * args.g, max_new_tokens=cfg.rollout_max_new_tokens,
                   batch_size=len(tasks) * 2 * args.g, seed=cfg.seed, progress=False)
    print(f"\nplain sampling, same batch ({st.batch_size}): {st.generated_tokens} tokens in "
          f"{st.seconds:.0f} s = {st.tokens_per_s:.1f} tok/s")
    print_gpu_memory()
