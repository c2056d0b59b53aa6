"""Figures the notebooks show. Each function returns a matplotlib Figure and draws nothing else."""

from __future__ import annotations

import matplotlib.pyplot as plt

from aipo_lite.evaluation.agent_free import EvalResult
from aipo_lite.methods import objectives as obj


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


def plot_entropy_traces(traces: list[dict], threshold_note: str = "", max_traces: int = 6):
    """Token entropy of rollouts with the detector's first firing and the first error marked.

    traces: dicts with 'entropies', 'fire' (token index or None), 'error' (or None), 'title'.
    """
    traces = traces[:max_traces]
    fig, axes = plt.subplots(len(traces), 1, figsize=(8, 1.6 * len(traces)), squeeze=False, sharex=True)
    for ax, tr in zip(axes[:, 0], traces):
        ax.plot(tr["entropies"], lw=1, color="tab:blue")
        if tr.get("fire") is not None:
            ax.axvline(tr["fire"], color="tab:orange", ls="--", label="detector fires")
        if tr.get("error") is not None:
            ax.axvline(tr["error"], color="tab:red", lw=2, alpha=0.6, label="first error")
        ax.set_title(tr.get("title", ""), fontsize=8, loc="left")
        ax.set_ylabel("H (nats)", fontsize=8)
    axes[-1, 0].set_xlabel("generated token")
    handles = {}
    for ax in axes[:, 0]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles[l] = h
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="upper right", fontsize=8)
    fig.suptitle(f"token entropy of real rollouts {threshold_note}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_precision_recall(rows: list[dict], title: str = "detector: fires before the first error"):
    """Precision and recall against a swept threshold; rows: {'label', 'precision', 'recall'}."""
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot([r["recall"] for r in rows], [r["precision"] for r in rows], marker="o")
    for r in rows:
        ax.annotate(r["label"], (r["recall"], r["precision"]), fontsize=7)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


PROVENANCE_COLOURS = {0: "#eeeeee", 1: "#ffffff", 2: "#c8f7c5", 3: "#fde2a7"}  # PROMPT POLICY AGENT TEMPLATE


def provenance_html(rollout, tokenizer) -> str:
    """A rollout's generated text as HTML, each token coloured by provenance
    (white: policy, green: agent feedback, amber: tags the system inserted)."""
    import html
    spans = []
    for tok_id, prov in zip(rollout.ids, rollout.prov):
        text = html.escape(tokenizer.decode([tok_id], skip_special_tokens=True)).replace("\n", "↵<br>")
        spans.append(f'<span style="background:{PROVENANCE_COLOURS[int(prov)]}">{text}</span>')
    head = (f"<b>{html.escape(rollout.task.question)}</b> (reference {rollout.task.answer}; "
            f"reward {rollout.reward:.0f}; consults: "
            + ", ".join(f"{c.trigger}→{c.agent} ({c.status})" for c in rollout.consults) + ")")
    return f'<div style="font-family:monospace;margin:6px 0">{head}<br>{"".join(spans)}</div>'


def plot_weight_curves(w_min: float = 0.5, w_max: float = 1.0, gamma: float = 0.1, eps: float = 0.2):
    """The agent-token weights (d loss / d log pi per unit advantage) against the token's
    probability under the policy; for `aipo` a one-token span (a span uses its geometric mean)."""
    import torch

    p = torch.logspace(-4, 0, 400, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for mode in obj.WEIGHTS:
        _, w = obj.agent_token_loss(p.log(), torch.arange(len(p)), torch.ones_like(p), mode, w_min, w_max,
                                    gamma, eps, eps)
        ax.plot(p, w, label=mode, lw=2 if mode == "aipo" else 1.2)
    ax.axvspan(1e-4, 0.05, color="red", alpha=0.06)
    ax.text(1.3e-4, 0.9, "policy cannot yet\nproduce the token", fontsize=7, va="top")
    ax.set_xscale("log")
    ax.set_xlabel("π_θ(agent token)")
    ax.set_ylabel("weight w on A·∇log π")
    ax.set_ylim(-0.03, 1.08)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_training_curves(histories: dict[str, list[dict]]):
    """Reward, held-out agent-free pass@1 (by step and by wall time), consult rate and hint
    reliance (runs with assisted successes) per run."""
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.0))
    for i, (name, hist) in enumerate(histories.items()):
        st = style(i)  # own colour, line style and marker: the equal-wall-time run cannot hide GRPO's line
        steps = [m for m in hist if "train/reward_mean" in m]
        axes[0].plot([m["step"] for m in steps], [m["train/reward_mean"] for m in steps], label=name, **st)
        evals = [m for m in hist if "eval/pass1" in m]
        axes[1].plot([m["step"] for m in evals], [m["eval/pass1"] for m in evals], label=name, **st)
        clock, t = {0: 0.0}, 0.0
        for m in steps:
            t += m["speed/step_time"]
            clock[m["step"]] = t
        axes[2].plot([clock[m["step"]] / 60 for m in evals], [m["eval/pass1"] for m in evals], label=name, **st)
        axes[3].plot([m["step"] for m in steps], [m["train/consult_rate"] or 0.0 for m in steps], label=name, **st)
        hinted = [m for m in steps if m.get("train/hint_reliance") is not None]
        if hinted:
            axes[4].plot([m["step"] for m in hinted], [m["train/hint_reliance"] for m in hinted], label=name, **st)
    for ax, (x, y) in zip(axes, [("step", "rollout reward (mean)"), ("step", "held-out pass@1 (agent-free)"),
                                 ("wall time of steps (min)", "held-out pass@1 (agent-free)"),
                                 ("step", "answered consults / assisted rollout"),
                                 ("step", "hint reliance (nats/token; 0 = none)")]):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# every run gets its own colour, line style and marker, so no line hides another
STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 2)), "P"),
          ((0, (3, 1, 1, 1)), "X"), ((0, (6, 2)), "*")]


def style(i: int) -> dict:
    ls, marker = STYLES[i % len(STYLES)]
    return dict(color=f"C{i % 10}", linestyle=ls, marker=marker, markersize=4)


def plot_grid_curves(results: dict):
    """Per arm of a grid (grid.collect): rollout reward by step, held-out agent-free pass@1 by
    step and by wall time; the mean over seeds (thin lines: each seed)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
    for i, (arm, res) in enumerate((a, r) for a, r in results.items() if r["metrics"]):
        st = style(i)
        for panel, (key, by) in enumerate([("train/reward_mean", "step"), ("eval/pass1", "step"), ("eval/pass1", "wall")]):
            curves = []
            for hist in res["metrics"]:
                t, xs, ys = 0.0, [], []
                for m in hist:
                    t += m.get("speed/step_time", 0.0)
                    if m.get(key) is not None:
                        xs.append(m["step"] if by == "step" else t / 60)
                        ys.append(m[key])
                curves.append((xs, ys))
                axes[panel].plot(xs, ys, color=st["color"], linestyle=st["linestyle"], alpha=0.25, linewidth=0.8)
            n = min(len(c[1]) for c in curves)
            mean_x = [sum(c[0][j] for c in curves) / len(curves) for j in range(n)]
            mean_y = [sum(c[1][j] for c in curves) / len(curves) for j in range(n)]
            axes[panel].plot(mean_x, mean_y, label=arm if panel == 0 else None, **st)
    for ax, (x, y) in zip(axes, [("step", "rollout reward (mean over seeds)"), ("step", "held-out pass@1 (agent-free)"),
                                 ("wall time of steps (min)", "held-out pass@1 (agent-free)")]):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
    fig.legend(loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return fig


def plot_grid_table(rows: list[dict], tier: str, k: int = 1):
    """pass@k of every arm on one tier: mean over seeds x problems with its 95% interval, and
    each seed's mean as a dot."""
    rows = [r for r in rows if r["tier"] == tier]
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(rows), 3.2))
    for i, r in enumerate(rows):
        cell = r[f"pass@{k}"]
        ax.errorbar([i], [cell["mean"]], yerr=[[cell["mean"] - cell["lo"]], [cell["hi"] - cell["mean"]]],
                    fmt="o", color=f"C{i % 10}", capsize=4)
        ax.scatter([i] * len(cell["per_seed"]), cell["per_seed"], color=f"C{i % 10}", s=10, alpha=0.5)
    ax.set_xticks(range(len(rows)), [r["arm"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel(f"{tier} pass@{k} (agent-free)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def plot_headline(live: list[dict], committed: list[dict] | None, tier: str, k: int = 1, title: str = ""):
    """Per arm, this run's pass@k on `tier` (one seed, interval over problems) beside the
    committed result of the same protocol (its seeds, two-level interval; dots: per seed)."""
    arms = [r["arm"] for r in live if r["tier"] == tier and r["arm"] != "base"]
    sets = [("this run", live, "C0")] + ([("committed", committed, "C1")] if committed else [])
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(arms), 3.4))
    for j, (label, rows, color) in enumerate(sets):
        for i, arm in enumerate(arms):
            r = next((x for x in rows if x["arm"] == arm and x["tier"] == tier), None)
            if r is None:
                continue
            c, x = r[f"pass@{k}"], i + (j - (len(sets) - 1) / 2) * 0.3
            ax.errorbar([x], [c["mean"]], yerr=[[c["mean"] - c["lo"]], [c["hi"] - c["mean"]]], fmt="o",
                        color=color, capsize=4, label=f"{label} ({r['seeds']} seed{'s' * (r['seeds'] > 1)})" if i == 0 else None)
            if r["seeds"] > 1:
                ax.scatter([x] * len(c["per_seed"]), c["per_seed"], color=color, s=10, alpha=0.5)
    ax.set_xticks(range(len(arms)), arms)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel(f"{tier} pass@{k}, agent-free")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"holds": "C2", "does not hold": "C3", "inconclusive at this scale": "C7"}


def plot_claims(rows: list[dict]):
    """Each claim's difference (arm − reference) with its 95 % interval, coloured by verdict
    (claims.evaluate_all); claims not run yet are listed but have no bar."""
    fig, ax = plt.subplots(figsize=(11, 0.34 * len(rows) + 1.2))
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        if "diff" in r:
            c = VERDICT_COLOURS[r["status"]]
            ax.errorbar(r["diff"], y, xerr=[[r["diff"] - r["lo"]], [r["hi"] - r["diff"]]], fmt="o", color=c, capsize=3)
        else:
            ax.text(0, y, "not run yet", ha="center", va="center", fontsize=7, color="0.5")
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_ylim(-0.5, len(rows) - 0.5)
    ax.set_yticks(range(len(rows)), [f"{r['claim'][:75]} ({r['tier']}, pass@{r['k']})" for r in rows][::-1], fontsize=7)
    ax.set_xlabel("arm − reference, agent-free pass@k, 95 % two-level interval", fontsize=8)
    for name, c in VERDICT_COLOURS.items():
        ax.plot([], [], "o", color=c, label=name)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def plot_result_curves(records: list[dict]):
    """One panel per committed result file with a train-time curve (results.curves: the runs' own
    small held-out evaluation, mean over seeds, by step); one line per arm."""
    shown = [r for r in records if any(len(c) > 1 for c in (r.get("curves") or {}).values())]
    cols = 3
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.1 * rows), squeeze=False)
    arms = list(dict.fromkeys(a for r in shown for a in r["curves"]))  # one style per arm in every panel
    for ax, rec in zip(axes.flat, shown):
        for arm, curve in ((a, c) for a, c in rec["curves"].items() if c):
            ax.plot([int(s) for s in curve], list(curve.values()), label=arm, **style(arms.index(arm)))
        ax.set_title(f"{rec['name']} ({len(rec['seeds'])} seeds)", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("held-out pass@1")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
