"""Experiment grids: arms x seeds at equal budget, trained, evaluated agent-free, tabulated.

An arm is a named change of one base config (ARMS); every arm keeps the base's steps, prompts
per step and rollouts per prompt (g_ind + g_asst), so arms differ in how rollouts are made and
trained, never in how many there are. Each (arm, seed) trains in its own run folder
`root/{arm}-s{seed}` in a subprocess (`python -m aipo_lite.training.trainer`), and resumes: re-running
a grid skips finished runs and continues interrupted ones from their last checkpoint. Each
final adapter (and the base policy, `root/base`) is then evaluated agent-free on the given test
problems with n samples each (the evaluation sampling seed is the base config's, the same for
every arm: common random numbers); that result is saved under the run's evals/ folder, named by
what it evaluated (the adapter's step and SHA-256, n, the problem ids and the sampling
settings), and reused only for exactly that. Run folders are named by arm, seed and the key of
their training settings (runinfo.py), so a changed override trains anew.

The table reports, per arm, tier and k: pass@k as the mean over seeds x problems with a 95%
two-level bootstrap interval (resample seeds, then problems within each drawn seed, so the
interval holds the seed-to-seed spread as well as the problem sample), the per-seed means, the
mean step time and the run's wall time. `differences` gives each arm minus a reference arm with
the same bootstrap, and says whether the interval excludes 0.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

from aipo_lite.arms import ARMS
from aipo_lite.config import Config, ConfigError
from aipo_lite.evaluation.agent_free import EvalResult, evaluate, pass_at_k, pass_at_k_table
from aipo_lite.experiments.runs import load_trained, read_metrics
from aipo_lite.training import checkpoint
from aipo_lite.training.runinfo import named_run_dir
from aipo_lite.training.trainer import train


def base_config(cfg: Config) -> Config:
    """The grid's base: cfg with cfg.grid_overrides applied (validated like any config)."""
    return dataclasses.replace(cfg, **cfg.grid_overrides)


def arm_config(base: Config, arm: str, seed: int, root: str | Path) -> Config:
    """The config of `arm` at `seed` under `root` (unknown arms raise a ValueError naming them)."""
    if arm not in ARMS:
        raise ValueError(f"arm={arm!r} is not valid; choose one of {list(ARMS)}")
    return named_run_dir(dataclasses.replace(base, seed=seed, **ARMS[arm](base)), root, f"{arm}-s{seed}")


def runs_root(base: Config, arms: list[str], seeds: list[int], shared: str | Path, own: str | Path) -> Path:
    """`shared` (another notebook's runs folder) when it holds a checkpointed run of any of these
    arms x seeds with these very settings (folders are named by them), else `own`: notebooks 05
    and 06 read notebook 04's runs and train into its folder only what it lacks."""
    found = any((Path(arm_config(base, a, s, shared).run_dir) / "checkpoints").exists() for a in arms for s in seeds)
    return Path(shared if found else own)


def train_grid(base: Config, arms: list[str], seeds: list[int], root: str | Path, profile: str = "demo",
               log=print, subprocess_runs: bool = True) -> None:
    """Train every arm x seed (resumable; finished runs are skipped by the trainer), each in
    its own process (`subprocess_runs`) or in this one."""
    cfgs = [arm_config(base, arm, seed, root) for arm in arms for seed in seeds]  # bad names fail first
    for cfg in cfgs:
        log(f"== {cfg.run_dir} ({cfg.method})")
        if not subprocess_runs:
            train(cfg, progress=False)
            continue
        done = subprocess.run([sys.executable, "-m", "aipo_lite.training.trainer", "--profile", profile,
                               "--run-dir", cfg.run_dir, "--overrides",
                               json.dumps({k: v for k, v in cfg.to_dict().items() if k != "run_dir"})],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            raise RuntimeError(f"training {cfg.run_dir} failed:\n{done.stderr[-3000:]}")


def final_eval(base: Config, run: Path, tests: list, n: int, trained: bool = True, any_step: bool = False) -> list[dict]:
    """Agent-free evaluation of run's final adapter (trained=False: the base policy), cached
    under a name that says what was evaluated (eval_key). The adapter must be the one trained to
    base.train_steps: a run continued further (train_steps is a continuation, runinfo) raises
    ConfigError instead of showing a longer run under the shorter run's settings; `any_step`
    takes whatever the run holds (a run continued on purpose, e.g. to a wall time)."""
    ecfg = dataclasses.replace(base, eval_n=n, eval_ks=sorted({1, n}), bootstrap_samples=0)
    what = eval_key(ecfg, run if trained else None, tests)
    if trained and not any_step and what["adapter"]["step"] != base.train_steps:
        raise ConfigError(f"train_steps={base.train_steps}: {run} holds the adapter of step {what['adapter']['step']} "
                          f"(the run was continued); evaluate it with train_steps={what['adapter']['step']}, or train "
                          f"{base.train_steps} steps into another folder")
    path = Path(run) / "evals" / f"final_eval-{what['key']}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        result = evaluate(load_trained(ecfg, run if trained else None), tests, ecfg, progress=False)
        result.settings["evaluated"] = what
        result.save(path)
    return json.loads(path.read_text())["problems"]


def final_eval_result(base: Config, run: Path, tests: list, n: int, ks: list[int], trained: bool = True) -> EvalResult:
    """final_eval as an EvalResult with pass@k at every k in `ks` (k <= n) and its intervals: the
    boundary curve (notebook 05) from the same cached samples as the final table (notebook 04),
    when both asked for the same problems and n."""
    problems = final_eval(base, run, tests, n, trained)
    return EvalResult(problems=problems, ks=list(ks), table=pass_at_k_table(problems, ks, base.bootstrap_samples, base.seed),
                      sampling={}, settings={"run": str(run) if trained else None, "eval_n": n})


def eval_key(ecfg: Config, run: Path | None, tests: list) -> dict:
    """What an evaluation evaluates: the adapter (checkpoint step and SHA-256; None = base
    model), the model, n, the problem ids and the sampling settings; `key` hashes them."""
    import hashlib

    adapter = None
    if run is not None:
        ckpt = checkpoint.latest(run)
        if ckpt is None:
            raise FileNotFoundError(f"no checkpoint in {run}: train it first")
        state = json.loads((ckpt / "state.json").read_text())
        adapter = {"step": state["step"], "sha256": state.get("files", {}).get("adapter.safetensors", {}).get("sha256")}
    what = {"adapter": adapter, "model": ecfg.model, "dtype": ecfg.dtype, "load_in_4bit": ecfg.load_in_4bit,
            "n": ecfg.eval_n, "problems": [t.id for t in tests], "tasks": ecfg.tasks,
            **{k: getattr(ecfg, k) for k in ("seed", "eval_temperature", "eval_top_p", "eval_max_new_tokens",
                                             "eval_batch_size", "prompt_style", "reward_mode")}}
    return {**what, "key": hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]}


def _resampled_mean(per_seed: list[list[float]], rng: random.Random) -> float:
    """One two-level bootstrap draw: seeds with replacement, then problems within each drawn seed."""
    vals = [v for s in rng.choices(per_seed, k=len(per_seed)) for v in rng.choices(s, k=len(s))]
    return sum(vals) / len(vals)


def _interval(draws: list[float]) -> tuple[float, float]:
    draws = sorted(draws)
    return draws[int(0.025 * len(draws))], draws[min(len(draws) - 1, int(0.975 * len(draws)))]


def hier_bootstrap(per_seed: list[list[float]], samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean over seeds x problems: resample seeds, then problems in each."""
    rng = random.Random(seed)
    return _interval([_resampled_mean(per_seed, rng) for _ in range(samples)])


def collect(base: Config, arms: list[str], seeds: list[int], root: str | Path, tests: list, n: int) -> dict:
    """{arm: {'evals': [problems per seed], 'metrics': [history per seed]}}; 'base' is the untrained policy."""
    root = Path(root)
    out = {"base": {"evals": [final_eval(base, root / "base", tests, n, trained=False)], "metrics": []}}
    for arm in arms:
        runs = [Path(arm_config(base, arm, s, root).run_dir) for s in seeds]
        out[arm] = {"evals": [final_eval(base, r, tests, n) for r in runs], "metrics": [read_metrics(r) for r in runs]}
    return out


def per_seed_values(evals: list[list[dict]], tier: str, k: int) -> list[list[float]]:
    return [[pass_at_k(p["n"], p["correct"], k) for p in e if tier in ("all", p["kind"])] for e in evals]


def table(results: dict, tiers: list[str], ks: list[int], samples: int = 2000) -> list[dict]:
    """One row per arm and tier: pass@k mean, interval and per-seed means; step time; wall time."""
    rows, costs = [], cost(results)
    for arm, res in results.items():
        walls = [sum(m.get("speed/step_time", 0.0) for m in h) for h in res["metrics"]]
        for tier in tiers:
            row = {"arm": arm, "tier": tier, "seeds": len(res["evals"]),
                   "s_per_step": costs.get(arm, {}).get("s_per_step"),
                   "wall_s": sum(walls) / len(walls) if walls else None}
            for k in ks:
                ps = per_seed_values(res["evals"], tier, k)
                flat = [v for s in ps for v in s]
                lo, hi = hier_bootstrap(ps, samples)
                row[f"pass@{k}"] = {"mean": sum(flat) / len(flat), "lo": lo, "hi": hi,
                                    "per_seed": [sum(s) / len(s) for s in ps]}
            rows.append(row)
    return rows


def differences(results: dict, reference: str, tier: str, k: int, samples: int = 2000, seed: int = 0) -> list[dict]:
    """Each arm's pass@k minus the reference arm's, with a 95% two-level bootstrap interval of the difference."""
    rng = random.Random(seed)
    ref = per_seed_values(results[reference]["evals"], tier, k)
    out = []
    for arm, res in results.items():
        if arm == reference:
            continue
        ps = per_seed_values(res["evals"], tier, k)
        lo, hi = _interval([_resampled_mean(ps, rng) - _resampled_mean(ref, rng) for _ in range(samples)])
        mean = sum(v for s in ps for v in s) / sum(map(len, ps)) - sum(v for s in ref for v in s) / sum(map(len, ref))
        out.append({"arm": arm, "minus": reference, "tier": tier, "k": k, "diff": mean, "lo": lo, "hi": hi,
                    "beyond_interval": lo > 0 or hi < 0})
    return out


def markdown(rows: list[dict], ks: list[int]) -> str:
    """The table as markdown: one line per arm and tier."""
    head = "| arm | tier | seeds | " + " | ".join(f"pass@{k} [95%] (per seed)" for k in ks) + " | s/step | wall s |"
    lines = [head, "|" + "---|" * (5 + len(ks))]
    for r in rows:
        cells = [f"{r[f'pass@{k}']['mean']:.3f} [{r[f'pass@{k}']['lo']:.3f}, {r[f'pass@{k}']['hi']:.3f}] "
                 f"({' '.join(f'{v:.2f}' for v in r[f'pass@{k}']['per_seed'])})" for k in ks]
        t = "" if r["s_per_step"] is None else f"{r['s_per_step']:.1f}"
        w = "" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
        lines.append(f"| {r['arm']} | {r['tier']} | {r['seeds']} | " + " | ".join(cells) + f" | {t} | {w} |")
    return "\n".join(lines)


def cost(results: dict, reference: str = "grpo") -> dict:
    """Mean step time per arm and its ratio to the reference arm's (None without it)."""
    out = {}
    for arm, res in results.items():
        steps = [m["speed/step_time"] for h in res["metrics"] for m in h if "speed/step_time" in m]
        if steps:
            out[arm] = {"s_per_step": sum(steps) / len(steps)}
    ref = out.get(reference, {}).get("s_per_step")
    for c in out.values():
        c["vs_grpo"] = c["s_per_step"] / ref if ref else None
    return out
