"""The committed result of the headline protocol: GRPO, AIPO and SFT on the guided successes, 3 seeds.

    .venv/bin/python benchmarks/headline.py --seeds 0 1 2 --threads 1 [--dtype float32]

Runs aipo_lite.experiments.headline.run (the function notebook 04 runs for one seed) with the
`demo` profile's protocol, prints the table and the differences, and writes
results/headline_recall4.json (per-problem counts); regenerate docs/results.md and the README
table with `.venv/bin/python -m aipo_lite.experiments.results`. Resumable (finished runs are read).
"""

import argparse
import sys

from aipo_lite.config import Config
from aipo_lite.experiments import grid, headline
from aipo_lite.experiments import results as result_files

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
ap.add_argument("--root", default="runs/headline")
ap.add_argument("--threads", type=int, default=0, help="torch threads per run")
ap.add_argument("--dtype", default="auto")
ap.add_argument("--no-save", action="store_true")
args = ap.parse_args()

cfg = Config.from_profile("demo", num_threads=args.threads, dtype=args.dtype)
res = headline.run(cfg, args.seeds, args.root, in_process=False, log=lambda s: print(s, flush=True))
rows, diffs = headline.summary(res, cfg)
print(grid.markdown(rows, sorted({1, cfg.grid_eval_n})))
for d in diffs:
    print(f"  {d['arm']:6s} - grpo  {d['tier']:9s} {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"
          f"{'  beyond the interval' if d['beyond_interval'] else ''}")
if not args.no_save:
    path = f"results/{headline.RESULT}.json"
    result_files.save(path, res, name=headline.RESULT, seeds=args.seeds, protocol=headline.protocol(cfg),
                      title="Headline protocol: facts only the agents hold (`recall`, 4 facts, 10 steps), asked in unseen templates (`recall_t`)",
                      command=" ".join([".venv/bin/python", *sys.argv]), tiers=cfg.heldout_tiers,
                      ks=sorted({1, cfg.grid_eval_n}),
                      dtype=cfg.dtype, device=cfg.device,
                      notes=["The same protocol and code as notebook 04 (`make demo`), which trains one seed of it live."])
    print(f"wrote {path}")
