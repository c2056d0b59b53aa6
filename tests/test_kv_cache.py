"""The decode loop's KV cache (kv_cache.py) and the host-memory setting the CPU decode relies on."""

import resource
import sys

import pytest
import torch

from aipo_lite.engine.kv_cache import GrowingCache, GrowingLayer, refill_order
from aipo_lite.model.host_memory import keep_freed_host_memory


def _cache(rows: int, positions: int, layers: int = 2) -> GrowingCache:
    cache = GrowingCache([GrowingLayer(torch.empty(rows, 3, 1, 4), torch.empty(rows, 3, 1, 4)) for _ in range(layers)])
    g = torch.Generator().manual_seed(rows * 100 + positions)
    for i in range(layers):  # more than the room: the buffers double on the way
        cache.update(torch.randn(rows, 3, positions, 4, generator=g), torch.randn(rows, 3, positions, 4, generator=g), i)
    return cache


@pytest.mark.parametrize("keep", [[0, 1, 2, 3, 4, 5], [1, 3, 5], [0, 2, 4], [4, 5], [0, 1, 2], [5], []])
def test_dropping_finished_rows_keeps_each_kept_rows_keys_and_values(keep):
    """Finished rows leave the batch by moving rows from its end into their slots: every kept row's
    keys and values are unchanged, found at the index the returned order gives, and the cache keeps
    growing in place afterwards."""
    cache, ref = _cache(6, 5), _cache(6, 5)
    order = cache.drop_rows(keep)
    assert sorted(order) == keep and len(order) == len(keep)
    for mine, theirs in zip(cache.layers, ref.layers):
        assert mine.keys.shape[0] == len(keep)
        assert torch.equal(mine.keys, theirs.keys[order]) and torch.equal(mine.values, theirs.values[order])
    if keep:
        new = torch.ones(len(keep), 3, 1, 4)
        k, v = cache.layers[0].update(new, new)
        assert k.shape[2] == 6 and torch.equal(k[:, :, -1:], new) and torch.equal(k[:, :, :5], ref.layers[0].keys[order])


def test_transformers_row_selection_keeps_the_buffers_consistent():
    """DynamicLayer.batch_select_indices (transformers' generation utilities call it) selects rows
    of the filled views; the override selects the buffers too, so the next update lands in the
    selected rows (the base version would write into the old buffers and return stale rows)."""
    cache, ref = _cache(4, 5), _cache(4, 5)
    idx = torch.tensor([3, 1])
    for layer in cache.layers:
        layer.batch_select_indices(idx)
    new = torch.full((2, 3, 1, 4), 7.0)
    k, v = cache.layers[0].update(new, new)
    assert k.shape == (2, 3, 6, 4)
    assert torch.equal(k[:, :, :5], ref.layers[0].keys[idx]) and torch.equal(k[:, :, 5:], new)
    assert torch.equal(cache.layers[1].values, ref.layers[1].values[idx])


def test_refill_order_moves_only_rows_from_above_the_new_size():
    order, holes, movers = refill_order([0, 2, 3, 6, 7])
    assert holes == [1, 4] and movers == [6, 7] and order == [0, 6, 2, 3, 7]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_host_memory_is_reused_without_page_faults():
    """The setting load_policy makes on the CPU (glibc, Linux) keeps freed blocks in the process: a 16 MiB
    tensor allocated and freed over and over faults its pages in once, not on every allocation
    (each fault is a trip into the kernel; a decode step allocates such blocks by the hundred)."""
    if not keep_freed_host_memory():
        pytest.skip("not glibc")

    def faults_of_20_allocations() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            torch.empty(4 * 1024 * 1024).fill_(1.0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_20_allocations()  # the first one may fault its pages in
    assert faults_of_20_allocations() < 1000  # 20 x 4,096 pages if every allocation faulted
    assert keep_freed_host_memory()  # idempotent
