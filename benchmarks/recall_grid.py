"""Does agent guidance become agent-free skill? The arms of aipo_lite.experiments.grid on the controlled bottleneck.

    .venv/bin/python benchmarks/recall_grid.py --seeds 0 1 2 --steps 40 [--arms grpo aipo aipo_fade ...]
    .venv/bin/python benchmarks/recall_grid.py --tiers expr3 units --problems 24 --root runs/hard_grid \
        --overrides '{"rollout_max_new_tokens": 48, "eval_max_new_tokens": 48, "consult_budget": 2}' --arms grpo aipo

Trains every arm x seed on the `recall` tier (invented facts the base model cannot know, see
data/make_data.py), at equal budget: 4 problems per step, 4 rollouts per problem (grpo: all
independent; aipo: 2 independent + 2 assisted, the Reasoning agent's first step written inline
before the policy starts, i.e. the fact; the other arms are aipo with one change, see
aipo_lite/grid.py ARMS). Runs resume (re-running skips finished ones). Each final adapter (and
the base policy) is evaluated agent-free on every test problem of `recall` (same facts) and
`recall_t` (the facts in unseen question templates), n samples each (cached under each run's evals/, keyed by what was evaluated).
Prints the table (pass@1 and pass@n: mean over seeds x problems, 95% two-level bootstrap
interval, per-seed means; mean step time; wall time per run) and each arm minus grpo and
minus aipo with the interval of the difference. `--tiers` trains (and evaluates) on other
tiers with the same protocol, e.g. the hard tiers `expr3` and `units`.
"""

import argparse
import json
import sys

from aipo_lite.arms import ARMS
from aipo_lite.config import Config
from aipo_lite.experiments import grid
from aipo_lite.experiments import results as result_files
from aipo_lite.tasks.loading import load_tasks

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
ap.add_argument("--steps", type=int, default=40)
ap.add_argument("--arms", nargs="+", default=["grpo", "aipo", "aipo_fade"], help=f"from {list(ARMS)}")
ap.add_argument("--root", default="runs/recall_grid")
ap.add_argument("--n", type=int, default=16, help="samples per test problem in the final evaluation")
ap.add_argument("--train-only", action="store_true", help="train, skip the evaluation and table")
ap.add_argument("--table-only", action="store_true", help="skip training (runs must exist): evaluate and tabulate")
ap.add_argument("--threads", type=int, default=0, help="torch threads per run (1: two grids side by side on 2 cores)")
ap.add_argument("--tiers", nargs="+", default=None,
                help="train tiers (default recall); evaluated on these (recall: plus recall_t)")
ap.add_argument("--problems", type=int, default=0, help="test problems per tier in the final evaluation; 0 = all")
ap.add_argument("--overrides", default="{}", help="JSON of Config fields on top of the grid protocol")
ap.add_argument("--save", default="", help="write the result file results/<NAME>.json (per-problem counts; docs/results.md "
                "is generated from it by python -m aipo_lite.experiments.results)")
ap.add_argument("--title", default="", help="the result file's title")
args = ap.parse_args()

tiers = args.tiers or ["recall"]
heldout = tiers + (["recall_t"] if "recall" in tiers and "recall_t" not in tiers else [])
base = Config.from_profile("demo", **{**Config().grid_overrides, "train_steps": args.steps,
                                     "train_eval_every": args.steps // 2, "train_tiers": tiers,
                                     "heldout_tiers": heldout, **json.loads(args.overrides)},
                           num_threads=args.threads)
if not args.table_only:
    grid.train_grid(base, args.arms, args.seeds, args.root, log=lambda s: print(s, flush=True))
if args.train_only:
    raise SystemExit
tests = load_tasks("synth", "test", tiers=heldout, limit_per_tier=args.problems)
results = grid.collect(base, args.arms, args.seeds, args.root, tests, args.n)
print(f"\nagent-free pass@1 and pass@{args.n} on every test problem after {args.steps} steps")
print(grid.markdown(grid.table(results, heldout, [1, args.n]), [1, args.n]))
print("\nmean step time per arm (and against grpo's):")
for arm, c in grid.cost(results).items():
    print(f"  {arm:12s} {c['s_per_step']:5.2f} s/step" + (f"  x{c['vs_grpo']:.2f}" if c["vs_grpo"] else ""))
for ref in ("grpo", "aipo"):
    if ref in args.arms:
        print(f"\nminus {ref} (pass@1, 95% two-level bootstrap of the difference)")
        for tier in heldout:
            for d in grid.differences(results, ref, tier, 1):
                print(f"  {d['arm']:12s} {tier:9s} {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"
                      f"{'  beyond the interval' if d['beyond_interval'] else ''}")
if args.save:
    path = f"results/{args.save}.json"
    result_files.save(path, results, name=args.save, title=args.title or args.save, seeds=args.seeds,
                      command=" ".join([".venv/bin/python", *sys.argv]), tiers=heldout, ks=[1, args.n],
                      protocol={k: v for k, v in base.to_dict().items() if k not in ("run_dir", "num_threads")},
                      dtype=base.dtype, device=base.device)
    print(f"wrote {path}; regenerate the tables with .venv/bin/python -m aipo_lite.experiments.results")
