"""Prefill: a batch of prompts through the model once, left-padded, with the KV cache of the
prompts' shared prefix (system prompt, one-shot example) computed once per group of rows.

Layout of a prefilled row: [pad][prefix of the row's group][pad][rest of the prompt]; masked
positions never attend or are attended to, so every row's outputs equal a lone forward.
"""

from __future__ import annotations

import torch

from .kv_cache import GrowingCache


def prefill(model, tokenizer, live: list[Row], share_prefix: bool, device):
    """Run the rows' prompts: (cache, last-position logits, attention mask, next positions).
    Layout [pad][prefix of the row's group (cached once per group)][pad][rest of prompt]."""
    enc = [r.prompt_ids for r in live]
    groups = prefix_groups(enc) if share_prefix and len(enc) > 1 else [(list(range(len(enc))), 0)]
    n_prefix = max(n for _, n in groups)
    width = n_prefix + max(len(enc[b]) - n for rows_, n in groups for b in rows_)
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
    cache = GrowingCache(model.config.num_hidden_layers, room + width - n_prefix)
    if n_prefix:
        prefix_cache(model, ids, groups, n_prefix, cache)
    out = model(input_ids=ids[:, n_prefix:], attention_mask=mask, position_ids=pos[:, n_prefix:],
                past_key_values=cache, use_cache=True, logits_to_keep=last_position(width - n_prefix, device))
    return out.past_key_values, out.logits[:, -1], mask, pos[:, -1] + 1


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
    """Fill `cache` with the prefix region [rows, heads, n_prefix, dim]: each group's prefix is
    run once (batch 1) and copied to its rows, right-aligned; the left padding is masked out."""
    keys = values = None
    for rows_, n in groups:
        if not n:
            continue
        pkv = model(ids[rows_[:1], n_prefix - n:n_prefix], use_cache=True,
                    logits_to_keep=last_position(n, ids.device)).past_key_values
        if keys is None:
            def empty(t):
                return t.new_zeros((ids.shape[0], t.shape[1], n_prefix, t.shape[-1]))
            keys, values = [empty(l.keys) for l in pkv.layers], [empty(l.values) for l in pkv.layers]
        for i, layer in enumerate(pkv.layers):
            keys[i][rows_, :, n_prefix - n:] = layer.keys
            values[i][rows_, :, n_prefix - n:] = layer.values
    for i, (k, v) in enumerate(zip(keys, values)):
        cache.update(k, v, i)
