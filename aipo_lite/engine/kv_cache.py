"""A KV cache that grows in place: the decode loop's cache (engine.py).

transformers' DynamicCache appends each step's keys and values with torch.cat, which copies
the whole cache of every layer on every decode step. Profiled on SmolLM2-135M (64 rows, ~150
cached positions, fp32, 2 cores): 66 ms of a 250 ms decode step. `GrowingCache` keeps each
layer's keys and values in a buffer with room for the tokens still to come and writes only
the new columns; what the model sees (`layer.keys`, `layer.values`: views of the filled part)
has the same shape and values as DynamicCache's, so outputs are unchanged. When the room runs
out (forced tokens can exceed the estimate) the buffer doubles.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class GrowingLayer(DynamicLayer):
    """One layer's keys and values in buffers (rows, heads, capacity, dim) whose first n
    positions are filled; `keys`/`values` are views of that filled part."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, n: int = 0):
        super().__init__()
        self.dtype, self.device, self.is_initialized = k.dtype, k.device, True
        self.keep(k, v, n)

    def keep(self, k: torch.Tensor, v: torch.Tensor, n: int) -> None:
        """Hold buffers k, v whose first n positions are filled."""
        self._k, self._v, self.n = k, v, n
        self.keys, self.values = k[:, :, :n], v[:, :, :n]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.n + key_states.shape[-2]
        if end > self._k.shape[-2]:  # out of room: double (at least)
            more = max(self._k.shape[-2], end - self._k.shape[-2])
            self.keep(*(torch.cat([t, t.new_empty((*t.shape[:2], more, t.shape[-1]))], dim=-2)
                        for t in (self._k, self._v)), self.n)
        self._k[:, :, self.n:end] = key_states
        self._v[:, :, self.n:end] = value_states
        self.keep(self._k, self._v, end)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """DynamicCache's row selection, kept consistent with the buffers for transformers'
        callers; the decode loop drops rows with `GrowingCache.drop_rows` (fewer copies)."""
        self.keep(self._k[indices], self._v[indices], self.n)

    def move_rows(self, dst: torch.Tensor, src: torch.Tensor, rows: int) -> None:
        """Copy rows `src` into rows `dst` (filled positions only), then keep the first `rows`
        rows (a view): what batch_select_indices does when finished rows' slots are refilled from
        the end, at the cost of the moved rows instead of a copy of every row."""
        if len(dst):
            self._k[dst, :, :self.n] = self._k[src, :, :self.n]
            self._v[dst, :, :self.n] = self._v[src, :, :self.n]
        self.keep(self._k[:rows], self._v[:rows], self.n)

    def drop_left(self, k: int) -> None:
        """Forget the first k positions (masked for every row): a view, no copy."""
        self.keep(self._k[:, :, k:], self._v[:, :, k:], self.n - k)

    def join(self, other: "GrowingLayer") -> None:
        """Append other's rows; the shorter side is left-padded with zeros (masked positions)."""
        width = max(self.n, other.n)
        room = max(self._k.shape[-2] - self.n, other._k.shape[-2] - other.n)
        b1 = self._k.shape[0]
        bufs = []
        for mine, theirs in ((self._k, other._k), (self._v, other._v)):
            buf = mine.new_zeros((b1 + theirs.shape[0], mine.shape[1], width + room, mine.shape[-1]))
            buf[:b1, :, width - self.n:width] = mine[:, :, :self.n]
            buf[b1:, :, width - other.n:width] = theirs[:, :, :other.n]
            bufs.append(buf)
        self.keep(*bufs, width)


class GrowingCache(DynamicCache):
    """DynamicCache over GrowingLayers, with room for the tokens still to come, that can take in
    the rows of another (continuous batching: engine.run's max_batch)."""

    def __init__(self, layers: list[GrowingLayer]):
        Cache.__init__(self, layers=layers)

    @classmethod
    def for_model(cls, model, rows: int, capacity: int, device) -> "GrowingCache":
        """An empty cache with room for `capacity` positions of `rows` rows, in the model's
        activation dtype (its embeddings'), so that slices of it can be filled (`rows`)."""
        cfg, dtype = model.config, model.get_input_embeddings().weight.dtype
        heads, dim = cfg.num_key_value_heads, getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        def empty():
            return torch.empty((rows, heads, capacity, dim), dtype=dtype, device=device)
        return cls([GrowingLayer(empty(), empty()) for _ in range(cfg.num_hidden_layers)])

    def rows(self, start: int, end: int, filled: int) -> "GrowingCache":
        """A cache over rows [start, end) of this one, sharing its memory, whose first `filled`
        positions count as cached; the positions between what this cache holds and `filled` are
        zeroed (masked padding: finite, so that attention's zero weights give zeros)."""
        for layer in self.layers:
            layer._k[start:end, :, layer.n:filled] = 0
            layer._v[start:end, :, layer.n:filled] = 0
        return GrowingCache([GrowingLayer(l._k[start:end], l._v[start:end], filled) for l in self.layers])

    def fill_to(self, n: int) -> None:
        """The first n positions of every row have been written (through `rows` views)."""
        for layer in self.layers:
            layer.keep(layer._k, layer._v, n)

    def join(self, other: "GrowingCache") -> None:
        for mine, theirs in zip(self.layers, other.layers):
            mine.join(theirs)

    def drop_rows(self, keep: list[int]) -> list[int]:
        """Drop the rows not in `keep` (ascending): each freed slot below len(keep) takes a kept
        row from above it, so only those rows are copied (the rows do not stay in order).
        Returns the new row order (old index per new row) for the caller's per-row state."""
        order, holes, movers = refill_order(keep)
        dst, src = (torch.tensor(x, device=self.layers[0].device, dtype=torch.long) for x in (holes, movers))
        for layer in self.layers:
            layer.move_rows(dst, src, len(keep))
        return order

    def drop_left(self, k: int) -> None:
        for layer in self.layers:
            layer.drop_left(k)


def refill_order(keep: list[int]) -> tuple[list[int], list[int], list[int]]:
    """For rows `keep` (ascending) of a batch: (old index of each new row, the freed slots below
    len(keep), the kept rows above it that move into them, in that order)."""
    n, kept = len(keep), set(keep)
    holes = [b for b in range(n) if b not in kept]
    movers = [b for b in keep if b >= n]
    order = list(range(n))
    for h, m in zip(holes, movers):
        order[h] = m
    return order, holes, movers
