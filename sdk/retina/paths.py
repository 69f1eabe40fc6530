"""Minimum-cost boundary paths through a band of candidate depths (column-wise dynamic programming).

A boundary is a function of the A-scan index inside each B-scan. Within a band of candidate
offsets around a reference surface, the path that minimises the summed cost, changing its offset
by at most ``max_step`` px between neighbouring A-scans (each step of size d costing
``step_penalty * |d|``), is found exactly by Viterbi dynamic programming. This is the
column-wise equivalent of the graph search of Chiu et al. (Opt. Express 2010) for boundaries that
are functions of x; all B-scans are solved at once.
"""

from __future__ import annotations

import numpy as np

from sdk.retina.chunks import for_blocks

try:  # the same search compiled (sdk/retina/_paths.c, built by pip install); numpy_best_path is the reference
    import sdk.retina._paths as _paths  # no stub: mypy takes it as a missing import (Any)
except ImportError:  # a source tree without the build: the numpy search, 5-10x slower, the same paths
    _paths = None


def best_path(cost: np.ndarray, max_step: int = 1, step_penalty: float = 0.0) -> np.ndarray:
    """Minimum-cost path through ``cost`` for every B-scan: :func:`numpy_best_path`'s result,
    computed by the compiled search where it is built (without the GIL held; blocks of B-scans, each
    copied contiguous, in parallel threads: every B-scan's path is its own)."""
    cost = np.asarray(cost, dtype=np.float32)
    # NaN or inf: numpy's rules, which the kernel does not follow (an all-infinite window would step
    # outside the band); the traces make finite costs
    if _paths is None or not np.isfinite(cost).all():
        return numpy_best_path(cost, max_step, step_penalty)
    path = np.empty(cost.shape[:2], dtype=np.int64)

    def search(lo, hi, *_):
        block = np.empty((cost.shape[0], hi - lo), np.int64)
        _paths.best_path(np.ascontiguousarray(cost[:, lo:hi]), int(max_step), float(step_penalty), block)
        path[:, lo:hi] = block

    for_blocks(search, cost.shape[1])
    return path.astype(np.intp, copy=False)


def band_path(
    score: np.ndarray,
    scale: float,
    low: np.ndarray,
    high: np.ndarray,
    max_step: int,
    step_penalty: float,
    outside_cost: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`numpy_band_path`'s result, computed by the compiled search where it is built (without
    the GIL held and without making the cost array; blocks of B-scans in parallel threads)."""
    low, high = (np.broadcast_to(v, score.shape[:2]) for v in (low, high))
    if _paths is not None and score.dtype == np.float32 and score.size:
        rows = np.empty(score.shape[:2], np.int64)
        refined = np.empty(score.shape[:2], np.float64)
        finite = []

        def search(lo, hi, *_):
            block_rows = np.empty((score.shape[0], hi - lo), np.int64)
            block_refined = np.empty(block_rows.shape, np.float64)
            limits = (np.ascontiguousarray(v[:, lo:hi], np.float64) for v in (low, high))
            args = (outside_cost, max_step, step_penalty, block_rows, block_refined)
            finite.append(_paths.band_path(score[:, lo:hi], scale, *limits, *args))
            rows[:, lo:hi], refined[:, lo:hi] = block_rows, block_refined

        for_blocks(search, score.shape[1])
        if all(finite):
            return rows.astype(np.intp, copy=False), refined
    return numpy_band_path(score, scale, low, high, max_step, step_penalty, outside_cost)


def numpy_band_path(score, scale, low, high, max_step, step_penalty, outside_cost):
    """Best path where ``score / scale`` is high inside the rows [low, high] of each A-scan (a soft
    limit: rows outside cost ``outside_cost``).

    score : float32 (n_ascans, n_bscans, n_offsets); low, high : float rows (n_ascans, n_bscans),
    broadcastable. Returns the chosen offsets, int (n_ascans, n_bscans), and their sub-pixel
    positions (:func:`refine_subpixel` on -cost), float64 of that shape."""
    values = score / scale
    j = np.arange(values.shape[2])
    inside = (j >= np.asarray(low)[..., None]) & (j <= np.asarray(high)[..., None])
    cost = np.where(inside, -values, outside_cost)
    rows = best_path(cost, max_step, step_penalty)
    return rows, refine_subpixel(-cost, rows)


def numpy_best_path(cost: np.ndarray, max_step: int = 1, step_penalty: float = 0.0) -> np.ndarray:
    """Minimum-cost path through ``cost`` for every B-scan.

    Parameters
    ----------
    cost : float array (n_ascans, n_bscans, n_offsets), A-scans first so that each step of the
        recursion reads one contiguous slab.
    max_step : largest offset change between neighbouring A-scans, in px.
    step_penalty : cost of each px of offset change.

    Returns
    -------
    int array (n_ascans, n_bscans): the offset index chosen at every A-scan.
    """
    n_a, n_b, n_o = cost.shape
    cost = np.asarray(cost, dtype=np.float32)
    m = max_step
    # acc[a, b, m + o]: least cost of a path ending at offset o of A-scan a; inf margins make the
    # offsets o - d and o + d plain views
    acc = np.full((n_a, n_b, n_o + 2 * m), np.inf, dtype=np.float32)
    acc[0, :, m : m + n_o] = cost[0]
    reach = np.empty((n_b, n_o), dtype=np.float32)
    pair = np.empty_like(reach)
    for a in range(1, n_a):
        previous = acc[a - 1]
        np.copyto(reach, previous[:, m : m + n_o])
        for d in range(1, m + 1):
            np.minimum(previous[:, m - d : m - d + n_o], previous[:, m + d : m + d + n_o], out=pair)
            pair += np.float32(step_penalty * d)
            np.minimum(reach, pair, out=reach)
        np.add(reach, cost[a], out=acc[a, :, m : m + n_o])
    # back along the path: the step into each chosen offset, ties going to the largest step from
    # below (d = +m first), as argmin over the window o - m .. o + m of the previous A-scan
    steps = np.arange(m, -m - 1, -1)
    penalty = (step_penalty * np.abs(steps)).astype(np.float32)
    columns = np.arange(n_b)[:, None]
    path = np.empty((n_a, n_b), dtype=np.intp)
    path[-1] = np.argmin(acc[-1, :, m : m + n_o], axis=1)
    for a in range(n_a - 1, 0, -1):
        arrived_from = path[a][:, None] - steps[None, :]  # offsets o - d, shape (n_b, 2m + 1)
        choice = np.argmin(acc[a - 1][columns, arrived_from + m] + penalty, axis=1)
        path[a - 1] = arrived_from[np.arange(n_b), choice]
    return path


def refine_subpixel(strength: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sub-sample position of an edge: parabola through the strength at index-1, index, index+1.

    strength : (..., n_offsets) edge strength; index : (...) ints.
    Returns float positions of index's shape, index + delta with |delta| <= 0.5.
    """
    n_o = strength.shape[2]
    if n_o < 3:  # no neighbours on both sides: the index itself
        return index.astype(np.float64)
    i = np.clip(index, 1, n_o - 2)[..., None]
    left, mid, right = (np.take_along_axis(strength, i + k, axis=2)[..., 0] for k in (-1, 0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):  # non-finite strengths: no shift (below)
        curvature = left - 2.0 * mid + right
        delta = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
    delta = np.clip(np.nan_to_num(delta), -0.5, 0.5)
    return np.where((index >= 1) & (index <= n_o - 2), index + delta, index).astype(np.float64)
