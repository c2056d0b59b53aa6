"""ARPO: entropy-adaptive branching after agent feedback (arXiv 2507.19849; docs/methods.md §4).

A group of M = N + B rollouts: N are sampled whole first (the g_ind + g_asst of guidance.py),
then B = `arpo_branches` more are branched from points inside them. A branch point is the end
of each agent reply in a rollout (where ARPO's paper branches: after tool feedback) or, in a
rollout without agent tokens, the end of each line. At a point, ΔH = (mean entropy of the
rollout's next k POLICY tokens) − H_init (mean entropy of its first k POLICY tokens), raw as in
their code, and the point branches with probability P = clip(α + β·ΔH, 0, 1) (their code forks
when clip(u − β·ΔH, 0, 1) ≤ τ, u ~ U(0, 1): the same P with α = τ = 0.5, β = 0.2). A branching
point gets Z = `arpo_beam` partial rollouts (their beam 2 = the parent and one copy); points are
visited in order (rollouts round-robin, earliest point first) until B branches are made; slots
left when no point branched are filled with branches at points drawn uniformly (equal budget
per group; their code instead leaves the group short). A branch shares its parent's tokens up
to the point (KV shared by the prefill) and samples on without consulting (rollout.continue_rollouts).

Advantage attribution (`arpo_attribution`):
- soft (default): plain group advantages over all M rollouts; a branch trains only its own
  tokens (views.continuation_seq), the shared prefix is trained once, in the parent, with the
  parent's advantage. (Their code trains every rollout whole, so a shared prefix enters the loss
  once per rollout that holds it; the kit counts every token once.)
- hard: a shared-prefix token of the parent gets the mean advantage of every rollout that holds
  it (the parent and its branches from later points); tokens after the last branch point keep
  the parent's own.
Branches are made from whole rollouts only (depth 1); the draws use a seeded `random.Random`.
"""

from __future__ import annotations

import random

from aipo_lite.methods.views import to_train_seqs
from aipo_lite.records import Prov, Rollout
from aipo_lite.rollout.groups import continue_rollouts

ATTRIBUTIONS = ("soft", "hard")


def branch_probability(delta_h: float, alpha: float, beta: float) -> float:
    """P = clip(alpha + beta * delta_h, 0, 1)."""
    return min(1.0, max(0.0, alpha + beta * delta_h))


def branch_points(r: Rollout, k: int, tokenizer=None) -> list[tuple[int, float]]:
    """(position, ΔH) of every candidate point of a rollout: after each agent reply (the first
    token after an AGENT/TEMPLATE run that is POLICY), else after each line end; a point needs
    k POLICY tokens after it. ΔH = mean entropy of those k tokens − mean of the first k."""
    pol = [i for i, p in enumerate(r.prov) if p == Prov.POLICY and i >= r.prefix_len]
    if len(pol) < k + 1:
        return []
    h = r.entropies
    h_init = sum(h[i] for i in pol[:k]) / k
    if any(p == Prov.AGENT for p in r.prov):
        starts = [i for i in range(1, len(r.prov)) if r.prov[i] == Prov.POLICY and r.prov[i - 1] != Prov.POLICY]
    else:
        ends = [i + 1 for i, t in enumerate(r.ids[:-1]) if "\n" in tokenizer.decode([t])] if tokenizer else []
        starts = [i for i in ends if i < len(r.ids) and r.prov[i] == Prov.POLICY]
    out = []
    for s in starts:
        nxt = [i for i in pol if i >= s][:k]
        if len(nxt) == k:
            out.append((s, sum(h[i] for i in nxt) / k - h_init))
    return out


def plan(group: list[Rollout], budget: int, k: int, alpha: float, beta: float, beam: int, rng: random.Random,
         tokenizer=None) -> list[tuple[int, int]]:
    """Which (parent index, position) pairs to branch, `budget` of them (repeats = Z copies)."""
    points = [[(i, at, dh) for at, dh in branch_points(r, k, tokenizer)] for i, r in enumerate(group)]
    order = [p for depth in range(max(map(len, points), default=0)) for ps in points if depth < len(ps)
             for p in [ps[depth]]]
    out: list[tuple[int, int]] = []
    for i, at, dh in order:
        if len(out) >= budget:
            break
        if rng.random() < branch_probability(dh, alpha, beta):
            out += [(i, at)] * min(beam, budget - len(out))
    flat = [(i, at) for i, at, _ in order] or [(i, 0) for i in range(len(group))]
    while len(out) < budget:  # no point branched (or none exists): uniform points, equal budget
        out.append(rng.choice(flat))
    return out


def add_branches(policy, groups: list[list[Rollout]], cfg, step: int, generator) -> tuple[list[list[Rollout]], dict]:
    """Each group grows by cfg.arpo_branches branches (see module doc). Returns (groups, stats)."""
    if cfg.arpo_branches <= 0:
        return groups, {}
    rng = random.Random(cfg.seed * 1_000_003 + step)
    starts, owner = [], []
    for g, group in enumerate(groups):
        for i, at in plan(group, cfg.arpo_branches, cfg.arpo_k, cfg.arpo_alpha, cfg.arpo_beta, cfg.arpo_beam, rng,
                          policy.tokenizer):
            starts.append((group[i], at))
            owner.append((g, i))
    branches = continue_rollouts(policy, starts, cfg.rollout_temperature, cfg.rollout_max_new_tokens,
                                 cfg.reward_mode, generator)
    out = [list(g) for g in groups]
    for (g, i), b in zip(owner, branches):
        b.parent = i
        out[g].append(b)
    n_agent = sum(1 for r, at in starts if any(p == Prov.AGENT for p in r.prov[:at]))
    return out, {"branches_per_group": len(branches) / max(len(groups), 1),
                 "branch_after_agent_frac": n_agent / max(len(starts), 1),
                 "branch_reward": sum(b.reward for b in branches) / max(len(branches), 1)}


def apply_hard(groups: list[list[Rollout]], seqs: list, tokenizer, cfg) -> None:
    """Hard attribution in place: each parent's TrainSeq gets token_adv (seqs in to_train_seqs
    order, advantages already assigned). A branch point at generated position `at` covers the
    first len(view of the parent cut at `at`) tokens of the parent's training sequence."""
    import dataclasses

    pos = 0
    for group in groups:
        gseqs = seqs[pos:pos + len(group)]
        pos += len(group)
        for i, r in enumerate(group):
            kids = [j for j, b in enumerate(group) if b.parent == i]
            if not kids:
                continue
            n_prefix = []
            for j in kids:
                at = group[j].prefix_len
                cut = dataclasses.replace(r, ids=r.ids[:at], prov=r.prov[:at], logprobs=r.logprobs[:at],
                                          entropies=r.entropies[:at], consults=[c for c in r.consults if c.at < at])
                n_prefix.append(len(to_train_seqs([[cut]], tokenizer, cfg.view, cfg.credit, cfg.prompt_style)[0].ids))
            s = gseqs[i]
            s.token_adv = hard_advantages(n_prefix, [gseqs[j].advantage for j in kids], s.advantage, len(s.ids))


def hard_advantages(n_prefix: list[int], adv: list[float], parent_adv: float, parent_len: int) -> list[float]:
    """Per-token advantages of a parent's training sequence (length parent_len) under hard
    attribution: token j gets the mean of parent_adv and the advantages of the branches whose
    shared prefix (n_prefix[b] tokens of the parent's sequence) covers j."""
    out = []
    for j in range(parent_len):
        sharers = [a for n, a in zip(n_prefix, adv) if j < n]
        out.append((parent_adv + sum(sharers)) / (1 + len(sharers)))
    return out
