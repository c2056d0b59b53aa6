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
    def __init__(self, room: int):
        super().__init__()
        self.room = room
        self.n = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        b, h, _, d = key_states.shape
        self._k = key_states.new_empty((b, h, self.room, d))
        self._v = value_states.new_empty((b, h, self.room, value_states.shape[-1]))
        self.n = 0
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.room += key_states.shape[-2]
            self.lazy_initialization(key_states, value_states)
        end = self.n + key_states.shape[-2]
        if end > self._k.shape[-2]:  # out of room: double
            self._k = torch.cat([self._k, torch.empty_like(self._k)], dim=-2)
            self._v = torch.cat([self._v, torch.empty_like(self._v)], dim=-2)
        self._k[:, :, self.n:end] = key_states
        self._v[:, :, self.n:end] = value_states
        self.n = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        return self.keys, self.values

    def keep(self, k: torch.Tensor, v: torch.Tensor, n: int) -> None:
        """Hold buffers k, v (rows, heads, capacity, dim) whose first n positions are filled."""
        self._k, self._v, self.n = k, v, n
        self.keys, self.values = k[:, :, :n], v[:, :, :n]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """DynamicCache's row selection, kept consistent with the buffers for transformers'
        callers; the decode loop drops rows with `GrowingCache.drop_rows` (fewer copies)."""
        if self.is_initialized:
            self._k, self._v = self._k[indices], self._v[indices]
            self.keys, self.values = self._k[:, :, :self.n], self._v[:, :, :self.n]

    def move_rows(self, dst: torch.Tensor, src: torch.Tensor, rows: int) -> None:
        """Copy rows `src` into rows `dst` (filled positions only), then keep the first `rows`
        rows (a view): what batch_select_indices does when finished rows' slots are refilled from
        the end, at the cost of the moved rows instead of a copy of every row."""
        if self.is_initialized:
            if len(dst):
                self._k[dst, :, :self.n] = self._k[src, :, :self.n]
                self._v[dst, :, :self.n] = self._v[src, :, :self.n]
            self._k, self._v = self._k[:rows], self._v[:rows]
            self.keys, self.values = self._k[:, :, :self.n], self._v[:, :, :self.n]

    def drop_left(self, k: int) -> None:
        """Forget the first k positions (masked for every row): a view, no copy."""
        self._k, self._v, self.n = self._k[:, :, k:], self._v[:, :, k:], self.n - k
        self.keys, self.values = self._k[:, :, :self.n], self._v[:, :, :self.n]

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
        self._k, self._v = bufs
        self.n = width
        self.keys, self.values = self._k[:, :, :width], self._v[:, :, :width]


class GrowingCache(DynamicCache):
    """DynamicCache whose layers reserve `room` more positions than they are first given, and
    that can take in the rows of another (continuous batching: engine.run's max_batch)."""

    def __init__(self, num_layers: int, room: int):
        Cache.__init__(self, layers=[GrowingLayer(room) for _ in range(num_layers)])

    @classmethod
    def for_model(cls, model, rows: int, capacity: int, device) -> "GrowingCache":
        """An empty cache with room for `capacity` positions of `rows` rows, in the model's
        activation dtype (its embeddings'), so that slices of it can be filled (`rows`)."""
        cfg, dtype = model.config, model.get_input_embeddings().weight.dtype
        heads, dim = cfg.num_key_value_heads, getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        cache = cls(cfg.num_hidden_layers, 0)
        for layer in cache.layers:
            layer.dtype, layer.device, layer.is_initialized = dtype, torch.device(device), True
            layer.keep(torch.empty((rows, heads, capacity, dim), dtype=dtype, device=device),
                       torch.empty((rows, heads, capacity, dim), dtype=dtype, device=device), 0)
        return cache

    def rows(self, start: int, end: int, filled: int) -> "GrowingCache":
        """A cache over rows [start, end) of this one, sharing its memory, whose first `filled`
        positions count as cached; the positions between what this cache holds and `filled` are
        zeroed (masked padding: finite, so that attention's zero weights give zeros)."""
        view = GrowingCache(len(self.layers), 0)
        for mine, theirs in zip(view.layers, self.layers):
            theirs._k[start:end, :, theirs.n:filled] = 0
            theirs._v[start:end, :, theirs.n:filled] = 0
            mine.dtype, mine.device, mine.is_initialized = theirs.dtype, theirs.device, True
            mine.keep(theirs._k[start:end], theirs._v[start:end], filled)
        return view

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
        device = self.layers[0].device if self.layers[0].is_initialized else None
        dst, src = (torch.tensor(x, device=device, dtype=torch.long) for x in (holes, movers))
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
