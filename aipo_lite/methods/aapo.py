"""AAPO: advantage momentum against the frozen reference (arXiv 2505.14264; docs/methods.md §4).

Their code (JianxXiong/AAPO, open-r1 AAPOTrainer): the reference model samples as many
rollouts as the policy, for the same prompts; the i-th policy rollout is paired with the i-th
reference rollout, and
    A_i = (r_i − mean r) / (std r + eps) + clip(r_i − r_i^ref, −0.2, 0.28),
with the loss −A_i · log π_θ(token) averaged over all completion tokens of the batch: no
ratio, no clip, no KL. Where the group's rewards are all equal GRPO's advantage is 0 but
AAPO's is not whenever the reference did better or worse on the paired sample.

In the kit: the reference is the policy with its LoRA adapter disabled, sampling agent-free
rollouts (from the same prefix for RRL replay groups). The first term is the kit's group
advantage (`algorithm`, assisted rollouts against `baseline`; population std + 1e-6 where
their code uses the sample std + 1e-4); the momentum term is added to every rollout of the
group, independent or assisted, paired by position in the group. The trainer
(micro_batch_loss) uses −A · log π (times the truncated sampler/trainer correction, as every
POLICY token) and the token-level mean over the step, as their code.
"""

from __future__ import annotations

from aipo_lite.records import Rollout
from aipo_lite.rollout.detector import Detector
from aipo_lite.rollout.groups import rollout_group

CLIP_LOW, CLIP_HIGH = 0.2, 0.28


def momentum(r: float, r_ref: float, low: float = CLIP_LOW, high: float = CLIP_HIGH) -> float:
    """clip(r − r_ref, −low, high)."""
    return min(high, max(-low, r - r_ref))


class _Reference:
    """The policy seen as its frozen reference: sampling goes through the model itself (the
    caller holds `disable_adapter()`), not through the merged copy of the current weights."""

    def __init__(self, policy):
        self.tokenizer, self._model = policy.tokenizer, policy.model

    def sampler(self):
        return self._model


def reference_rewards(policy, groups: list[list[Rollout]], cfg, generator,
                      prefixes: dict[str, list[int]] | None = None) -> None:
    """Sample len(group) agent-free reference rollouts per group (same task, same prefix) and
    set each policy rollout's `ref_reward` to its paired (same position) reference reward."""
    if not groups:
        return
    tasks = [g[0].task for g in groups]
    size = max(len(g) for g in groups)
    with policy.model.disable_adapter():
        ref, _ = rollout_group(_Reference(policy), tasks, {}, Detector(use_entropy=False, verify_before_commit=False),
                               size, 0, temperature=cfg.rollout_temperature,
                               max_new_tokens=cfg.rollout_max_new_tokens, prompt_style=cfg.prompt_style,
                               reward_mode=cfg.reward_mode, generator=generator, prefixes=prefixes)
    for g, rg in zip(groups, ref):
        for r, q in zip(g, rg):
            r.ref_reward = q.reward
