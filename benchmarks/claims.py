"""Train and evaluate the arms behind the claims table (docs/results.md, aipo_lite/experiments/claims.py).

    .venv/bin/python benchmarks/claims.py --protocol headline --arms grpo aipo drgrpo aipo_drgrpo --threads 1
    .venv/bin/python benchmarks/claims.py --protocol explore --arms grpo arpo aapo rrl aipo --threads 1

A protocol is a named set of Config fields (aipo_lite/presets.py CLAIM_PROTOCOLS): `headline`
(facts only the agents hold), `explore` (add3, where the base policy already solves some
problems), `mixed` (both trained together); `boundary` and `headline_use` train nothing: they
evaluate the explore and headline runs again, at n=128 and on `recall_use`. Every arm x seed
trains in its own folder under --root (resumable: re-running skips finished runs and continues
interrupted ones), one arm at a time; after each arm, every finished arm of this call or of the
file already there is evaluated agent-free on the protocol's held-out problems (cached per
adapter) and results/claims_<protocol>.json is rewritten, so the file grows as arms finish and
can be committed at any point. `python -m aipo_lite.experiments.results` regenerates the tables.
"""

import argparse
import sys

from aipo_lite.arms import ARMS
from aipo_lite.experiments import claims
from aipo_lite.presets import CLAIM_PROTOCOLS, CLAIM_RUNS_OF

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--protocol", required=True, choices=list(CLAIM_PROTOCOLS))
ap.add_argument("--arms", nargs="+", required=True, help=f"from {list(ARMS)}")
ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
ap.add_argument("--root", default="", help="runs folder (default runs/claims/<protocol whose runs it uses>)")
ap.add_argument("--threads", type=int, default=0, help="torch threads per run (1: two grids side by side on 2 cores)")
ap.add_argument("--dtype", default="auto")
ap.add_argument("--report-to", default="none", help="trackers of every run, e.g. tensorboard (docs/metrics.md)")
args = ap.parse_args()
try:
    claims.run(args.protocol, args.arms, args.seeds, args.root or f"runs/claims/{CLAIM_RUNS_OF.get(args.protocol, args.protocol)}",
               f"results/claims_{args.protocol}.json", " ".join([".venv/bin/python", *sys.argv]), args.threads,
               args.dtype, log=lambda s: print(s, flush=True), report_to=args.report_to)
except ValueError as e:
    raise SystemExit(str(e))
