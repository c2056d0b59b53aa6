"""Train and evaluate the arms behind the claims table (docs/results.md, aipo_lite/experiments/claims.py).

    .venv/bin/python benchmarks/claims.py --protocol headline --arms grpo aipo drgrpo aipo_drgrpo --threads 1
    .venv/bin/python benchmarks/claims.py --protocol explore --arms grpo arpo aapo rrl aipo --threads 1

A protocol is a named set of Config fields (aipo_lite/presets.py CLAIM_PROTOCOLS: `headline`, the
facts only the agents hold; `explore`, add3, where the base policy already solves some problems).
Every arm x seed trains in its own folder under --root (resumable: re-running skips finished runs
and continues interrupted ones), one arm at a time; after each arm, every arm of this call or of the file already there whose
seeds have all finished is evaluated agent-free on the protocol's held-out problems (cached per adapter) and
results/claims_<protocol>.json is rewritten, so the file grows as arms finish and can be
committed at any point. `python -m aipo_lite.experiments.results` regenerates the tables.
"""

import argparse
import json
import sys
from pathlib import Path

from aipo_lite.arms import ARMS
from aipo_lite.config import Config
from aipo_lite.experiments import grid, headline
from aipo_lite.experiments import results as result_files
from aipo_lite.presets import CLAIM_PROTOCOLS, CLAIM_RUNS_OF
from aipo_lite.training import checkpoint

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--protocol", required=True, choices=list(CLAIM_PROTOCOLS))
ap.add_argument("--arms", nargs="+", required=True, help=f"from {list(ARMS)}")
ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
ap.add_argument("--root", default="", help="runs folder (default runs/claims/<protocol>)")
ap.add_argument("--threads", type=int, default=0, help="torch threads per run (1: two grids side by side on 2 cores)")
ap.add_argument("--dtype", default="auto")
args = ap.parse_args()
bad = [a for a in args.arms if a not in ARMS]
if bad:
    raise SystemExit(f"--arms: {bad} are not arms; choose from {list(ARMS)}")

cfg = Config.from_profile("demo", **CLAIM_PROTOCOLS[args.protocol], num_threads=args.threads, dtype=args.dtype)
root = Path(args.root or f"runs/claims/{CLAIM_RUNS_OF.get(args.protocol, args.protocol)}")
name = f"claims_{args.protocol}"
path = Path(f"results/{name}.json")


def finished(arm: str) -> bool:
    for seed in args.seeds:
        ckpt = checkpoint.latest(grid.arm_config(cfg, arm, seed, root).run_dir)
        if ckpt is None or json.loads((ckpt / "state.json").read_text())["step"] < cfg.train_steps:
            return False
    return True


def save() -> None:
    before = json.loads(path.read_text())["evals"] if path.exists() else {}
    done = [a for a in ARMS if (a in args.arms or a in before) and finished(a)]
    tests = headline.held_out(cfg)
    res = grid.collect(cfg, done, args.seeds, root, tests, cfg.grid_eval_n)
    ks = [1, cfg.grid_eval_n] if cfg.grid_eval_n <= 16 else [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= cfg.grid_eval_n]
    result_files.save(path, res, name=name, seeds=args.seeds, protocol=headline.protocol(cfg),
                      title=f"Claims protocol `{args.protocol}`: train {cfg.train_tiers}, {cfg.train_steps} steps; "
                            f"agent-free on {len(tests)} held-out problems of {cfg.heldout_tiers}",
                      command=" ".join([".venv/bin/python", *sys.argv]), tiers=cfg.heldout_tiers,
                      ks=ks, dtype=cfg.dtype, device=cfg.device,
                      notes=[f"Runs of {args.threads or 'all'} thread(s) each, two grids side by side on the "
                             "machine's 2 cores: s/step compares arms of one file, not machines."])
    rows = grid.table(res, cfg.heldout_tiers, ks)
    print(grid.markdown(rows, ks), flush=True)
    print(f"wrote {path} ({len(done)} arms: {done})", flush=True)


for arm in args.arms:
    if args.protocol in CLAIM_RUNS_OF and not finished(arm):
        raise SystemExit(f"--arms: {arm} has not finished in {root}: train it with --protocol {CLAIM_RUNS_OF[args.protocol]}")
    grid.train_grid(cfg, [arm], args.seeds, root, log=lambda s: print(s, flush=True))
    save()
