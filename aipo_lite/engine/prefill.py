"""Prefill: a batch of prompts through the model once, left-padded, with the KV cache of the
prompts' shared prefix (system prompt, one-shot example) computed once per group of rows.

Layout of a prefilled row: [pad][prefix of the row's group][pad][rest of the prompt]; masked
positions never attend or are attended to, so every row's outputs equal a lone forward.

On the CPU the rests run in buckets of similar length (rows sorted by it), each bucket padded
to its own longest rest: with 64 synth questions (rests of 11-30 tokens after a 63-token shared
prefix) one batch computed 1,920 positions for 1,113 real ones, and the prefill took 2.0-2.4 s
of an 8.4-8.9 s fp32 sampling batch; in buckets 1.5-1.6 s (bf16: 3.2 -> 2.2 s).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from aipo_lite.engine.kv_cache import GrowingCache, GrowingLayer

# A bucket's fixed cost in prompt positions: one more forward through 30 layers on the CPU
# (~35 ms of module calls and weight reads) costs about what 32 positions of a 64-row fp32 prefill
# do (~1.1 ms each) on 2 cores (16, 32 and 64 measured alike). On CUDA a position costs next to
# nothing: one bucket.
BUCKET_COST = 32


def prefill(model, tokenizer, live: list, share_prefix: bool, device):  # live: engine.decode.Row
    """Run the rows' prompts: (cache, last-position logits, attention mask, next positions).
    Layout [pad][prefix of the row's group (cached once per group)][pad][rest of prompt].

    Reorders `live` in place, by the length of each row's uncached rest (stable), and runs the
    rests in buckets of similar length (`length_buckets`; one bucket on CUDA), each writing its
    rows' slice of one cache: a bucket computes its own longest rest, not the batch's."""
    enc = [r.prompt_ids for r in live]
    groups = prefix_groups(enc) if share_prefix and len(enc) > 1 else [(list(range(len(enc))), 0)]
    rest = {b: len(enc[b]) - n for rows_, n in groups for b in rows_}
    order = sorted(range(len(live)), key=rest.__getitem__)
    new_index = {b: i for i, b in enumerate(order)}
    live[:], enc = [live[b] for b in order], [enc[b] for b in order]
    groups = [(sorted(new_index[b] for b in rows_), n) for rows_, n in groups]
    n_prefix = max(n for _, n in groups)
    rests = sorted(rest.values())
    width = n_prefix + rests[-1]
    ids = torch.full((len(enc), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for rows_, n in groups:
        for b in rows_:
            e = enc[b]
            ids[b, n_prefix - n:n_prefix], mask[b, n_prefix - n:n_prefix] = torch.tensor(e[:n]), 1
            ids[b, width - len(e) + n:], mask[b, width - len(e) + n:] = torch.tensor(e[n:]), 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    room = max(r.max_new_tokens for r in live) + 16  # forced tokens come on top: it doubles if short
    cache = GrowingCache.for_model(model, len(enc), width + room, device)
    if n_prefix:
        prefix_cache(model, ids, groups, n_prefix, cache)
    cut = BUCKET_COST if device.type == "cpu" else None
    logits = []
    for s, e in length_buckets(rests, cut):
        w = rests[e - 1]  # the bucket's widest rest: its rows' padding starts after the prefix
        logits.append(_bucket(model, ids, mask, pos, cache, enc, s, e, width, w))
    cache.fill_to(width)
    return cache, torch.cat(logits), mask, pos[:, -1] + 1


def _bucket(model, ids, mask, pos, cache: GrowingCache, enc: list, s: int, e: int, width: int, w: int):
    """Rows [s, e) through the model from column width - w: their keys and values into `cache`,
    their last-position logits returned. Rows with the same prompt (the n samples of one question,
    a group's rollouts) run once and are copied: a row's outputs depend on its own tokens only."""
    first: dict[tuple, int] = {}
    src = [first.setdefault(tuple(enc[b]), b - s) for b in range(s, e)]
    view = cache.rows(s, e, width - w)
    rows, once = slice(None), view  # every prompt distinct: the rows run as they are
    if len(first) < e - s:
        rows = torch.tensor(sorted(first.values()), device=ids.device)
        once = GrowingCache([GrowingLayer(layer._k[rows], layer._v[rows], width - w) for layer in view.layers])
    out = model(input_ids=ids[s:e][rows, width - w:], attention_mask=mask[s:e][rows],
                position_ids=pos[s:e][rows, width - w:], past_key_values=once, use_cache=True,
                logits_to_keep=last_position(w, ids.device))
    if once is view:
        return out.logits[:, -1]
    back = torch.searchsorted(rows, torch.tensor(src, device=ids.device))
    for mine, theirs in zip(view.layers, once.layers):
        mine._k[:, :, :width] = theirs._k[back, :, :width]
        mine._v[:, :, :width] = theirs._v[back, :, :width]
    return out.logits[:, -1][back]


def length_buckets(lengths: list[int], cost: int | None) -> list[tuple[int, int]]:
    """Slices [s, e) of ascending `lengths` that minimise the positions a prefill computes, each
    slice padded to its longest, plus `cost` positions per slice (None: one slice)."""
    n = len(lengths)
    if cost is None or n < 2:
        return [(0, n)]
    cuts = [i for i in range(1, n) if lengths[i] != lengths[i - 1]] + [n]
    best = {0: (0, 0)}  # slice end -> (positions, previous end)
    for j in cuts:
        best[j] = min((best[i][0] + (j - i) * lengths[j - 1] + cost, i) for i in [0] + cuts if i < j)
    out, j = [], n
    while j:
        out.append((best[j][1], j))
        j = best[j][1]
    return out[::-1]


def left_pad(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.cat([mask.new_zeros((mask.shape[0], width - mask.shape[1])), mask], dim=1)


def last_position(length: int, device) -> torch.Tensor:
    """`logits_to_keep` for the last of `length` positions, as an index tensor, not the int 1.

    With an int, transformers slices hidden[:, -1:, :], a view torch's matmul cannot fold into
    one matrix product: it expands the head's weight to [rows, dim, vocab] and runs a batched
    product instead. Measured on SmolLM2 (64 rows, bf16, 2 cores): 6-8 s per prefill against
    1.6 s with an index tensor, whose gather is contiguous."""
    return torch.tensor([length - 1], device=device)


def shared_prefix_length(encoded: list[list[int]]) -> int:
    """Length of the token prefix common to every prompt, minus one token (so each prompt
    keeps at least one uncached token to prefill)."""
    first = encoded[0]
    n = min(len(e) for e in encoded) - 1
    for e in encoded[1:]:
        n = next((i for i in range(n) if e[i] != first[i]), n)
    return max(n, 0)


def prefix_groups(encoded: list[list[int]], min_gain: int = 8) -> list[tuple[list[int], int]]:
    """(rows, cached prefix length) groups. Rows are grouped by the token after the batch's
    common prefix; a group whose own common prefix is >= min_gain tokens longer gets it cached
    once (plain and assisted prompts: each kind's system prompt and one-shot example), the
    other rows share the batch's common prefix (one group, one prefix forward)."""
    n = shared_prefix_length(encoded)
    by_key: dict[tuple, list[int]] = {}
    for b, e in enumerate(encoded):
        by_key.setdefault(tuple(e[:n + 1]), []).append(b)
    groups, rest = [], []
    for rows in by_key.values():
        m = shared_prefix_length([encoded[b] for b in rows]) if len(rows) > 1 else 0
        if m - n >= min_gain:
            groups.append((rows, m))
        else:
            rest += rows
    return groups + ([(sorted(rest), n)] if rest else [])


def prefix_cache(model, ids: torch.Tensor, groups, n_prefix: int, cache: GrowingCache) -> None:
    """Fill the prefix region [rows, heads, n_prefix, dim] of `cache`: each group's prefix is run
    once (batch 1) and copied to its rows, right-aligned; the left padding is zeros, masked out."""
    for rows_, n in groups:
        # an explicit config-less cache keeps every position in every layer (the model's own would
        # keep only a sliding-window layer's last window: Gemma 3); the masks apply the window
        pkv = model(ids[rows_[:1], n_prefix - n:n_prefix], use_cache=True, past_key_values=DynamicCache(),
                    logits_to_keep=last_position(n, ids.device)).past_key_values if n else None
        idx = torch.tensor(rows_, device=ids.device)
        for i, mine in enumerate(cache.layers):
            if n < n_prefix:
                mine._k[idx, :, :n_prefix - n] = 0
                mine._v[idx, :, :n_prefix - n] = 0
            if n:
                mine._k[idx, :, n_prefix - n:n_prefix] = pkv.layers[i].keys
                mine._v[idx, :, n_prefix - n:n_prefix] = pkv.layers[i].values
    cache.fill_to(n_prefix)
