"""How much guidance a training step gets: guidance that fades, guidance only where needed.

The field gets agent-free skill from guidance when the guidance goes away over training
(UFT: hints for the first 300 of 500 steps; LUFFY: off-policy share decayed) and when it goes
where the policy alone gets no signal (G2RPO-A guides a few rollouts of hard groups). Two
options, composable; both keep a group's size at g_ind + g_asst (equal budget per step):

- `guidance_fade_steps` > 0: the assisted rollouts per group fall linearly to zero over that
  many steps, g_asst(s) = round(g_asst * max(0, 1 - s / guidance_fade_steps)); the freed
  slots become independent rollouts.
- `guide_only_failed`: each problem's g_ind independent rollouts come first; a problem whose
  independent rollouts all failed gets its g_asst(s) assisted rollouts, any other problem
  g_asst(s) more independent ones. (Two decode passes per step instead of one.)
"""

from __future__ import annotations

from aipo_lite.rollout.groups import rollout_group


def assisted_per_group(cfg, step: int) -> int:
    """Assisted rollouts per group at training step `step` (0-based)."""
    if cfg.guidance_fade_steps <= 0:
        return cfg.g_asst
    return round(cfg.g_asst * max(0.0, 1.0 - step / cfg.guidance_fade_steps))


def step_rollouts(policy, tasks: list, agents: dict, detector, cfg, step: int, generator):
    """The step's rollout groups (rollout.rollout_group) under cfg's guidance schedule.
    Returns (groups, stats); stats adds 'assisted_per_group' and 'guided_groups' (share of
    groups that got assisted rollouts)."""
    k = assisted_per_group(cfg, step)
    size = cfg.g_ind + cfg.g_asst
    common = dict(consult_budget=cfg.consult_budget, temperature=cfg.rollout_temperature,
                  max_new_tokens=cfg.rollout_max_new_tokens, prompt_style=cfg.prompt_style,
                  reward_mode=cfg.reward_mode, generator=generator, guidance_form=cfg.guidance_form,
                  concurrency=cfg.agent_concurrency if cfg.agent_backend == "openai" else 1)
    if not cfg.guide_only_failed or k == 0:
        groups, stats = rollout_group(policy, tasks, agents, detector, size - k, k, **common)
        return groups, {**stats, "assisted_per_group": k, "guided_groups": float(k > 0)}
    groups, stats = rollout_group(policy, tasks, agents, detector, size - k, 0, **common)
    failed = [i for i, g in enumerate(groups) if all(r.reward == 0 for r in g)]
    for idx, (g_ind, g_asst) in (([i for i in range(len(tasks)) if i not in failed], (k, 0)), (failed, (0, k))):
        if idx:
            more, st = rollout_group(policy, [tasks[i] for i in idx], agents, detector, g_ind, g_asst, **common)
            for i, g in zip(idx, more):
                groups[i] = groups[i] + g
            stats = {key: stats[key] + st[key] for key in stats}
    return groups, {**stats, "assisted_per_group": k, "guided_groups": len(failed) / max(len(tasks), 1)}
