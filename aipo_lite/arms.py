"""The method grid's arms by name: each a change of one base config at equal rollouts per step
(grid.py trains and tabulates them). Plain Python on purpose: the config validates `grid_arms`
against these names without importing the training stack."""

from __future__ import annotations

WEIGHT_ARMS = ("sft", "is", "is_clip", "luffy", "rllm")
OTHER_ALGORITHMS = ("drgrpo", "dapo", "rloo")  # besides grpo (methods/objectives.ALGORITHMS)


def _split(c) -> tuple[int, int]:
    """(G, half): the base's rollouts per group and half of them."""
    g = c.g_ind + c.g_asst
    return g, max(1, g // 2)


_PLAIN = dict(guidance_fade_steps=0, guide_only_failed=False)
ARMS = {
    # plain RLVR and AIPO (guidance.py)
    "grpo": lambda c: dict(g_ind=_split(c)[0], g_asst=0, **_PLAIN),
    "aipo": lambda c: {},
    "aipo_fade": lambda c: dict(guidance_fade_steps=c.train_steps),
    "aipo_failed": lambda c: dict(guide_only_failed=True),
    "aipo_tagged": lambda c: dict(guidance_form="tagged"),
    **{f"aipo_{w}": (lambda c, w=w: dict(agent_weight=w)) for w in WEIGHT_ARMS},
    "sft": lambda c: dict(advantage="sft", agent_weight="sft", credit="all"),
    # the other seeds alone (no agents) and with AIPO; every arm keeps G rollouts per group
    "arpo": lambda c: dict(g_ind=_split(c)[0] - _split(c)[1], g_asst=0, arpo_branches=_split(c)[1], **_PLAIN),
    "aapo": lambda c: dict(g_ind=_split(c)[0], g_asst=0, advantage="aapo", **_PLAIN),
    "rrl": lambda c: dict(g_ind=_split(c)[0], g_asst=0, rrl_groups=max(1, c.prompts_per_step // 4), **_PLAIN),
    "aipo+arpo": lambda c: dict(g_asst=max(1, c.g_asst // 2), arpo_branches=c.g_asst - max(1, c.g_asst // 2))
    if c.g_asst > 1 else dict(g_ind=max(1, c.g_ind // 2), arpo_branches=c.g_ind - max(1, c.g_ind // 2)),
    "aipo+aapo": lambda c: dict(advantage="aapo"),
    "aipo+rrl": lambda c: dict(rrl_groups=max(1, c.prompts_per_step // 4)),
    # the other base RLVR algorithms alone and with AIPO (does AIPO improve on each?)
    **{a: (lambda c, a=a: dict(g_ind=_split(c)[0], g_asst=0, algorithm=a, **_PLAIN)) for a in OTHER_ALGORITHMS},
    **{f"aipo_{a}": (lambda c, a=a: dict(algorithm=a)) for a in OTHER_ALGORITHMS},
}
