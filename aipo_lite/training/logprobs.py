"""How the trainer batches sequences through the model: log-probs of completion tokens with the
shared prompt run once, and micro-batches cut to compute the fewest positions."""

from __future__ import annotations

import math

import torch

from aipo_lite.engine.prefill import last_position, shared_prefix_length
from aipo_lite.records import TrainSeq

# A micro-batch's fixed cost in positions: one more forward and backward through 30 layers
# (module calls, weight reads) costs on 2 CPU cores about what 32 positions do (engine.prefill's
# BUCKET_COST, measured the same way).
BATCH_COST = 32
# At most this many positions per micro-batch (one row may exceed it): activation memory grows
# with them, ~1.5 MB per position through SmolLM2's 30 layers with LoRA in fp32, and beyond a
# few hundred positions the matrix products run no faster per position (docs/speed.md).
MAX_POSITIONS = 384


def sequence_logprobs(model, seqs: list[TrainSeq], temperature: float, device,
                      share_prefix: bool = True) -> torch.Tensor:
    """log π(token) of every completion token, [B, C] (zeros past a sequence's end).

    Layout [prompt prefix all rows share][pad][rest of prompt][completion][pad]: completions
    start at one column; only their positions' logits are computed. With `share_prefix`, the
    shared prefix (system prompt and one-shot example: most of each prompt) runs once, batch 1,
    and its keys/values are expanded to every row: the same values and, through the expand,
    the same gradient (the rows' gradients w.r.t. the prefix add up), for a fraction of the
    compute (a test compares LoRA gradients with and without)."""
    B, C = len(seqs), max(len(s.ids) for s in seqs)
    n = shared_prefix_length([s.prompt_ids for s in seqs]) if share_prefix and B > 1 else 0
    R = max(len(s.prompt_ids) for s in seqs) - n
    ids = torch.zeros((B, n + R + C), dtype=torch.long)
    mask = torch.zeros_like(ids)
    ids[:, :n], mask[:, :n] = torch.tensor(seqs[0].prompt_ids[:n], dtype=torch.long), 1
    for b, s in enumerate(seqs):
        rest = s.prompt_ids[n:]
        ids[b, n + R - len(rest):n + R] = torch.tensor(rest, dtype=torch.long)
        ids[b, n + R:n + R + len(s.ids)] = torch.tensor(s.ids, dtype=torch.long)
        mask[b, n + R - len(rest):n + R + len(s.ids)] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = None
    if n:
        from transformers import DynamicCache
        pkv = model(input_ids=ids[:1, :n], position_ids=pos[:1, :n], use_cache=True, past_key_values=DynamicCache(),
                    logits_to_keep=last_position(n, device)).past_key_values  # every position kept (prefill.prefix_cache)
        cache = DynamicCache()
        for i, layer in enumerate(pkv.layers):
            cache.update(layer.keys.expand(B, -1, -1, -1), layer.values.expand(B, -1, -1, -1), i)
    # an index tensor, not logits_to_keep=C + 1: see prefill.last_position (a sliced view makes
    # torch expand the head's weight to [rows, dim, vocab], in backward too)
    keep = torch.arange(R - 1, R + C - 1, device=device)
    logits = model(input_ids=ids[:, n:], attention_mask=mask, position_ids=pos[:, n:], past_key_values=cache,
                   use_cache=cache is not None, logits_to_keep=keep).logits
    logits = logits.float() / temperature
    target = ids[:, n + R:]
    return logits.gather(-1, target[..., None]).squeeze(-1) - torch.logsumexp(logits, -1)


def micro_batches(seqs: list[TrainSeq], size: int) -> list[list[TrainSeq]]:
    """Cut a step's sequences into micro-batches of at most `size` that compute the fewest
    positions, each at most MAX_POSITIONS. A micro-batch costs one forward's overhead, its rows' common prompt prefix once
    (sequence_logprobs runs it at batch 1: the system prompt and one-shot example every prompt
    shares, and a group's whole prompt) and rows x (longest rest of prompt + longest completion),
    the shorter rows padded. So rollouts of one prompt, then of prompts with long common
    prefixes, and of similar lengths go together: sequences are sorted by prompt, then length,
    and cut where the cost is least (dynamic programming over contiguous slices). The step's loss
    and gradient are sums over micro-batches: the cut changes only float summation order."""
    run = sorted(seqs, key=lambda s: (s.prompt_ids, len(s.ids)))
    best, cut = [0] + [math.inf] * len(run), [0] * (len(run) + 1)
    for j in range(1, len(run) + 1):  # best[j]: cheapest cover of run[:j]; the last batch is run[i:j]
        last = run[j - 1].prompt_ids
        common, shortest, longest_prompt, longest = len(last), len(last), 0, 0
        for i in range(j - 1, max(0, j - size) - 1, -1):
            p = run[i].prompt_ids
            common = next((t for t in range(min(common, len(p))) if p[t] != last[t]), min(common, len(p)))
            shortest, longest_prompt = min(shortest, len(p)), max(longest_prompt, len(p))
            longest = max(longest, len(run[i].ids))
            n = min(common, shortest - 1) if j - i > 1 else 0  # sequence_logprobs' shared prefix
            positions = n + (j - i) * (longest_prompt - n + longest)
            if positions > MAX_POSITIONS and j - i > 1:  # more rows only add positions
                break
            cost = best[i] + BATCH_COST + positions
            if cost < best[j]:
                best[j], cut[j] = cost, i
    j, batches = len(run), []
    while j:
        batches.append(run[cut[j]:j])
        j = cut[j]
    return batches[::-1]
