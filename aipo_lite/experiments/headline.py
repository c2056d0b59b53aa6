"""The kit's headline protocol, live and committed: GRPO, AIPO and SFT on the guided successes,
trained on facts only the agents hold, evaluated agent-free on questions never trained on.

Notebook 04 runs it for one seed (`make demo`); `benchmarks/headline.py` runs the same function
for three seeds and commits the result file `results/<RESULT>.json`; the notebook shows its own
numbers beside the committed ones, after checking that the committed file was made with the
protocol the notebook was asked to run (PROTOCOL_FIELDS). Settings that differ are named and the
committed numbers are not shown as a comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

from aipo_lite.config import Config
from aipo_lite.experiments import grid
from aipo_lite.experiments.runs import continued_dir, extend_to_wall_time, wall_time
from aipo_lite.experiments.results import ROOT, tables
from aipo_lite.names import BOTTLENECK_TIERS
from aipo_lite.tasks.loading import from_config as tasks_from_config
from aipo_lite.training.runinfo import LATER_FIELDS, NOT_TRAINING, read_metrics

ARMS_SHOWN = ("grpo", "aipo", "sft")
RESULT = "headline_recall4"
# what makes two runs of the protocol comparable: the training fields (runinfo), the length and
# the final evaluation; not the seed, the folder, the machine or the threads
PROTOCOL_FIELDS = sorted((set(Config.__dataclass_fields__) - NOT_TRAINING - {"seed"})
                         | {"train_steps", "heldout_tiers", "grid_eval_n", "grid_eval_problems_per_tier",
                            "eval_temperature", "eval_top_p", "eval_max_new_tokens"})


def protocol(cfg: Config) -> dict:
    """The protocol's settings; a field added after files were made (runinfo.LATER_FIELDS) only
    when set, as in run keys, so older files and newer runs of one protocol compare equal."""
    return {k: json.loads(json.dumps(getattr(cfg, k))) for k in PROTOCOL_FIELDS
            if not (k in LATER_FIELDS and getattr(cfg, k) == LATER_FIELDS[k])}


def held_out(cfg: Config) -> list:
    """The final evaluation's problems: the first grid_eval_problems_per_tier of each held-out
    tier; on the invented-fact tiers (recall, recall_t, recall_use) only questions about facts
    the training tasks hold (a fact never trained is not held out, it is unknown)."""
    tests = tasks_from_config(cfg, "test", cfg.heldout_tiers, field="heldout_tiers")
    trained = {f for t in tasks_from_config(cfg, "train", cfg.train_tiers, field="train_tiers")
               if t.kind in BOTTLENECK_TIERS for f in t.facts}
    out, per_tier = [], {}
    for t in tests:
        if t.kind in BOTTLENECK_TIERS and not set(t.facts) <= trained:
            continue
        per_tier[t.kind] = per_tier.get(t.kind, 0) + 1
        if not cfg.grid_eval_problems_per_tier or per_tier[t.kind] <= cfg.grid_eval_problems_per_tier:
            out.append(t)
    return out


def run(cfg: Config, seeds: list[int], root: str | Path, arms=ARMS_SHOWN, in_process: bool = True,
        log=print) -> dict:
    """Train every arm x seed under root (resumable) and evaluate each final adapter and the base
    policy agent-free on held_out(cfg), grid_eval_n samples each: grid.collect's results. With
    cfg.equal_wall_time, also `grpo_equal_time`: each GRPO run continued (a copy) until its
    training wall time equals the AIPO run's of the same seed (assisted steps cost more)."""
    grid.train_grid(cfg, list(arms), seeds, root, log=log, subprocess_runs=not in_process)
    tests = held_out(cfg)
    results = grid.collect(cfg, list(arms), seeds, root, tests, cfg.grid_eval_n)
    if cfg.equal_wall_time and {"grpo", "aipo"} <= set(arms):
        evals, hists = [], []
        for seed in seeds:
            grpo = grid.arm_config(cfg, "grpo", seed, root)
            target = wall_time(read_metrics(run_dir(cfg, "aipo", root, seed)))
            log(f"== grpo seed {seed} continued to AIPO's wall time ({target:.0f} s)")
            hists.append(extend_to_wall_time(grpo, target, "grpo_equal_time", progress=False))
            evals.append(grid.final_eval(cfg, continued_dir(grpo, "grpo_equal_time"), tests, cfg.grid_eval_n,
                                        any_step=True))
        results["grpo_equal_time"] = {"evals": evals, "metrics": hists}
    return results


def summary(results: dict, cfg: Config, samples: int = 2000) -> tuple[list[dict], list[dict]]:
    """(rows, differences): pass@1 and pass@grid_eval_n per arm and held-out tier; each arm minus
    grpo, and sft minus aipo (pass@1) where both ran."""
    ks = sorted({1, cfg.grid_eval_n})
    rows = grid.table(results, cfg.heldout_tiers, ks, samples)
    diffs = [d for tier in cfg.heldout_tiers for d in grid.differences(results, "grpo", tier, 1, samples)]
    if {"sft", "aipo"} <= set(results):  # only these two arms: as claims.evaluate_claim asks one difference
        pair = {arm: results[arm] for arm in ("sft", "aipo")}
        diffs += [d for tier in cfg.heldout_tiers for d in grid.differences(pair, "aipo", tier, 1, samples)]
    return rows, diffs


def committed(cfg: Config, folder: Path = ROOT / "results", name: str = RESULT) -> tuple[dict | None, list[str]]:
    """(the committed result file, []) when it was made with cfg's protocol: the file `name`, else
    any committed file made with exactly that protocol (e.g. claims_headline_gemma when
    model='gemma3-270m'); otherwise (file `name` or None, the settings in which it differs)."""
    mine = protocol(cfg)
    differing = lambda rec: [f"{k}: committed {rec.get('protocol', {}).get(k)!r}, asked {v!r}"
                             for k, v in mine.items() if rec.get("protocol", {}).get(k) != v]
    path = Path(folder) / f"{name}.json"
    record = json.loads(path.read_text()) if path.exists() else None
    if record is not None and not differing(record):
        return record, []
    for other in sorted(Path(folder).glob("*.json")):
        rec = json.loads(other.read_text())
        if rec.get("source") == "measured" and "protocol" in rec and not differing(rec):
            return rec, []
    return record, differing(record) if record is not None else [f"no committed result {path.name}"]


def verdict(diffs: list[dict], arm: str = "aipo", minus: str = "grpo") -> str:
    """One sentence per held-out tier from the differences: beyond the interval or within noise."""
    out = []
    for d in diffs:
        if d["arm"] == arm and d["minus"] == minus:
            word = "beyond its 95 % interval" if d["beyond_interval"] else "within noise (the interval holds 0)"
            out.append(f"{arm} − {minus} on {d['tier']}: {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}], {word}")
    return "; ".join(out)


def run_dir(cfg: Config, arm: str, root: str | Path, seed: int | None = None) -> str:
    return grid.arm_config(cfg, arm, cfg.seed if seed is None else seed, root).run_dir


def summary_of(record: dict) -> list[dict]:
    """The rows of a committed result file (recomputed from its per-problem counts)."""
    return tables(record)[0]


def _cell(rows: list[dict], arm: str, tier: str) -> dict | None:
    return next((r["pass@1"] for r in rows if r["arm"] == arm and r["tier"] == tier), None)


def what_this_shows(rows: list[dict], diffs: list[dict], committed_rows: list[dict] | None, cfg: Config) -> str:
    """The closing cell of notebook 04, written from this run's numbers."""
    tier = cfg.heldout_tiers[0]
    g, a, s = (_cell(rows, arm, tier) for arm in ("grpo", "aipo", "sft"))
    d = next((x for x in diffs if x["arm"] == "aipo" and x["tier"] == tier), None)
    sa = next((x for x in diffs if (x["arm"], x["minus"], x["tier"]) == ("sft", "aipo", tier)), None)
    facts = set(cfg.train_tiers) <= set(BOTTLENECK_TIERS)
    out = ["Shows:" if d and d["lo"] > 0 else "This run does not show the protocol's result:"]
    if d and d["lo"] > 0:
        what = ("answers questions about facts only the agents held, alone and in templates it never trained on"
                if facts else f"answers held-out `{tier}` problems alone")
        out.append(f"- After {cfg.train_steps} steps, AIPO {what}: pass@1 {a['mean']:.2f} [{a['lo']:.2f}, {a['hi']:.2f}] "
                   f"against GRPO's {g['mean']:.2f} (AIPO − GRPO {verdict(diffs).split(': ', 1)[1]}).")
    elif d:
        out.append(f"- AIPO − GRPO on {tier} is {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]: the interval holds 0 "
                   "(too few steps, another seed or other settings; compare with the committed seeds).")
    if sa and s:
        word = "beyond its 95 % interval" if sa["beyond_interval"] else "within noise (the interval holds 0)"
        out.append(f"- SFT on the assisted successes reaches {s['mean']:.2f}; SFT − AIPO {sa['diff']:+.3f} "
                   f"[{sa['lo']:+.3f}, {sa['hi']:+.3f}], {word} in this seed; that interval spans problems and "
                   "samples, not seeds (seeds differ more: the committed ones, docs/results.md).")
    if committed_rows:
        ca, cg = _cell(committed_rows, "aipo", tier), _cell(committed_rows, "grpo", tier)
        inside = ca and ca["lo"] <= a["mean"] <= ca["hi"] if a else False
        out.append(f"- The committed seeds of the same protocol: AIPO {ca['mean']:.2f} [{ca['lo']:.2f}, {ca['hi']:.2f}], "
                   f"GRPO {cg['mean']:.2f}; this run's AIPO is {'inside' if inside else 'outside'} that interval.")
    else:
        out.append("- No committed result of these exact settings exists, so this run stands alone.")
    out += ["Does not show:",
            f"- Anything about natural tasks: {'invented facts' if facts else 'tiers ' + ', '.join(cfg.train_tiers)}, "
            f"one small policy (`{cfg.model}`), rule agents."
            + (" GRPO's zero is by construction (no independent rollout ever finds an invented fact), not a verdict "
               "on GRPO." if facts else ""),
            "- That AIPO's RL objective adds anything over distilling the guided successes (SFT).",
            "- Speed: the step times depend on the machine (docs/speed.md)."]
    return "\n".join(out)
