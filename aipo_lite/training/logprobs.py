"""How the trainer batches sequences through the model: log-probs of completion tokens with the
shared prompt run once, and micro-batches cut to compute the fewest positions."""

from __future__ import annotations

import math

import torch

from aipo_lite.engine.prefill import last_position, shared_prefix_length
from aipo_lite.records import TrainSeq


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
        pkv = model(input_ids=ids[:1, :n], position_ids=pos[:1, :n], use_cache=True,
                    logits_to_keep=last_position(n, device)).past_key_values
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
    """Cut a step's sequences into micro-batches of at most `size`, one prompt each (a group's
    rollouts share it, and sequence_logprobs runs a shared prompt once), each run of one prompt
    cut where that computes the fewest positions: a micro-batch costs its prompt once plus rows x
    its longest completion (the shorter rows are padded), so rollouts of similar length go
    together. The step's loss and gradient are sums over micro-batches: the cut changes only
    float summation order."""
    by_prompt: dict[tuple, list[TrainSeq]] = {}
    for s in seqs:
        by_prompt.setdefault(tuple(s.prompt_ids), []).append(s)
    out = []
    for prompt, run in by_prompt.items():
        run = sorted(run, key=lambda s: len(s.ids))
        best, cut = [0] + [math.inf] * len(run), [0] * (len(run) + 1)
        for j in range(1, len(run) + 1):  # best[j]: cheapest cover of run[:j]; the last batch is run[i:j]
            for i in range(max(0, j - size), j):
                cost = best[i] + len(prompt) + (j - i) * len(run[j - 1].ids)
                if cost < best[j]:
                    best[j], cut[j] = cost, i
        j, batches = len(run), []
        while j:
            batches.append(run[cut[j]:j])
            j = cut[j]
        out += batches[::-1]
    return out
