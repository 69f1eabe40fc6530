"""Run array work on blocks of A-scans or B-scans in parallel threads.

numpy's element-wise and gathering operations and scipy.ndimage's filters release the GIL on large
arrays, so the blocks of one volume use every core. Each block may read ``halo`` items beyond its
own edges, so that a filter's result inside the block is exactly that on the whole array.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache

MAX_THREADS = 8  # no more than this many blocks: beyond it the per-block overhead dominates


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="octc-retina")


# a forked child has none of the parent's threads: it must make its own pool, not wait on dead ones
os.register_at_fork(after_in_child=_pool.cache_clear)


def n_threads() -> int:
    """Threads for one volume: the cores this process may run on, at most MAX_THREADS."""
    return max(1, min(MAX_THREADS, len(os.sched_getaffinity(0))))


def for_blocks(work, n: int, halo: int = 0) -> None:
    """Call ``work(lo, hi, read_lo, read_hi)`` for contiguous blocks [lo, hi) of ``n`` items (A-scans
    or B-scans), one per thread, where [read_lo, read_hi) is the block widened by ``halo`` on both
    sides and clipped to the array. ``work`` writes its results itself; exceptions propagate."""
    n_blocks = min(n_threads(), max(1, n // max(4 * halo, 16)))
    edges = [n * i // n_blocks for i in range(n_blocks + 1)]
    blocks = [
        (lo, hi, max(lo - halo, 0), min(hi + halo, n)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    if len(blocks) == 1:
        work(*blocks[0])
        return
    for future in [_pool().submit(work, *block) for block in blocks]:
        future.result()


def in_parallel(*calls):
    """Results of the argument-free ``calls``, in order, the first in this thread and the others in the
    pool's (for numpy and scipy.ndimage work that releases the GIL); exceptions propagate. The calls
    must not use the pool themselves (for_blocks)."""
    if n_threads() == 1:
        return [call() for call in calls]
    futures = [_pool().submit(call) for call in calls[1:]]
    first = calls[0]()
    return [first, *(future.result() for future in futures)]
