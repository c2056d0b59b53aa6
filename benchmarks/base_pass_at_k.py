"""Base-model agent-free pass@k on the test split; prints the table and throughput.

    .venv/bin/python benchmarks/base_pass_at_k.py --temperature 1.0 --n 8 [--per-tier 0]
    .venv/bin/python benchmarks/base_pass_at_k.py --n 16 --per-tier 30 --threads 1 --save base_reasoning_gym \\
        --overrides '{"tasks": "reasoning_gym:chain_sum,leg_counting,basic_arithmetic", "eval_tiers": []}'
    .venv/bin/python benchmarks/base_pass_at_k.py --n 16 --per-tier 30 --save base_gemma3 --overrides '{"model": "gemma3-270m"}'

--overrides: Config fields (another model, task source, tiers, token budget). --save NAME writes
results/NAME.json (per-problem counts; docs/results.md is generated from it).
"""

import argparse
import json
import sys
import time

from aipo_lite.config import Config
from aipo_lite.evaluation.agent_free import evaluate
from aipo_lite.experiments import results as result_files
from aipo_lite.model.policy import load_policy
from aipo_lite.tasks.loading import from_config as tasks_from_config

ap = argparse.ArgumentParser()
ap.add_argument("--temperature", type=float, default=1.0)
ap.add_argument("--n", type=int, default=8)
ap.add_argument("--per-tier", type=int, default=0, help="problems per tier, 0 = whole test split")
ap.add_argument("--batch-size", type=int, default=64)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--overrides", default="{}", help="JSON of Config fields")
ap.add_argument("--out", default="", help="write the evaluation JSON here")
ap.add_argument("--save", default="", help="write results/<NAME>.json")
ap.add_argument("--title", default="")
args = ap.parse_args()

cfg = Config(**{**dict(lora_r=0, eval_n=args.n, eval_ks=[k for k in (1, 2, 4, 8, 16, 32, 64) if k <= args.n],
                       eval_temperature=args.temperature, eval_problems_per_tier=args.per_tier,
                       eval_batch_size=args.batch_size, num_threads=args.threads), **json.loads(args.overrides)})
t0 = time.perf_counter()
policy = load_policy(cfg)
tasks = tasks_from_config(cfg, "test", cfg.eval_tiers, cfg.eval_problems_per_tier)
result = evaluate(policy, tasks, cfg)
print(f"\nbase {cfg.model}, T={cfg.eval_temperature}, n={cfg.eval_n}, {len(tasks)} problems, "
      f"dtype {result.settings['dtype']}")
print(result.table_markdown())
s = result.sampling
print(f"sampling: {s['generated_tokens']} tokens in {s['seconds']:.0f} s = {s['tokens_per_s']:.1f} tok/s "
      f"(batch {s['batch_size']}); wall {time.perf_counter() - t0:.0f} s")
if args.out:
    print("saved", result.save(args.out))
if args.save:
    tiers = sorted({t.kind for t in tasks})
    result_files.save(f"results/{args.save}.json", {"base": {"evals": [result.problems], "metrics": []}}, name=args.save,
                      title=args.title or f"Base {cfg.model}, agent-free, {cfg.tasks}", seeds=[cfg.seed],
                      command=" ".join([".venv/bin/python", *sys.argv]), tiers=tiers, ks=cfg.eval_ks,
                      protocol={k: v for k, v in cfg.to_dict().items() if k not in ("run_dir", "num_threads")},
                      dtype=cfg.dtype, device=cfg.device,
                      notes=[f"One sampling seed; the interval is over problems. {s['tokens_per_s']:.0f} tok/s."])
    print(f"wrote results/{args.save}.json")
