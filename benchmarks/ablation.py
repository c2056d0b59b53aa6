"""Which AIPO ingredient matters? Train one arm per cell at the same budget, compare agent-free
held-out pass@1 (docs/methods.md §3; issue 4's ablation table).

    .venv/bin/python benchmarks/ablation.py --profile demo --out runs/ablation
    .venv/bin/python benchmarks/ablation.py --profile demo --grid full --overrides '{"train_steps": 6}'

Grids (every cell shares the seed, steps, prompts and rollouts per prompt of the profile):
  oat   one-at-a-time from the AIPO defaults: each weight mode, credit=all, each baseline,
        the interactive view, consult budget 1, learning rate 5e-4, the prototype's naive form
        (w_min 0.1, credit all, mixed baseline), plain GRPO, and
        AIPO's independent rollouts alone (g_asst=0)
  full  weight mode x credit x baseline (30 cells) plus GRPO
Each cell is a resumable run under --out/<cell>; re-running skips finished cells. Prints a
markdown table (start -> end held-out pass@1 per tier, wall time) and writes ablation.json.
"""

import argparse
import itertools
import json
from pathlib import Path

from aipo_lite.config import Config
from aipo_lite.experiments.runs import arm_config, wall_time
from aipo_lite.methods import objectives as obj
from aipo_lite.training.runinfo import named_run_dir
from aipo_lite.training.trainer import train


def cells(grid: str) -> dict[str, tuple[str, dict]]:
    """name -> (arm, overrides)."""
    # g_asst=0: the AIPO arm's independent rollouts alone (GRPO on half the rollouts), the
    # control that says whether the assisted half adds or removes signal
    out = {"grpo": ("grpo", {}), "aipo(default)": ("aipo", {}), "aipo(g_asst=0)": ("aipo", {"g_asst": 0})}
    if grid == "oat":
        out |= {f"weight={w}": ("aipo", {"agent_weight": w}) for w in obj.WEIGHTS if w != "aipo"}
        out |= {"credit=all": ("aipo", {"credit": "all"})}
        out |= {f"baseline={b}": ("aipo", {"baseline": b}) for b in obj.BASELINES if b != "independent"}
        out |= {"view=interactive": ("aipo", {"view": "interactive"}),
                "consult_budget=1": ("aipo", {"consult_budget": 1}),
                "learning_rate=5e-4": ("aipo", {"learning_rate": 5e-4})}
        out |= {"naive(w_min=0.1,all,mixed)": ("aipo", {"agent_w_min": 0.1, "credit": "all", "baseline": "mixed"})}
    else:
        for w, c, b in itertools.product(obj.WEIGHTS, obj.CREDITS, obj.BASELINES):
            out[f"{w}/{c}/{b}"] = ("aipo", {"agent_weight": w, "credit": c, "baseline": b})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--grid", choices=["oat", "full"], default="oat")
    ap.add_argument("--overrides", default="{}", help="JSON dict of Config fields for every cell")
    ap.add_argument("--only", nargs="*", help="run only these cell names")
    args = ap.parse_args()
    base = Config.from_profile(args.profile, **json.loads(args.overrides))
    out = Path(args.out)
    results = {}
    for name, (arm, over) in cells(args.grid).items():
        if args.only and name not in args.only:
            continue
        cfg = arm_config(base, arm, out, **over)
        cfg = named_run_dir(cfg, out, name.replace("/", "_"))  # folder named by cell and settings
        print(f"=== {name}", flush=True)
        hist = train(cfg, progress=False)
        evals = [m for m in hist if "eval/pass1" in m]
        results[name] = {"start": {k: v for k, v in evals[0].items() if k.startswith("eval/pass1")},
                         "end": {k: v for k, v in evals[-1].items() if k.startswith("eval/pass1")},
                         "wall_s": round(wall_time(hist), 1), "overrides": over, "arm": arm}
        (out / "ablation.json").write_text(json.dumps(results, indent=1))
    tiers = sorted({k for r in results.values() for k in r["end"]})
    print("\n| cell | " + " | ".join(t.replace("eval/pass1", "pass@1") for t in tiers) + " | wall s |")
    print("|---|" + "---|" * (len(tiers) + 1))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r['start'].get(t, float('nan')):.3f} → {r['end'].get(t, float('nan')):.3f}"
                                          for t in tiers) + f" | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
