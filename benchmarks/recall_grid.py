"""Does agent guidance become agent-free skill? GRPO vs AIPO on the controlled bottleneck.

    .venv/bin/python benchmarks/recall_grid.py --seeds 0 1 2 --steps 40 [--arms grpo aipo aipo_fade]

Trains every arm x seed on the `recall` tier (invented facts the base model cannot know, see
data/make_data.py), at equal budget: 4 problems per step, 4 rollouts per problem (grpo: all
independent; aipo: 2 independent + 2 assisted, the Reasoning agent's first step written inline
before the policy starts, i.e. the fact; aipo_fade: the same with the assisted share fading to
zero over the run). Runs resume (re-running skips finished ones). Each final adapter (and the
base policy) is then evaluated agent-free on every test problem of `recall` (same facts) and
`recall_t` (the facts in unseen question templates), n samples each (saved as final_eval.json,
also skipped when present); printed: pass@1 and pass@n per arm, mean over seeds x problems with
a 95% percentile-bootstrap interval over seeds x problems, and the per-seed means.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
ap.add_argument("--steps", type=int, default=40)
ap.add_argument("--arms", nargs="+", default=["grpo", "aipo", "aipo_fade"])
ap.add_argument("--root", default="runs/recall_grid")
ap.add_argument("--n", type=int, default=16, help="samples per test problem in the final evaluation")
args = ap.parse_args()

BASE = dict(train_tiers=["recall"], heldout_tiers=["recall", "recall_t"], train_steps=args.steps,
            prompts_per_step=4, consult_budget=1, detector_every_line=True, guidance_form="inline",
            rollout_max_new_tokens=16, train_eval_problems_per_tier=12, train_eval_n=4,
            train_eval_every=args.steps // 2, checkpoint_every=10, log_completions_every=0)
ARMS = {"grpo": dict(g_ind=4, g_asst=0), "aipo": dict(g_ind=2, g_asst=2),
        "aipo_fade": dict(g_ind=2, g_asst=2, guidance_fade_steps=args.steps)}

for arm in args.arms:
    for seed in args.seeds:
        run = Path(args.root) / f"{arm}-s{seed}"
        ov = json.dumps({**BASE, **ARMS[arm], "seed": seed})
        print(f"== {run}", flush=True)
        subprocess.run([sys.executable, "-m", "aipo_lite.trainer", "--profile", "demo", "--run-dir", str(run),
                        "--overrides", ov], check=True, stdout=subprocess.DEVNULL)


from aipo_lite.config import Config  # noqa: E402
from aipo_lite.evaluation import bootstrap_ci, evaluate, pass_at_k  # noqa: E402
from aipo_lite.experiments import load_trained  # noqa: E402
from aipo_lite.tasks import load_tasks  # noqa: E402

ecfg = Config.from_profile("demo", eval_n=args.n, eval_ks=[1, args.n], eval_max_new_tokens=16, bootstrap_samples=0)
tests = load_tasks("synth", "test", tiers=["recall", "recall_t"])


def final_eval(run: Path | None) -> list[dict]:
    path = (run or Path(args.root) / "base") / "final_eval.json"
    if not path.exists():
        result = evaluate(load_trained(ecfg, run), tests, ecfg, progress=False)
        result.save(path)
    return json.loads(path.read_text())["problems"]


print(f"\nagent-free pass@1 and pass@{args.n} on every test problem after {args.steps} steps "
      f"(mean over seeds x problems [95% interval]; per-seed means); mean step time")
for arm in ["base", *args.arms]:
    runs = [None] if arm == "base" else [Path(args.root) / f"{arm}-s{s}" for s in args.seeds]
    evals = [final_eval(r) for r in runs]
    cells = []
    for tier in ("recall", "recall_t"):
        for k in (1, args.n):
            per_seed = [[pass_at_k(p["n"], p["correct"], k) for p in e if p["kind"] == tier] for e in evals]
            flat = [v for vs in per_seed for v in vs]
            lo, hi = bootstrap_ci(flat, samples=2000)
            cells.append(f"{tier} pass@{k} {sum(flat) / len(flat):.3f} [{lo:.3f}, {hi:.3f}] "
                         f"({' '.join(f'{sum(vs) / len(vs):.2f}' for vs in per_seed)})")
    times = [m["step_time"] for r in runs if r for m in map(json.loads, (r / "metrics.jsonl").read_text().splitlines())
             if "step_time" in m]
    print(f"{arm:10s} " + " | ".join(cells) + (f" | {sum(times) / len(times):.1f} s/step" if times else ""))
