"""Token ids after which the decode loop wakes a row's hook (engine.run's default `watch_ids`):
a hook (agent consultation, answer checks) only acts at a line end, a closing brace or a tag's
'>', so the loop compares each sampled id with this set instead of decoding text."""

from __future__ import annotations

import torch

_LINE_ENDERS: dict[int, torch.Tensor] = {}


def line_ender_ids(tokenizer) -> torch.Tensor:
    """Ids of tokens containing a newline or '}': only after those can an answer be committed."""
    key = id(tokenizer)
    if key not in _LINE_ENDERS:
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        ids = [i for i, t in enumerate(vocab)
               if t and ("}" in t or "\n" in tokenizer.convert_tokens_to_string([t]))]
        _LINE_ENDERS[key] = torch.tensor(ids)
    return _LINE_ENDERS[key]


_WATCH: dict[int, torch.Tensor] = {}


def watch_ids_of(tokenizer) -> torch.Tensor:
    """Tokens after which a hook may act: line ends and '}' plus '>' (tags). Cached per tokenizer."""
    key = id(tokenizer)
    if key not in _WATCH:
        base = line_ender_ids(tokenizer)
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        gt = [i for i, t in enumerate(vocab) if t and ">" in t]
        _WATCH[key] = torch.unique(torch.cat([base, torch.tensor(gt, dtype=base.dtype)]))
    return _WATCH[key]
