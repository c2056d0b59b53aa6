"""A figure from what a grid logged to TensorBoard (report_to="tensorboard"): one panel per tag,
one line per run folder, read back from the event files (not from metrics.jsonl).

    .venv/bin/python benchmarks/plot_tensorboard.py runs/claims/mixed docs/figures/tracking_mixed.png \\
        --tags train/reward_mean train/hint_reliance eval/pass1
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("root", help="a folder of run folders, each with its tensorboard/ events")
ap.add_argument("out", help="the figure to write")
ap.add_argument("--tags", nargs="+", default=["train/reward_mean", "train/hint_reliance", "eval/pass1"])
args = ap.parse_args()

runs = sorted(p.parent for p in Path(args.root).glob("*/tensorboard"))
if not runs:
    raise SystemExit(f"no run folder with tensorboard/ events under {args.root}")
fig, axes = plt.subplots(1, len(args.tags), figsize=(5 * len(args.tags), 3.2))
for i, run in enumerate(runs):
    ea = EventAccumulator(str(run / "tensorboard"))
    ea.Reload()
    for ax, tag in zip(axes, args.tags):
        if tag in ea.Tags()["scalars"]:
            ev = ea.Scalars(tag)
            ax.plot([e.step for e in ev], [e.value for e in ev], label=run.name.rsplit("-", 1)[0],
                    color=f"C{i % 10}", marker="o" if len(ev) < 6 else None, markersize=3)
for ax, tag in zip(axes, args.tags):
    ax.set_title(tag, fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=6)
fig.suptitle(f"TensorBoard scalars of {Path(args.root).name}/ ({len(runs)} runs, read from their event files)", fontsize=9)
fig.tight_layout()
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
fig.savefig(args.out, dpi=110)
print(f"wrote {args.out} from {len(runs)} runs")
