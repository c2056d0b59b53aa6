"""The claims table: each seed paper's claim, tested where it can hold, with a verdict.

A claim names two arms of one committed result file (results/claims_<protocol>.json, made by
benchmarks/claims.py), the held-out tier and k it is read on, and the direction the paper claims
(`arm` better than `ref`). Its verdict comes from the difference arm - ref of agent-free pass@k
with its 95 % two-level bootstrap interval (grid.differences: seeds, then problems):

- **holds**: the interval excludes 0 in the claimed direction;
- **does not hold**: it excludes 0 the other way;
- **inconclusive at this scale**: it contains 0.

A claim whose file or arms are missing is shown as not run yet, never dropped. `why` says why the
protocol can test the claim (the base pass rates behind the choice are read from the file's
`base` arm and printed beside it). Plain data and arithmetic over result records: no training.
"""

from __future__ import annotations

from aipo_lite.experiments import grid

_HEAD = "Facts only the agents hold: the base policy's pass@1 on `recall_t` is ~0, so plain RLVR has no reward to learn from"
_EXPL = "`add3`: the base policy solves some problems (pass@1 ~0.1, pass@16 ~0.5), so plain RLVR has a gradient and the method's change to it can show"
_USE = ("The headline runs evaluated on `recall_use`: the 4 trained facts inside one-step sums with numbers and "
        "question forms training never showed")
_BOUND = ("pass@k up to 256 (Yue et al.'s k) on 30 held-out add3 problems of the explore runs; the base's pass@16 "
          "is ~0.6, so there is room above it at large k")
_UNITS = ("`units` (two-step word problems that need a unit fact): the base's pass@16 was 0, so its boundary is far "
          "below 1 there; explore-protocol runs, pass@k up to 128 on 30 held-out problems")
_RLLM_SAME = ("; here `rllm` trained exactly as `is` (its floor acts only on agent tokens with π < 0.1 and a negative "
              "advantage, and on `recall` the independent rollouts almost never score, so an assisted rollout's A = "
              "(r − mean r_ind) / std is >= 0): the two arms' per-problem results are identical and this row repeats the "
              "`is` row; rows 41-42 test the floor where it can act")
_MIX = ("add3 (explorable: independent rollouts succeed and give their own gradient, negatives included) and "
        "`recall` (only the agents unlock it) trained together, 12 problems each")
CLAIMS: list[dict] = [
    dict(claim="AIPO improves on its base algorithm (GRPO), facts only the agents hold", file="claims_headline",
         arm="aipo", ref="grpo", tier="recall_t", k=1, why=_HEAD),
    dict(claim="AIPO improves on its base algorithm (GRPO) where the policy explores", file="claims_explore",
         arm="aipo", ref="grpo", tier="add3", k=1, why=_EXPL),
    dict(claim="AIPO improves on its base algorithm (GRPO) where the policy explores, 80 steps", file="claims_explore_80",
         arm="aipo", ref="grpo", tier="add3", k=1, why=_EXPL + "; the explore runs continued to 80 steps (still rising at 40)"),
    dict(claim="AIPO improves on GRPO on a reasoning-gym dataset", file="claims_gym", arm="aipo", ref="grpo",
         tier="basic_arithmetic", k=1, why="reasoning-gym `basic_arithmetic` (2-3 one-digit terms, + and -): base pass@1 ~0.2"),
    dict(claim="AIPO improves on GRPO with another policy family (Gemma 3 270M base, no chat template)",
         file="claims_headline_gemma", arm="aipo", ref="grpo", tier="recall_t", k=1, why=_HEAD),
    *[dict(claim=f"AIPO improves on {name} as base algorithm", file="claims_headline", arm=f"aipo_{algo}",
           ref=algo, tier="recall_t", k=1, why=_HEAD)
      for algo, name in (("drgrpo", "Dr.GRPO"), ("dapo", "DAPO"), ("rloo", "RLOO"))],
    dict(claim="AIPO expands the boundary: pass@k at large k above the base's", file="claims_boundary",
         arm="aipo", ref="base", tier="add3", k=256, why=_BOUND),
    dict(claim="AIPO expands the boundary: pass@k at large k above plain RLVR's", file="claims_boundary",
         arm="aipo", ref="grpo", tier="add3", k=256, why=_BOUND),
    dict(claim="Plain RLVR narrows the base's boundary: the base's pass@k at large k above GRPO's (Yue et al.)",
         file="claims_boundary", arm="base", ref="grpo", tier="add3", k=256, why=_BOUND),
    *[dict(claim=claim, file="claims_boundary_units", arm=arm, ref=ref, tier="units", k=128, why=_UNITS) for claim, arm, ref in (
        ("AIPO expands the boundary where the base has little: pass@128 above the base's", "aipo", "base"),
        ("AIPO expands the boundary where the base has little: pass@128 above plain RLVR's", "aipo", "grpo"),
        ("Plain RLVR narrows the base's boundary where it has little: the base's pass@128 above GRPO's", "base", "grpo"))],
    *[dict(claim=f"AIPO's coefficient beats the `{w}` weight (no vanishing gradient on agent tokens)",
           file="claims_headline", arm="aipo", ref=f"aipo_{w}", tier="recall_t", k=1,
           why=_HEAD + "; every learned fact comes through agent tokens, so their weight decides what is learned"
           + ("" if w != "rllm" else _RLLM_SAME)) for w in ("is", "is_clip", "rllm")],
    dict(claim="ARPO beats GRPO at equal rollouts", file="claims_explore", arm="arpo", ref="grpo", tier="add3", k=1,
         why=_EXPL + "; a wrong first line decides the answer, where branching at high entropy can help"),
    dict(claim="AIPO+ARPO beats AIPO where consults happen", file="claims_headline", arm="aipo+arpo", ref="aipo",
         tier="recall_t", k=1, why="every assisted rollout consults once on `recall`"),
    dict(claim="AAPO beats GRPO", file="claims_explore", arm="aapo", ref="grpo", tier="add3", k=1,
         why=_EXPL + "; most groups of 4 are all-zero, where AAPO's margin against the reference still gives a gradient"),
    dict(claim="RRL beats GRPO", file="claims_explore", arm="rrl", ref="grpo", tier="add3", k=1,
         why=_EXPL + "; successes are sparse, so replaying a success's early prefix has something to replay"),
    dict(claim="AIPO beats SFT on the guided successes", file="claims_headline", arm="aipo", ref="sft",
         tier="recall_t", k=1, why=_HEAD),
    dict(claim="AIPO's learned facts are used in new problems more than GRPO's", file="claims_headline_use", arm="aipo",
         ref="grpo", tier="recall_use", k=1, why=_USE),
    dict(claim="AIPO uses the learned facts better than SFT", file="claims_headline_use", arm="aipo", ref="sft",
         tier="recall_use", k=1, why=_USE),
    *[dict(claim=f"AIPO beats SFT where RL can matter: {what}", file="claims_mixed", arm="aipo", ref="sft", tier=tier,
           k=k, why=_MIX) for what, tier, k in (("the explored tier", "add3", 1), ("the explored tier at large k", "add3", 16),
                                                 ("the facts in new question forms", "recall_t", 1),
                                                 ("the facts inside new sums", "recall_use", 1),
                                                 ("breadth on a tier no arm trains", "mul1x2", 16))],
    *[dict(claim=f"AIPO beats SFT where RL can matter, 80 steps: {what}", file="claims_mixed_80", arm="aipo", ref="sft",
           tier=tier, k=k, why=_MIX + "; the mixed runs continued to 80 steps (still rising at 40)")
      for what, tier, k in (("the explored tier", "add3", 1), ("the explored tier at large k", "add3", 16),
                            ("the facts in new question forms", "recall_t", 1), ("the facts inside new sums", "recall_use", 1),
                            ("breadth on a tier no arm trains", "mul1x2", 16))],
    *[dict(claim=f"Independent rollouts add to SFT: AIPO with the `sft` weight beats SFT, {what}", file="claims_mixed",
           arm="aipo_sft", ref="sft", tier=tier, k=1, why=_MIX) for what, tier in (("the explored tier", "add3"),
                                                                            ("the facts in new question forms", "recall_t"))],
    *[dict(claim=f"Training keeps the base's breadth: {name}'s pass@k at large k on a tier no arm trains, above the base's",
           file="claims_mixed", arm=arm, ref="base", tier="mul1x2", k=16, why=_MIX) for arm, name in (("aipo", "AIPO"), ("grpo", "GRPO"))],
    *[dict(claim=f"Training keeps the base's breadth, 80 steps: {name}'s pass@16 on a tier no arm trains, above the base's",
           file="claims_mixed_80", arm=arm, ref="base", tier="mul1x2", k=16,
           why=_MIX + "; the mixed runs continued to 80 steps") for arm, name in (("aipo", "AIPO"), ("sft", "SFT"))],
    *[dict(claim=f"AIPO's coefficient beats the `{w}` weight where the policy explores", file="claims_explore_weights",
           arm="aipo", ref=f"aipo_{w}", tier="add3", k=1, why=_EXPL + "; independent rollouts succeed, so a failed assisted "
           "rollout's advantage is negative, where `rllm` weights improbable agent tokens 0.1 instead of `is`'s π (the "
           "explore protocol)") for w in ("rllm", "is")],
]


CLAIM_INTRO = [
    "Each seed paper's claim, read from the committed result file named in its row (made by",
    "`benchmarks/claims.py`; the file's own section below gives its command, date, machine and",
    "every arm's numbers). Verdict: **holds** when the 95 % two-level interval of the difference",
    "(arm − reference, agent-free, held-out problems) excludes 0 in the claimed direction, **does not",
    "hold** when it excludes 0 the other way, **inconclusive at this scale** otherwise. Arms of one",
    "file sample the same number of rollouts per step. s/step is measured with one thread per run, two",
    "or three runs side by side on 2 cores: a rough cost; compare arms of one file, not machines.",
]


def verdict(lo: float, hi: float) -> str:
    return "holds" if lo > 0 else "does not hold" if hi < 0 else "inconclusive at this scale"


def _mean(ps: list[list[float]]) -> float:
    flat = [v for s in ps for v in s]
    return sum(flat) / len(flat) if flat else float("nan")


def evaluate_claim(claim: dict, records: dict[str, dict], samples: int = 2000) -> dict:
    """The claim with its numbers: arm and ref means, the difference, its interval, the verdict,
    the base's pass@1 and pass@k on the tier, step costs; `status` 'not run yet' when its file or
    arms (or the k asked) are missing from the records."""
    rec = records.get(claim["file"])
    out = dict(claim, status="not run yet")
    if rec is None or rec.get("source") != "measured" or not {claim["arm"], claim["ref"]} <= set(rec["evals"]):
        return out
    if claim["k"] > min(p["n"] for arm in (claim["arm"], claim["ref"]) for e in rec["evals"][arm] for p in e):
        return out
    from aipo_lite.experiments.results import as_results  # results renders this table

    res = as_results(rec)
    d = next(x for x in grid.differences({a: res[a] for a in (claim["arm"], claim["ref"])}, claim["ref"],
                                         claim["tier"], claim["k"], samples))
    base = res.get("base")
    top = min(p["n"] for e in base["evals"] for p in e) if base else 0
    steps = rec["protocol"].get("train_steps")
    cost = {a: rec["s_per_step"].get(a) for a in (claim["arm"], claim["ref"])}
    return dict(out, status=verdict(d["lo"], d["hi"]), diff=d["diff"], lo=d["lo"], hi=d["hi"],
                arm_mean=_mean(grid.per_seed_values(res[claim["arm"]]["evals"], claim["tier"], claim["k"])),
                ref_mean=_mean(grid.per_seed_values(res[claim["ref"]]["evals"], claim["tier"], claim["k"])),
                seeds=len(rec["seeds"]), date=rec["date"], machine=rec["machine"],
                base_pass1=_mean(grid.per_seed_values(base["evals"], claim["tier"], 1)) if base else None,
                base_passn=(top, _mean(grid.per_seed_values(base["evals"], claim["tier"], top))) if base else None,
                s_per_step=cost, wall_s={a: c * steps if c and steps else None for a, c in cost.items()})


def markdown(records: list[dict], samples: int = 2000) -> str:
    """The claims table and, under it, why each protocol can test its claims."""
    by_name = {r["name"]: r for r in records}
    lines = ["| # | claim | tier, metric | arm − reference | difference [95 %] | verdict | seeds | base pass@1 / pass@n | cost: s/step, wall (arm / ref) | file |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, c in enumerate(CLAIMS, 1):
        r = evaluate_claim(c, by_name, samples)
        pair = f"{c['arm']} − {c['ref']}"
        if "diff" not in r:
            lines.append(f"| {i} | {c['claim']} | `{c['tier']}`, pass@{c['k']} | {pair} | — | **not run yet** | — | — | — | "
                         f"`results/{c['file']}.json` |")
            continue
        diff = f"{r['arm_mean']:.3f} − {r['ref_mean']:.3f} = {r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"
        b = "—" if r["base_pass1"] is None else f"{r['base_pass1']:.2f} / {r['base_passn'][1]:.2f} (n={r['base_passn'][0]})"
        cost = " / ".join("—" if v is None else f"{v:.1f}" for v in r["s_per_step"].values()) + " s; " + \
            " / ".join("—" if v is None else f"{v / 60:.1f}" for v in r["wall_s"].values()) + " min"
        lines.append(f"| {i} | {c['claim']} | `{c['tier']}`, pass@{c['k']} | {pair} | {diff} | **{r['status']}** | {r['seeds']} "
                     f"| {b} | {cost} | [{c['file']}]({'../results/' + c['file'] + '.json'}) |")
    whys: dict[str, list[int]] = {}
    for i, c in enumerate(CLAIMS, 1):
        whys.setdefault(c["why"], []).append(i)
    return "\n".join(lines + ["", "Why each claim is tested where it is:", ""]
                     + [f"- {', '.join(map(str, ids))}: {w}." for w, ids in whys.items()])


def committed() -> list[dict]:
    """Every result file committed under results/ (the claims table reads its rows from them)."""
    from aipo_lite.experiments.results import load_all

    return load_all()


def evaluate_all(records: list[dict], samples: int = 2000) -> list[dict]:
    """Every claim with its numbers (evaluate_claim), in table order."""
    by_name = {r["name"]: r for r in records}
    return [evaluate_claim(c, by_name, samples) for c in CLAIMS]


def weight_claims(records: list[dict] | None = None,
                  files: tuple[str, ...] = ("claims_headline", "claims_explore_weights")) -> list[dict]:
    """The claims on the agent-token weight (AIPO's coefficient against the other weights, and
    against SFT) as evaluate_claim gives them, each with the model its runs used (notebook 03)."""
    by_name = {r["name"]: r for r in (committed() if records is None else records)}
    model = lambda f: by_name.get(f, {}).get("protocol", {}).get("model", "smollm2")  # noqa: E731
    return [dict(evaluate_claim(c, by_name), protocol_model=model(c["file"])) for c in CLAIMS
            if c["file"] in files and c["arm"] == "aipo" and (c["ref"].startswith("aipo_") or c["ref"] == "sft")]


def protocol_config(protocol: str, **fields):
    """The Config of a claims protocol (presets.CLAIM_PROTOCOLS) with `fields` on top."""
    from aipo_lite.config import Config
    from aipo_lite.presets import CLAIM_PROTOCOLS

    if protocol not in CLAIM_PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is not valid; choose one of {list(CLAIM_PROTOCOLS)}")
    return Config.from_profile("demo", **{**CLAIM_PROTOCOLS[protocol], **fields})


def finished(cfg, arm: str, seeds: list[int], root) -> bool:
    """Whether every seed's run of `arm` under root has its final checkpoint."""
    from aipo_lite.training import checkpoint

    ckpts = [checkpoint.latest(grid.arm_config(cfg, arm, seed, root).run_dir) for seed in seeds]
    return all(c is not None and checkpoint.step_of(c) >= cfg.train_steps for c in ckpts)


def run(protocol: str, arms: list[str], seeds: list[int], root, path, command: str, threads: int = 0,
        dtype: str = "auto", log=print, subprocess_runs: bool = True, report_to: str = "none") -> dict:
    """Train `arms` x `seeds` of a claims protocol under root, one arm at a time (resumable), and
    after each arm rewrite the result file at `path` with every finished arm of this call or of
    the file already there (evaluated agent-free, cached per adapter). Protocols that only
    evaluate others' runs (presets.CLAIM_RUNS_OF) refuse arms that have not finished there.
    `report_to`: trackers of every run (one project per protocol, one run per arm x seed)."""
    import json
    from pathlib import Path

    from aipo_lite.arms import ARMS
    from aipo_lite.experiments import headline
    from aipo_lite.experiments import results as result_files
    from aipo_lite.presets import CLAIM_RUNS_OF

    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise ValueError(f"arms={bad} are not arms; choose from {list(ARMS)}")
    cfg = protocol_config(protocol, num_threads=threads, dtype=dtype, report_to=report_to, report_project=f"claims_{protocol}")
    path, record = Path(path), None
    for arm in arms:
        if protocol in CLAIM_RUNS_OF and not finished(cfg, arm, seeds, root):
            raise ValueError(f"arm {arm!r} has not finished in {root}: train it with protocol "
                             f"{CLAIM_RUNS_OF[protocol]!r} first")
        grid.train_grid(cfg, [arm], seeds, root, log=log, subprocess_runs=subprocess_runs)
        before = json.loads(path.read_text())["evals"] if path.exists() else {}
        done = [a for a in ARMS if (a in arms or a in before) and finished(cfg, a, seeds, root)]
        tests = headline.held_out(cfg)
        res = grid.collect(cfg, done, seeds, root, tests, cfg.grid_eval_n)
        n = cfg.grid_eval_n
        ks = sorted({1, n}) if n <= 16 else [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= n]
        record = result_files.save(
            path, res, name=path.stem, seeds=seeds, protocol=headline.protocol(cfg), command=command,
            title=f"Claims protocol `{protocol}`: train {cfg.train_tiers}, {cfg.train_steps} steps; agent-free on "
                  f"{len(tests)} held-out problems of {cfg.heldout_tiers}", tiers=cfg.heldout_tiers, ks=ks,
            dtype=cfg.dtype, device=cfg.device,
            notes=[f"Runs of {threads or 'all'} thread(s) each, two grids side by side on the machine's 2 cores: "
                   "s/step compares arms of one file, not machines."])
        log(grid.markdown(grid.table(res, cfg.heldout_tiers, ks), ks))
        log(f"wrote {path} ({len(done)} arms: {done})")
    return record
