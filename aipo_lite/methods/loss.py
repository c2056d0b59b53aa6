"""The step's token loss from per-token tensors: one function behind the kit's trainer and the
TRL bridge (trl_bridge.py), so both train the same objective (tests/test_trl_bridge.py checks it).

POLICY tokens: the PPO clipped loss with the ratio against the trainer's own pre-update log-prob
(behaviour_logp='trainer': its value is 1, one optimizer step per rollout batch) weighted by the
truncated importance weight min(pi_trainer / pi_sampler, tis_cap); or the ratio against the
sampler's log-prob, clipped (behaviour_logp='sampler'); AAPO: -A log pi with the same weight, no
ratio, no clip. AGENT tokens: objectives.agent_token_loss with the configured agent weight.
Optional k3 KL to the reference on every loss token. Then objectives.aggregate.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aipo_lite.methods import objectives as obj
from aipo_lite.records import Prov


def token_loss(logp: Tensor, kind: Tensor, in_loss: Tensor, sampler_logp: Tensor, adv: Tensor,
               span: Tensor, same_prompt: Tensor, cfg, n_seqs: int, n_tokens: int,
               ref_logp: Tensor | None = None, old_logp: Tensor | None = None,
               reliance_rows: Tensor | None = None) -> tuple[Tensor, dict]:
    """This micro-batch's share of the step loss, and its statistics.

    All per-token tensors are [B, C]: logp (log pi_theta, with grad), kind (Prov), in_loss (bool),
    sampler_logp (nan where none: AGENT tokens, replayed prefixes), adv (per token), span (agent
    span ids unique across the batch), same_prompt [B, 1] or [B, C] bool (trained under the prompt
    it was sampled with: the sampler gap is measured on those). n_seqs / n_tokens: the whole
    step's sequences with a loss token and loss tokens (objectives.aggregate). old_logp: the
    ratio's denominator when the policy moved since sampling (TRL's num_iterations > 1);
    default: logp's detached value. reliance_rows [B] bool: the rows whose hint reliance is
    measured (assisted successes): per token, log pi of the rollout under the agent-free prompt
    (the trainer's view: agent tokens scored as if the policy wrote them) minus under the context
    it was sampled in (the sampler's log-prob of policy tokens; agent tokens given, log 1 = 0)."""
    pol = in_loss & (kind == Prov.POLICY) & ~sampler_logp.isnan()
    agent = in_loss & (kind == Prov.AGENT)
    mask = pol | agent
    same = pol & same_prompt
    eps_hi = obj.eps_high(cfg.algorithm, cfg.clip_eps_low, cfg.clip_eps_high)
    loss_t = torch.zeros_like(logp)
    gap = (logp.detach() - sampler_logp)[same]
    st = {"pol_tokens": int(pol.sum()), "clip_low": 0, "clip_high": 0, "w": torch.empty(0), "kl_sum": 0.0,
          "gap_n": gap.numel(), "gap_abs_sum": float(gap.abs().sum()),
          "gap_kl_sum": float(obj.kl_k3(sampler_logp[same], logp.detach()[same]).sum()), "tis_sum": 0.0,
          "tis_capped": 0, "reliance_sum": 0.0, "reliance_n": 0}
    if reliance_rows is not None and reliance_rows.any():  # assisted successes: hint reliance (HiLL)
        lp_now = logp.detach()
        scored = (kind == Prov.AGENT) | ((kind == Prov.POLICY) & ~sampler_logp.isnan())
        under_guidance = torch.where(kind == Prov.POLICY, sampler_logp, torch.zeros_like(lp_now))
        diff = torch.where(scored, lp_now - under_guidance.nan_to_num(0.0), torch.zeros_like(lp_now))
        per_row = diff.sum(-1) / scored.sum(-1).clamp(min=1)
        st["reliance_sum"], st["reliance_n"] = float(per_row[reliance_rows].sum()), int(reliance_rows.sum())
    if pol.any():
        lp_pol = logp[pol]
        denom = (old_logp if old_logp is not None else logp.detach())[pol]
        if cfg.advantage == "aapo" or cfg.behaviour_logp == "trainer":
            w = obj.tis_weight(lp_pol, sampler_logp[pol], cfg.tis_cap)
            if cfg.advantage == "aapo":  # their loss: -A log pi, no ratio, no clip
                lp, lo = -adv[pol] * lp_pol * w, torch.zeros_like(pol[pol])
                hi = lo
            else:
                lp, lo, hi = obj.policy_token_loss(lp_pol, denom, adv[pol], cfg.clip_eps_low, eps_hi)
                lp = lp * w
            st["tis_sum"], st["tis_capped"] = float(w.sum()), int((w >= cfg.tis_cap).sum()) if cfg.tis_cap else 0
        else:
            lp, lo, hi = obj.policy_token_loss(lp_pol, sampler_logp[pol], adv[pol], cfg.clip_eps_low, eps_hi)
            st["tis_sum"] = float(pol.sum())
        loss_t = loss_t.index_put(pol.nonzero(as_tuple=True), lp)
        st["clip_low"], st["clip_high"] = int(lo.sum()), int(hi.sum())
    if agent.any():
        la, w = obj.agent_token_loss(logp[agent], span[agent], adv[agent], cfg.agent_weight, cfg.agent_w_min,
                                     cfg.agent_w_max, cfg.luffy_gamma, cfg.clip_eps_low, eps_hi)
        loss_t = loss_t.index_put(agent.nonzero(as_tuple=True), la)
        st["w"] = w.detach().cpu()
    if cfg.kl_beta > 0 and ref_logp is not None:
        kl = obj.kl_k3(logp, ref_logp)
        loss_t = loss_t + cfg.kl_beta * torch.where(mask, kl, torch.zeros_like(kl))
        st["kl_sum"] = float(kl[mask].sum())
    loss_t = torch.where(mask, loss_t, torch.zeros_like(loss_t))
    agg = "dapo" if cfg.advantage == "aapo" else cfg.algorithm  # AAPO: token mean over the step, as their code
    return obj.aggregate(loss_t, mask, agg, cfg.rollout_max_new_tokens, n_seqs, n_tokens), st
