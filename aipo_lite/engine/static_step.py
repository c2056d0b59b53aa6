"""The decode step on static buffers, replayed as one CUDA graph (engine.run's GPU path).

On a GPU a small model's decode step is launch-bound: an eager transformers forward of
SmolLM2-135M (30 layers, ~400 kernels plus Python) took ~30 ms on an H100 at batch 64 and at
batch 512 alike. Captured once as a CUDA graph, a step is one launch. A graph replays fixed
shapes at fixed addresses, so this step works on buffers that never move:

- keys and values of every layer: [slots, heads, capacity, dim], the prefill copied in; the
  step writes column `col` (index_copy_) and attends over all `capacity` columns;
- an additive mask [slots, 1, 1, capacity] (0 = visible, dtype min = hidden) that the step
  opens at `col`; positions [slots, 1]; `col` and the positions advance inside the step.

Rows never leave: a finished row's slot decodes a pad token whose output nobody reads (on a
launch-bound GPU a dead slot costs nothing measurable; on a CPU it would, so the CPU keeps the
eager loop, and runs this step eagerly only in tests, with the same arithmetic). When forced
tokens outrun the capacity, the buffers grow by a quarter and the graph is captured again. A
capture that fails warns (CaptureFailed) and that batch steps eagerly on the same buffers.
A step's feed may be a tensor on the device: without hooks engine.run feeds the sampled ids
straight back and launches the next step before it reads the last one (`to_host`).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class CaptureFailed(RuntimeWarning):
    """A step could not be captured as a CUDA graph; that batch ran eagerly (correct, slower)."""


class SlotLayer(DynamicLayer):
    """A layer cache whose tensors are fixed buffers; update() writes the column `col`."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, col: torch.Tensor):
        super().__init__()
        self.keys, self.values, self.col = keys, values, col
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        self.keys.index_copy_(2, self.col, key_states)
        self.values.index_copy_(2, self.col, value_states)
        return self.keys, self.values


class SlotCache(DynamicCache):
    def __init__(self, layers: list[SlotLayer]):
        Cache.__init__(self, layers=layers)


@contextmanager
def _plain_kernels():
    """torch's deterministic mode swaps index_copy_ for a sort-based index_put_; with distinct
    indices (one column) index_copy_ is deterministic already, and the swap is not needed."""
    on, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(on, warn_only=warn)


class StaticStep:
    """step(feed) -> logits [slots, vocab] for the next tokens; feed: one token id per slot.

    Built from a prefill (engine.prefill's cache, 2-D mask and next positions) with room for
    `room` more tokens per slot. `graph`: capture the step as a CUDA graph (CUDA only)."""

    def __init__(self, model, cache, mask: torch.Tensor, next_pos: torch.Tensor, room: int,
                 graph: bool):
        self.model, self.graph = model, graph and mask.device.type == "cuda"
        slots, self.n = mask.shape
        self.capacity = self.n + room
        dtype = cache.layers[0].keys.dtype
        self.hidden = torch.finfo(dtype).min
        # zeros, not empty: a hidden column still enters the attention sum as 0 * value, and
        # torch's deterministic mode fills empty memory with NaN (0 * NaN = NaN)
        self.keys = [self._widen(l.keys, self.capacity) for l in cache.layers]
        self.values = [self._widen(l.values, self.capacity) for l in cache.layers]
        self.mask = torch.full((slots, 1, 1, self.capacity), self.hidden, dtype=dtype, device=mask.device)
        self.mask[:, 0, 0, :self.n] = torch.where(mask.bool(), 0.0, self.hidden).to(dtype)
        self.pos = next_pos[:, None].clone()
        self.ids = torch.zeros_like(self.pos)
        self._build()

    @staticmethod
    def _widen(t: torch.Tensor, capacity: int) -> torch.Tensor:
        out = t.new_zeros((*t.shape[:2], capacity, t.shape[-1]))
        out[:, :, :t.shape[2]] = t
        return out

    def _build(self) -> None:
        self.col = torch.tensor([self.n], device=self.mask.device)
        self.cache = SlotCache([SlotLayer(k, v, self.col) for k, v in zip(self.keys, self.values)])
        self.logits = None
        if self.graph:
            self._capture()

    def _step(self) -> None:
        with _plain_kernels():
            self._forward()

    def _forward(self) -> None:
        self.mask.index_fill_(3, self.col, 0.0)
        out = self.model(input_ids=self.ids, attention_mask=self.mask, position_ids=self.pos,
                         past_key_values=self.cache, use_cache=True)
        self.logits = out.logits[:, -1]
        self.col.add_(1)
        self.pos.add_(1)

    def _capture(self) -> None:
        """Warm up on a side stream (cuBLAS and allocator state), undo what the warm-up wrote,
        then record one step. Recording runs nothing."""
        pos = self.pos.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        self.col.fill_(self.n)
        self.pos.copy_(pos)
        self.mask[..., self.n:self.n + 2] = self.hidden
        self.cuda_graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.current_stream()
        try:
            with torch.cuda.graph(self.cuda_graph):
                self._step()
        except RuntimeError as e:  # recording ran nothing: the buffers are as before
            torch.cuda.set_stream(stream)  # a failed capture_end leaves the capture stream current
            torch.cuda.synchronize()
            warnings.warn(f"CUDA graph capture failed ({str(e).splitlines()[0][:200]}); this batch decodes "
                          "eagerly on its static buffers (same arithmetic, slower)", CaptureFailed)
            self.graph, self.cuda_graph, self.logits = False, None, None

    def __call__(self, feed: "list[int] | torch.Tensor") -> torch.Tensor:
        """One step; feed: the slots' token ids, a list or a tensor on the device (no host trip)."""
        if self.n == self.capacity:
            self._grow()
        ids = feed if isinstance(feed, torch.Tensor) else torch.tensor(feed, dtype=torch.long)
        self.ids.copy_(ids.view(-1, 1), non_blocking=True)
        if self.graph:
            self.cuda_graph.replay()
        else:
            self._step()
        self.n += 1
        return self.logits

    def _grow(self) -> None:
        """A quarter more capacity (forced tokens outran the room): new buffers, a new graph.
        Not doubling: at 1,920 slots one column of SmolLM2's cache is 44 MB (bf16), and doubling
        an assisted batch's capacity ran an H100 out of memory."""
        self.capacity += max(32, self.capacity // 4)
        self.cuda_graph = self.logits = None  # the old graph's memory pool goes first
        self.keys = [self._widen(k, self.capacity) for k in self.keys]
        self.values = [self._widen(v, self.capacity) for v in self.values]
        mask = self.mask.new_full((*self.mask.shape[:3], self.capacity), self.hidden)
        mask[..., :self.n] = self.mask[..., :self.n]
        self.mask, self.pos, self.ids = mask, self.pos.clone(), self.ids.clone()
        self._build()


def to_host(t: torch.Tensor):
    """(host copy of t, CUDA event marking its arrival or None). On CUDA the copy is
    asynchronous (to pinned memory), so the host can wait for it alone, not for work queued
    after it (engine.run launches the next step in between)."""
    if t.device.type != "cuda":
        return t, None
    out = t.to("cpu", non_blocking=True)
    ready = torch.cuda.Event()
    ready.record()
    return out, ready
