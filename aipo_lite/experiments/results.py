"""Result files: what a grid measured, as JSON under `results/`, and the tables made from them.

A result file holds one protocol's outcome and how it was obtained:

    {"name", "title", "command", "date", "machine", "seeds", "protocol": {Config fields},
     "tiers": [...], "ks": [...], "source": "measured" | "transcribed ...",
     "evals": {arm: [[{"id", "kind", "n", "correct"} per problem] per seed]},   # measured files
     "s_per_step": {arm: seconds}, "notes": [...]}

Measured files keep every problem's sample count and correct count, so the tables (mean over
seeds x problems, 95 % two-level bootstrap interval, per-seed means, differences against a
reference arm) are recomputed from them by `render` and never copied by hand. Files whose runs
were not kept (`source` starting with "transcribed") carry `rows` of already-summarized numbers
instead, and say so in the table. `python -m aipo_lite.experiments.results` rewrites
docs/results.md and the README's results block from every file in results/.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

from aipo_lite.experiments import grid
from aipo_lite.model.policy import cpu_has_native_bf16, resolve_device, resolve_dtype
from aipo_lite.training.runinfo import kit

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- results:start (generated from results/ by python -m aipo_lite.experiments.results) -->", \
    "<!-- results:end -->"
CURVES = "docs/figures/result_curves.png"  # drawn by write() from the files' curves


def machine() -> str:
    """The CPU model, its core count and whether it computes bf16 natively (what decides dtype='auto')."""
    name = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores, " + ("native bf16" if cpu_has_native_bf16() else "no native bf16")


def save(path: str | Path, results: dict, *, name: str, title: str, command: str, seeds: list[int],
         protocol: dict, tiers: list[str], ks: list[int], dtype: str, device: str = "auto",
         notes: list[str] | None = None) -> dict:
    """Write grid.collect's results (per-problem counts, step times) with how they were made
    (`dtype`, `device`: the runs' Config settings, recorded as the precision 'auto' resolved to
    on this machine; `kit`: runinfo.kit(), commit and versions)."""
    dtype = str(resolve_dtype(dtype, resolve_device(device))).removeprefix("torch.")
    evals = {arm: [[{k: p[k] for k in ("id", "kind", "n", "correct")} for p in e] for e in res["evals"]]
             for arm, res in results.items()}
    record = {"name": name, "title": title, "command": command, "date": date.today().isoformat(),
              "machine": machine(), "dtype": dtype, "seeds": list(seeds), "protocol": protocol, "tiers": tiers,
              "ks": ks, "source": "measured", "kit": kit(), "evals": evals,
              "s_per_step": {arm: c["s_per_step"] for arm, c in grid.cost(results).items()},
              "curves": curves(results), "notes": notes or []}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1) + "\n")
    return record


def curves(results: dict) -> dict:
    """{arm: {step: held-out pass@1 of the runs' train-time evaluations, mean over seeds}} at the
    steps every seed evaluated: whether a run was still moving when it stopped."""
    out = {}
    for arm, res in results.items():
        hists = [h for h in res["metrics"] if h]
        by_step: dict[int, list[float]] = {}
        for h in hists:
            for m in h:
                if isinstance(m.get("eval/pass1"), (int, float)):
                    by_step.setdefault(m["step"], []).append(m["eval/pass1"])
        if hists and by_step:
            out[arm] = {str(s): sum(v) / len(v) for s, v in sorted(by_step.items()) if len(v) == len(hists)}
    return out


def as_results(record: dict) -> dict:
    """A measured file back in grid.collect's shape: each arm's history is `train_steps` steps of
    its mean step time, so the tables' s/step is the file's and their wall time the run's summed
    step time (one pseudo step made the wall column repeat s/step). Every measured file records
    its protocol (`save`), train_steps included."""
    steps = record["protocol"]["train_steps"]
    return {arm: {"evals": e, "metrics": ([[{"speed/step_time": record["s_per_step"][arm]}] * steps]
                                          if record["s_per_step"].get(arm) else [])}
            for arm, e in record["evals"].items()}


def tables(record: dict, samples: int = 2000) -> tuple[list[dict], list[dict]]:
    """(rows, differences): grid.table's rows and each arm minus grpo (pass@1) per tier."""
    if record["source"] != "measured":
        return record["rows"], record.get("differences", [])
    res = as_results(record)
    rows = grid.table(res, record["tiers"], record["ks"], samples)
    diffs = [d for t in record["tiers"] for ref in ("grpo",) if ref in res
             for d in grid.differences(res, ref, t, 1, samples)]
    return rows, diffs


def section(record: dict) -> str:
    """One result file as a markdown section: how it was made, the table, the differences."""
    rows, diffs = tables(record)
    head = [f"## {record['title']}", "",
            f"- command: `{record['command']}`",
            f"- date: {record['date']}; machine: {record['machine']}"
            + (f"; precision: {record['dtype']}" if record.get("dtype") else "") + f"; seeds: {record['seeds']}",
            f"- source: {record['source']}"
            + (f" (kit commit {record['kit']['commit'][:10]})" if (record.get("kit") or {}).get("commit") else ""),
            f"- file: `results/{record['name']}.json`", ""]
    if rows and "pass@1" in rows[0] and isinstance(rows[0]["pass@1"], dict):
        body = [grid.markdown(rows, record["ks"])]
    else:
        body = [_summary_table(rows)]
    if diffs:
        body += ["", "Differences (pass@1, 95 % two-level bootstrap of the difference):", ""]
        body += [f"- {d['arm']} − {d['minus']} on `{d['tier']}`: {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"
                 + (" — beyond the interval" if d.get("beyond_interval") else " — within noise") for d in diffs]
    if record.get("curves"):
        body += ["", "Held-out pass@1 during training (the runs' own small evaluation, mean over seeds), by step:", ""]
        body += [f"- {arm}: " + ", ".join(f"{s} → {v:.2f}" for s, v in c.items()) for arm, c in record["curves"].items() if c]
    notes = [f"- {n}" for n in record.get("notes", [])]
    return "\n".join(head + body + ([""] + notes if notes else []))


def _summary_table(rows: list[dict]) -> str:
    """Rows of transcribed numbers: {protocol, arm, metric, mean, lo, hi, per_seed}."""
    lines = ["| protocol | arm | metric | mean [95%] | per seed |", "|---|---|---|---|---|"]
    for r in rows:
        ci = f" [{r['lo']:.3f}, {r['hi']:.3f}]" if r.get("lo") is not None else ""
        seeds = " ".join(f"{v:.2f}" for v in r.get("per_seed") or [])
        lines.append(f"| {r['protocol']} | {r['arm']} | {r['metric']} | {r['mean']:.3f}{ci} | {seeds} |")
    return "\n".join(lines)


def load_all(folder: Path = ROOT / "results") -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def render(records: list[dict]) -> str:
    """docs/results.md: every result file, newest protocol first as the files order them."""
    intro = ["# Results", "",
             "Generated by `python -m aipo_lite.experiments.results` from the JSON files in `results/`; do not",
             "edit by hand. All numbers are agent-free (plain prompt, no agents) on held-out test problems:",
             "mean over seeds × problems, 95 % two-level bootstrap interval (seeds, then problems), per-seed",
             "means in brackets. A difference is a claim only when its interval excludes 0.", ""]
    from aipo_lite.experiments.claims import CLAIM_INTRO, markdown as claims_table

    claims = ["## Claims", "", *CLAIM_INTRO, "", claims_table(records), ""]
    curves = ["## Held-out pass@1 during training", "",
              "One panel per file below that has a train-time curve (the runs' own small evaluation, mean over "
              "seeds; the points are listed in the file's section):", "",
              f"![held-out pass@1 by step]({CURVES.removeprefix('docs/')})", ""]
    return "\n".join(intro + claims + curves + [section(r) + "\n" for r in records])


def readme_block(records: list[dict]) -> str:
    """The README's short results table: the rows each file marks as headline (`headline` arms)."""
    lines = ["| result | GRPO | AIPO | SFT on the guided successes | seeds | file |", "|---|---|---|---|---|---|"]
    for r in records:
        for label, tier, metric in r.get("headline", []):
            rows, _ = tables(r)
            cells = []
            for arm in ("grpo", "aipo", "sft"):
                cell = next((_fmt(x, metric) for x in rows if x.get("arm") == arm
                             and x.get("tier", x.get("protocol")) == tier and x.get("metric", metric) == metric), "—")
                cells.append(cell)
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(r['seeds'])} | [{r['name']}](results/{r['name']}.json) |")
    return "\n".join(lines)


def _fmt(row: dict, metric: str) -> str:
    v = row[metric] if metric in row else row
    lo = f" [{v['lo']:.3f}, {v['hi']:.3f}]" if v.get("lo") is not None else ""
    return f"{v['mean']:.3f}{lo}"


def write(root: Path = ROOT) -> None:
    records = load_all(root / "results")
    (root / "docs" / "results.md").write_text(render(records))
    import matplotlib.pyplot as plt

    from aipo_lite.experiments.plots import plot_result_curves
    (root / CURVES).parent.mkdir(parents=True, exist_ok=True)
    fig = plot_result_curves(records)
    fig.savefig(root / CURVES, dpi=100, metadata={"Software": None})
    plt.close(fig)
    readme = (root / "README.md").read_text()
    if START in readme and END in readme:
        a, b = readme.index(START) + len(START), readme.index(END)
        (root / "README.md").write_text(readme[:a] + "\n" + readme_block(records) + "\n" + readme[b:])


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    print("wrote docs/results.md and the README's results block")
