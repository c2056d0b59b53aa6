"""One training step's rollouts: the method parts composed (docs/methods.md §3-§4).

    fresh prompts ──> guidance.step_rollouts   AIPO: g_ind independent + g_asst assisted (fading)
                 ──> arpo.add_branches         ARPO: + arpo_branches branches per group
    buffer ─────────> rrl.replay_groups        RRL: rrl_groups groups from stored prefixes
    all groups ─────> aapo.reference_rewards   AAPO: paired reference rewards (advantage='aapo')

Each part is off by default and switched on by its config field (Config.method names the
combination); every combination keeps a step's rollouts per group and groups per step, so
arms compare at equal budget in rollouts (ARPO's branches are extra rollouts of a group: give
the other arms the same group size). The trainer turns the groups into sequences, advantages
and one update (trainer.py), then lets RRL harvest promising prefixes from the fresh groups.
"""

from __future__ import annotations

import math

import torch

from aipo_lite.methods import aapo, arpo, rrl
from aipo_lite.methods.guidance import step_rollouts
from aipo_lite.records import Prov


def task_stream(tasks: list, seed: int, start: int, count: int) -> list:
    """Tasks start..start+count of an endless stream: epoch e is a shuffle seeded seed + e."""
    out = []
    for i in range(start, start + count):
        epoch, j = divmod(i, len(tasks))
        perm = torch.randperm(len(tasks), generator=torch.Generator().manual_seed(seed + epoch))
        out.append(tasks[int(perm[j])])
    return out


def step_groups(policy, tasks: list, buffer, agents: dict, detector, cfg, step: int, cursor: int, generator):
    """(fresh groups, replay groups, stats) of one step; stats['fresh'] = fresh prompts used."""
    entries = buffer.take(cfg.rrl_groups) if buffer is not None else []
    batch = task_stream(tasks, cfg.seed, cursor, cfg.prompts_per_step - len(entries))
    groups, stats = step_rollouts(policy, batch, agents, detector, cfg, step, generator)
    groups, bstats = arpo.add_branches(policy, groups, cfg, step, generator)
    replays, rstats = rrl.replay_groups(policy, entries, {t.id: t for t in tasks}, cfg, generator)
    if cfg.advantage == "aapo":
        aapo.reference_rewards(policy, groups, cfg, generator)
        aapo.reference_rewards(policy, replays, cfg, generator, prefixes={e.task_id: e.prefix for e in entries})
    branch_tokens = sum(len(r.ids) - r.prefix_len for g in groups for r in g if r.parent >= 0)
    n_all = sum(map(len, groups)) + sum(map(len, replays))
    ref = [r.ref_reward for g in groups + replays for r in g if r.ref_reward is not None]
    out = {**stats, "policy_tokens": stats["policy_tokens"] + rstats["policy_tokens"] + branch_tokens,
           "fresh": len(batch),
           "arpo_branches_per_group": bstats.get("branches_per_group"),
           "arpo_branch_after_agent": bstats.get("branch_after_agent_frac"),
           "arpo_branch_reward": bstats.get("branch_reward"),
           "rrl_replayed_frac": sum(map(len, replays)) / max(n_all, 1) if buffer is not None else None,
           "aapo_ref_reward": sum(ref) / len(ref) if ref else None}
    return groups, replays, out


def rollout_metrics(groups) -> dict:
    flat = [r for g in groups for r in g]
    ind = [r.reward for r in flat if not r.assisted]
    asst = [r for r in flat if r.assisted and r.parent < 0]  # (a branch consults no agent itself)
    pol_ent = [e for r in flat for e, p in zip(r.entropies, r.prov) if p == Prov.POLICY and not math.isnan(e)]
    m = {"reward_mean": _mean([r.reward for r in flat]), "reward_ind": _mean(ind),
         "reward_asst": _mean([r.reward for r in flat if r.assisted]), "entropy": _mean(pol_ent),
         "completion_len": _mean([len(r.ids) for r in flat]),
         "consult_rate": _mean([sum(1 for c in r.consults if c.reply) for r in asst])}
    for key in ("verify", "knowledge", "reasoning", "tag", "entropy", "commit", "line"):
        m[f"consult_rate_{key}"] = _mean([sum(1 for c in r.consults if c.reply and key in (c.agent, c.trigger))
                                          for r in asst])
    return m


def _mean(xs) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def _completions_table(groups, n: int = 4) -> str:
    lines = ["  asst reward consults  completion"]
    for r in [r for g in groups for r in g][:: max(1, sum(map(len, groups)) // n)][:n]:
        text = r.text.replace("\n", " | ")[:110]
        lines.append(f"  {'yes' if r.assisted else 'no ':<4} {r.reward:<6.0f} {len(r.consults):<9} {text}")
    return "\n".join(lines)
