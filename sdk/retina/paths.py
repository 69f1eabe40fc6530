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


def best_path(cost: np.ndarray, max_step: int = 1, step_penalty: float = 0.0) -> np.ndarray:
    """Minimum-cost path through ``cost`` for every B-scan.

    Parameters
    ----------
    cost : float array (n_bscans, n_ascans, n_offsets); ``inf`` marks forbidden offsets.
    max_step : largest offset change between neighbouring A-scans, in px.
    step_penalty : cost of each px of offset change.

    Returns
    -------
    int array (n_bscans, n_ascans): the offset index chosen at every A-scan.
    """
    n_b, n_a, n_o = cost.shape
    per_column = np.ascontiguousarray(cost.transpose(1, 0, 2), dtype=np.float64)
    m = max_step
    padded = np.full((n_b, n_o + 2 * m), np.inf)  # acc with inf margins, so shifts are views
    acc = per_column[0].copy()
    back = np.zeros((n_a, n_b, n_o), dtype=np.int8)
    for a in range(1, n_a):
        padded[:, m : m + n_o] = acc
        best = acc.copy()  # step 0
        arg = back[a]
        for d in range(-m, m + 1):
            if d == 0:
                continue
            candidate = padded[:, m - d : m - d + n_o] + step_penalty * abs(d)  # from offset o - d
            better = candidate < best
            np.copyto(best, candidate, where=better)
            np.copyto(arg, d, where=better)
        acc = best + per_column[a]
    back = back.transpose(1, 0, 2)
    path = np.empty((n_b, n_a), dtype=np.intp)
    path[:, -1] = np.argmin(acc, axis=1)
    rows = np.arange(n_b)
    for a in range(n_a - 1, 0, -1):
        path[:, a - 1] = path[:, a] - back[rows, a, path[:, a]]
    return path


def refine_subpixel(strength: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sub-sample position of an edge: parabola through the strength at index-1, index, index+1.

    strength : (n_bscans, n_ascans, n_offsets) edge strength; index : (n_bscans, n_ascans) ints.
    Returns float (n_bscans, n_ascans) positions, index + delta with |delta| <= 0.5.
    """
    n_o = strength.shape[2]
    i = np.clip(index, 1, n_o - 2)[..., None]
    left, mid, right = (np.take_along_axis(strength, i + k, axis=2)[..., 0] for k in (-1, 0, 1))
    curvature = left - 2.0 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
    delta = np.clip(np.nan_to_num(delta), -0.5, 0.5)
    return np.where((index >= 1) & (index <= n_o - 2), index + delta, index).astype(np.float64)
