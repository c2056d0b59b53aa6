"""Loss math of the trainer: advantages, token losses, agent-token weights, aggregation.

Pure torch on tensors; no model code. The trainer gathers log-probs and masks, and calls these.

What comes from the papers (docs/methods.md §1, §4):
- GRPO advantage (r - mean) / (std + 1e-6) and the PPO clipped token loss with eps = 0.2;
  each sequence's token mean, then the mean over sequences.
- Dr.GRPO: no std division; token losses summed and divided by a constant (max completion length).
- DAPO: clip-higher (eps_low 0.2, eps_high 0.28), token-level mean over the whole batch,
  dynamic sampling (`keep_group` drops groups whose rewards are all equal).
- RLOO: leave-one-out baseline r_i - mean_{j != i} r_j.
- k3 KL estimator exp(ref - logp) - (ref - logp) - 1.
- LUFFY's policy shaping f(pi) = pi / (pi + gamma), gamma = 0.1 (the `luffy` agent weight).

What is our interpretation, not the AIPO paper's code (docs/methods.md §2-§3): the AIPO abstract says
only "a tailored importance sampling coefficient with a clipping strategy". The `aipo` weight,
the span-level geometric-mean probability w_s = clip(exp(mean_{t in s} log pi(a_t)), w_min, w_max)
(stop-gradient, one weight per agent span), its defaults, the baselines of assisted rollouts
(`independent`, `mixed`, `split`) and the other agent weights as ablations (`sft`, `is`,
`is_clip`) are this kit's choices, documented in docs/methods.md §3.

Other choices made here:
- std is the population std (unbiased=False): for 0/1 rewards it is sqrt(p(1-p)), defined for
  G = 1, and a group of equal rewards gives exactly 0. (TRL's GRPO uses the sample std; the two
  differ by sqrt(G/(G-1)), a constant rescale of the advantages for fixed G.)
- `is`: a deterministic agent's behaviour probability is taken as 1, so the ratio is pi itself.
- `is_clip`: loss -A * clamp(pi, 1-eps_low, 1+eps_high), a plain clamp on both signs of A
  (not PPO's min), so the gradient is zero outside the clip region whatever the sign of A.
- `rllm`: the form read from the public code base apparently by AIPO's first author (GitHub
  jnanliu/rllm, branch agentic-learning, agentic_learning/verl/dp_actor.py compute_policy_loss,
  commit 3cda954; not confirmed to be the paper's loss): for tokens outside its `result_mask` the
  ratio is pi itself (behaviour probability 1), inside a pessimistic max with a floor of 0.1 in
  value whose gradient is 0.1 grad log pi. Worked out: w = pi, except w = 0.1 where A < 0 and
  pi < 0.1 (the floor only strengthens the push-down of improbable tokens; for A > 0 it vanishes
  like `is`). Its shipped scripts mask those tokens out of the loss (mask_result=False), so this
  branch never trained there (docs/methods.md §3).
- For every agent weight, d loss_t / d logp_t = -A_t * w_t; `agent_token_loss` returns w_t
  (detached) so the trainer can log it.
"""

from __future__ import annotations

import torch
from torch import Tensor

ALGORITHMS = ("grpo", "drgrpo", "dapo", "rloo")
WEIGHTS = ("sft", "is", "is_clip", "luffy", "aipo", "rllm")
RLLM_FLOOR = 0.1  # the floor of the `rllm` weight (jnanliu/rllm, agentic_learning/verl/dp_actor.py)
VIEWS = ("internalized", "interactive")
CREDITS = ("post_consult", "all")
BASELINES = ("independent", "mixed", "split")

STD_EPS = 1e-6
DAPO_EPS_HIGH = 0.28


def check_choice(field: str, value: str, valid: tuple) -> None:
    """Raise ValueError naming `field` and the valid values when `value` is not one of them."""
    if value not in valid:
        raise ValueError(f"{field}={value!r} is not valid; choose one of {list(valid)}")


def eps_high(algorithm: str, clip_eps_low: float, clip_eps_high: float) -> float:
    """The ratio cap margin: `clip_eps_high` when > 0, else 0.28 for dapo (clip-higher), else eps_low."""
    check_choice("algorithm", algorithm, ALGORITHMS)
    if clip_eps_high > 0:
        return float(clip_eps_high)
    return DAPO_EPS_HIGH if algorithm == "dapo" else float(clip_eps_low)


def _float(x: Tensor) -> Tensor:
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def _std(x: Tensor) -> Tensor:
    return x.std(unbiased=False) if x.numel() > 1 else x.new_zeros(())


def base_advantages(rewards: Tensor, algorithm: str) -> Tensor:
    """Advantages of one group of G rollouts, rewards shape [G] (docs/methods.md §1).

    grpo, dapo: (r - mean) / (std + 1e-6), population std; drgrpo: r - mean;
    rloo: r_i - mean_{j != i} r_j (0 when G == 1). Empty in, empty out.
    """
    check_choice("algorithm", algorithm, ALGORITHMS)
    r = _float(rewards)
    g = r.numel()
    if g == 0:
        return r.clone()
    if algorithm == "rloo":
        if g == 1:
            return torch.zeros_like(r)
        return r - (r.sum() - r) / (g - 1)
    centred = r - r.mean()
    if algorithm == "drgrpo":
        return centred
    return centred / (_std(r) + STD_EPS)


def group_advantages(r_ind: Tensor, r_asst: Tensor, algorithm: str,
                     baseline: str = "independent") -> tuple[Tensor, Tensor]:
    """(A_ind, A_asst) for a group of independent and assisted rollouts (docs/methods.md §3).

    independent: A_ind is the plain base advantage of the independent subgroup; assisted
      rollouts are measured against the independent mean: (r_asst - mean(r_ind)) /
      (std(r_all) + 1e-6) for grpo/dapo, r_asst - mean(r_ind) for drgrpo and rloo (an assisted
      rollout is not in r_ind, so leave-one-out is just the independent mean). With no
      independent rollouts the assisted ones get their own base advantage.
    mixed: one baseline over the whole group (as LUFFY). split: each subgroup its own.
    A group whose rewards are all equal gets all-zero advantages in every mode.
    """
    check_choice("algorithm", algorithm, ALGORITHMS)
    check_choice("baseline", baseline, BASELINES)
    r_ind, r_asst = _float(r_ind), _float(r_asst)
    if baseline == "mixed":
        a = base_advantages(torch.cat([r_ind, r_asst]), algorithm)
        return a[: r_ind.numel()], a[r_ind.numel():]
    a_ind = base_advantages(r_ind, algorithm)
    if baseline == "split" or r_ind.numel() == 0:
        return a_ind, base_advantages(r_asst, algorithm)
    gain = r_asst - r_ind.mean()
    if algorithm in ("grpo", "dapo"):
        gain = gain / (_std(torch.cat([r_ind, r_asst])) + STD_EPS)
    return a_ind, gain


def _per_token(adv: Tensor, like: Tensor) -> Tensor:
    """Broadcast per-sequence advantages [B] against per-token tensors [B, T]."""
    adv = adv.to(like.dtype)
    while adv.dim() < like.dim() and adv.dim() > 0:
        adv = adv.unsqueeze(-1)
    return adv.expand_as(like)


def policy_token_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, eps_low: float,
                      eps_high: float) -> tuple[Tensor, Tensor, Tensor]:
    """PPO clipped loss per token: -min(rho*A, clip(rho, 1-eps_low, 1+eps_high)*A), rho = pi/pi_old.

    `adv` is per token (same shape as logp) or per sequence ([B] against [B, T]) or a scalar.
    Returns (loss_t, clipped_low, clipped_high): the boolean masks of the tokens whose gradient
    the clip zeroes: rho < 1-eps_low with A < 0, rho > 1+eps_high with A > 0.
    """
    a = _per_token(adv, logp)
    ratio = torch.exp(logp - old_logp)
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    loss_t = -torch.minimum(ratio * a, clipped * a)
    r = ratio.detach()
    clipped_low = (r < 1.0 - eps_low) & (a < 0)
    clipped_high = (r > 1.0 + eps_high) & (a > 0)
    return loss_t, clipped_low, clipped_high


def tis_weight(trainer_logp: Tensor, sampler_logp: Tensor, cap: float) -> Tensor:
    """Truncated importance weight min(pi_trainer / pi_sampler, cap), detached; cap 0 = ones.

    Corrects for the sampler not being the trainer (a merged bf16 copy, another kernel, vLLM;
    for internalized tokens also another prompt): Yao et al. 2025's TIS, TRL's
    vllm_importance_sampling_correction (token_truncate), verl's rollout correction."""
    if cap == 0:
        return torch.ones_like(trainer_logp)
    return torch.exp(trainer_logp.detach() - sampler_logp).clamp(max=cap)


def span_geomean(logp: Tensor, span: Tensor) -> Tensor:
    """Per token: exp(mean log-prob of the token's span), detached. Span ids may be any longs."""
    ids, inv = torch.unique(span, return_inverse=True)
    lp = logp.detach()
    sums = torch.zeros(ids.numel(), dtype=lp.dtype, device=lp.device).index_add_(0, inv, lp)
    counts = torch.bincount(inv, minlength=ids.numel()).to(lp.dtype)
    return torch.exp(sums / counts)[inv]


def agent_token_loss(logp: Tensor, span: Tensor, adv: Tensor, mode: str, w_min: float = 0.5,
                     w_max: float = 1.0, gamma: float = 0.1, eps_low: float = 0.2,
                     eps_high: float = 0.2) -> tuple[Tensor, Tensor]:
    """Loss of AGENT tokens (off-policy feedback text), with d loss_t / d logp_t = -adv_t * w_t.

    logp [N]: log pi_theta of the agent tokens; span [N] long: the agent span each token belongs
    to (unique across the batch); adv [N] (or a scalar). pi = exp(logp). Returns (loss_t, w_t):
      sft: w = 1, loss -A logp;  is: w = pi, loss -A pi;
      is_clip: w = pi inside [1-eps_low, 1+eps_high] else 0, loss -A clamp(pi, ...);
      luffy: w = gamma pi / (pi + gamma)^2, loss -A pi / (pi + gamma);
      aipo: w = clip(span geometric-mean prob, w_min, w_max), stop-gradient, loss -A w logp;
      rllm: w = pi, or RLLM_FLOOR where A < 0 and pi < RLLM_FLOOR; loss -A max(pi, floor) for A < 0
            (the floor's value with gradient floor * grad log pi), -A pi otherwise.
    """
    check_choice("agent_weight", mode, WEIGHTS)
    a = _per_token(adv, logp)
    if logp.numel() == 0:
        return logp * a, torch.zeros_like(logp).detach()
    pi = torch.exp(logp)
    p = pi.detach()
    if mode == "sft":
        return -a * logp, torch.ones_like(p)
    if mode == "is":
        return -a * pi, p
    if mode == "is_clip":
        lo, hi = 1.0 - eps_low, 1.0 + eps_high
        inside = (p >= lo) & (p <= hi)
        return -a * pi.clamp(lo, hi), torch.where(inside, p, torch.zeros_like(p))
    if mode == "luffy":
        return -a * pi / (pi + gamma), gamma * p / (p + gamma) ** 2
    if mode == "rllm":
        floored = (a < 0) & (p < RLLM_FLOOR)
        return -a * torch.where(floored, RLLM_FLOOR * pi / p, pi), torch.where(floored, torch.full_like(p, RLLM_FLOOR), p)
    w = span_geomean(logp, span).clamp(w_min, w_max)
    return -a * w * logp, w


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 estimator of KL(pi_theta || pi_ref) per token: exp(ref - logp) - (ref - logp) - 1 (>= 0)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def aggregate(loss_t: Tensor, mask: Tensor, algorithm: str, max_len: int, n_seqs: int,
              n_tokens: int) -> Tensor:
    """This micro-batch's share of the step loss; summing over a step's micro-batches gives the
    whole-batch loss (gradient accumulation without rescaling).

    loss_t, mask [B, T]; mask is bool or float, nonzero = the token is in the loss (masked-out
    entries may hold anything, even NaN). n_seqs: sequences in the whole step with >= 1 loss
    token; n_tokens: loss tokens in the whole step; max_len: Dr.GRPO's constant.
      grpo, rloo: sum over sequences of (mean of its loss tokens) / n_seqs
      drgrpo: sum of loss tokens / max_len / n_seqs;  dapo: sum of loss tokens / n_tokens
    """
    check_choice("algorithm", algorithm, ALGORITHMS)
    m = mask != 0
    masked = torch.where(m, loss_t, torch.zeros_like(loss_t))
    if algorithm == "dapo":
        return masked.sum() / max(n_tokens, 1)
    if algorithm == "drgrpo":
        return masked.sum() / max(max_len, 1) / max(n_seqs, 1)
    count = m.sum(dim=-1).clamp(min=1).to(masked.dtype)
    return (masked.sum(dim=-1) / count).sum() / max(n_seqs, 1)


def keep_group(rewards: Tensor) -> bool:
    """DAPO dynamic sampling: keep a group only if its rewards are not all equal (empty: drop)."""
    if rewards.numel() == 0:
        return False
    return bool(rewards.max() != rewards.min())
