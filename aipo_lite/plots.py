"""Figures the notebooks show. Each function returns a matplotlib Figure and draws nothing else."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .evaluation import EvalResult


def plot_pass_at_k(results: dict[str, EvalResult], tiers: list[str] | None = None,
                   title: str = "agent-free pass@k"):
    """pass@k against k (log2 axis), one panel per tier, one line per run, 95% CI bands."""
    first = next(iter(results.values()))
    tiers = tiers or list(first.table)
    fig, axes = plt.subplots(1, len(tiers), figsize=(3.2 * len(tiers), 3.0), squeeze=False,
                             sharey=True)
    for ax, tier in zip(axes[0], tiers):
        for label, res in results.items():
            if tier not in res.table:
                continue
            ks = res.ks
            rows = [res.table[tier][f"pass@{k}"] for k in ks]
            line, = ax.plot(ks, [r["mean"] for r in rows], marker="o", label=label)
            ax.fill_between(ks, [r["lo"] for r in rows], [r["hi"] for r in rows],
                            color=line.get_color(), alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(first.ks, [str(k) for k in first.ks])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("k")
        ax.set_title(tier)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("pass@k")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
