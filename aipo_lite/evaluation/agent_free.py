"""Agent-free evaluation: n samples per problem, unbiased pass@k, bootstrap intervals.

    result = evaluate(policy, load_tasks("synth", "test"), cfg)
    print(result.table_markdown()); result.save(run_dir / "eval.json")

Evaluation always uses the plain agent-free prompt (prompts.py): no consult tags, no
detector, no agents; what is measured is what the policy does alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from aipo_lite.config import Config
from aipo_lite.engine.sampling import sample
from aipo_lite.tasks.loading import Task
from aipo_lite.tasks.prompts import agent_free_prompt
from aipo_lite.tasks.rewards import task_reward


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), exact (no huge binomials) for any n.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def bootstrap_ci(values: list[float], samples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling problems with replacement."""
    if not values:
        return (float("nan"), float("nan"))
    if samples == 0 or len(values) == 1:
        m = sum(values) / len(values)
        return (m, m)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(samples))
    lo = means[int((1 - level) / 2 * (samples - 1))]
    hi = means[int((1 + level) / 2 * (samples - 1))]
    return (lo, hi)


@dataclass
class EvalResult:
    problems: list[dict]               # id, kind, answer, n, correct, completions
    ks: list[int]
    table: dict[str, dict[str, dict]]  # tier ('all' too) -> 'pass@k' -> {mean, lo, hi, problems}
    sampling: dict                     # sequences, generated_tokens, seconds, tokens_per_s, batch_size
    settings: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "EvalResult":
        return cls(**json.loads(Path(path).read_text()))

    def pass_at(self, k: int, tier: str = "all") -> float:
        return self.table[tier][f"pass@{k}"]["mean"]

    def minus(self, other: "EvalResult", k: int, tier: str = "all", samples: int = 1000) -> dict:
        """pass@k of this model minus `other`'s on the same problems (matched by id), with a 95%
        paired bootstrap interval over problems: {diff, lo, hi, problems, beyond_interval}."""
        theirs = {p["id"]: p for p in other.problems}
        mine = [p for p in self.problems if tier in ("all", p["kind"])]
        if any(p["id"] not in theirs for p in mine):
            raise ValueError("minus() needs both evaluations on the same problems")
        d = [pass_at_k(p["n"], p["correct"], k) - pass_at_k(theirs[p["id"]]["n"], theirs[p["id"]]["correct"], k)
             for p in mine]
        lo, hi = bootstrap_ci(d, samples)
        return {"diff": sum(d) / len(d), "lo": lo, "hi": hi, "problems": len(d), "beyond_interval": lo > 0 or hi < 0}

    def describe(self, k: int) -> str:
        """One sentence from this evaluation's own numbers: pass@1's range over the tiers, and
        which tiers pass@k lifts above pass@1 and which it leaves where they were."""
        tiers = {t: (r["pass@1"]["mean"], r[f"pass@{k}"]["mean"]) for t, r in self.table.items() if t != "all"}
        lo, hi = min(tiers, key=lambda t: tiers[t][0]), max(tiers, key=lambda t: tiers[t][0])
        lifted = [t for t, (p1, pk) in tiers.items() if pk > p1]
        flat = [t for t in tiers if t not in lifted]
        text = (f"the agent-free pass@1 ranges from {tiers[lo][0]:.2f} ({lo}) to {tiers[hi][0]:.2f} ({hi}) over "
                f"{len(tiers)} tier(s); pass@{k} lifts {len(lifted)} of them above pass@1 ("
                + ", ".join(f"{t} {tiers[t][0]:.2f} → {tiers[t][1]:.2f}" for t in lifted) + ")")
        if flat:
            text += (f"; {', '.join(f'{t} ({tiers[t][1]:.2f})' for t in flat)} stay where pass@1 left them: "
                     f"no sample beyond the first solved a problem there")
        return text

    def table_markdown(self) -> str:
        head = "| tier | problems | " + " | ".join(f"pass@{k} [95% CI]" for k in self.ks) + " |"
        rows = [head, "|" + "---|" * (len(self.ks) + 2)]
        for tier, row in self.table.items():
            cells = [f"{row[f'pass@{k}']['mean']:.3f} [{row[f'pass@{k}']['lo']:.2f}, "
                     f"{row[f'pass@{k}']['hi']:.2f}]" for k in self.ks]
            rows.append(f"| {tier} | {row[f'pass@{self.ks[0]}']['problems']} | " + " | ".join(cells) + " |")
        return "\n".join(rows)


def pass_at_k_table(problems: list[dict], ks: list[int], bootstrap_samples: int = 1000,
                    seed: int = 0) -> dict[str, dict[str, dict]]:
    """Per-tier (and 'all') mean pass@k over problems with bootstrap intervals."""
    tiers: dict[str, list[dict]] = {}
    for p in problems:
        tiers.setdefault(p["kind"], []).append(p)
    if len(tiers) > 1:
        tiers["all"] = problems
    table = {}
    for tier, group in tiers.items():
        table[tier] = {}
        for k in ks:
            values = [pass_at_k(p["n"], p["correct"], k) for p in group]
            lo, hi = bootstrap_ci(values, bootstrap_samples, seed)
            table[tier][f"pass@{k}"] = {"mean": sum(values) / len(values), "lo": lo, "hi": hi,
                                        "problems": len(group)}
    return table


def evaluate(policy, tasks: list[Task], cfg: Config, progress: bool = True,
             keep_completions: bool = True) -> EvalResult:
    """Sample cfg.eval_n agent-free completions per task and score them (cfg.eval_* fields)."""
    if not tasks:
        raise ValueError("evaluate() got no tasks: check eval_tiers / eval_problems_per_tier")
    prompts = [agent_free_prompt(policy.tokenizer, t.question, cfg.prompt_style, t.kind) for t in tasks]
    completions, stats = sample(
        policy.sampler(), policy.tokenizer, prompts, n=cfg.eval_n, temperature=cfg.eval_temperature,
        top_p=cfg.eval_top_p, max_new_tokens=cfg.eval_max_new_tokens,
        batch_size=cfg.eval_batch_size, seed=cfg.seed, progress=progress, desc="evaluate")
    problems = []
    for task, outs in zip(tasks, completions):
        rewards = [task_reward(task, c.text, cfg.reward_mode) for c in outs]
        problems.append({
            "id": task.id, "kind": task.kind, "answer": task.answer, "n": len(outs),
            "correct": int(sum(rewards)),
            "completions": [c.text for c in outs] if keep_completions else [],
            "rewards": rewards,
        })
    return EvalResult(
        problems=problems, ks=list(cfg.eval_ks),
        table=pass_at_k_table(problems, cfg.eval_ks, cfg.bootstrap_samples, cfg.seed),
        sampling={"sequences": stats.sequences, "generated_tokens": stats.generated_tokens,
                  "seconds": round(stats.seconds, 2), "tokens_per_s": round(stats.tokens_per_s, 1),
                  "batch_size": stats.batch_size},
        settings={k: getattr(cfg, k) for k in (
            "model", "eval_n", "eval_temperature", "eval_top_p", "eval_max_new_tokens",
            "prompt_style", "reward_mode", "seed")} | {"dtype": str(next(policy.model.parameters()).dtype)},
    )


def warm_up(policy, cfg: Config, tasks: list) -> None:
    """A resumed process's stand-in for the step-0 evaluation an uninterrupted process ran
    first: the held-out prompts once through the sampler, a few tokens each, from a generator
    of its own (no state of the run is touched). Without it the resumed process's first
    step was its first forward, and that step alone differed from the uninterrupted run's in
    about 1 resumed process in 10 on 2 threads (README, Machines and precision)."""
    prompts = [agent_free_prompt(policy.tokenizer, t.question, cfg.prompt_style, t.kind) for t in tasks]
    sample(policy.sampler(), policy.tokenizer, prompts, n=cfg.train_eval_n, temperature=1.0, max_new_tokens=4,
           batch_size=cfg.eval_batch_size, generator=torch.Generator(policy.device).manual_seed(0), progress=False)


def heldout_eval(policy, cfg: Config, tasks: list) -> dict:
    """Agent-free pass@1 on the held-out slice (test split), overall and per tier."""
    ecfg = dataclasses.replace(cfg, eval_n=cfg.train_eval_n, eval_ks=[1], bootstrap_samples=0)
    table = evaluate(policy, tasks, ecfg, progress=False, keep_completions=False).table
    return {f"eval/pass1/{tier}": row["pass@1"]["mean"] for tier, row in table.items()} | {
        "eval/pass1": table["all" if "all" in table else next(iter(table))]["pass@1"]["mean"]}
