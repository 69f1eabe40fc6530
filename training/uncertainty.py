"""How sure the experiment's figures are: patient-level bootstrap intervals, a paired bootstrap of a
difference between approaches, McNemar's and the Stuart-Maxwell test.

The experiment gives, per test split, the predictions of several training seeds on the same test
eyes. An approach's figure is the mean over splits and seeds. A bootstrap replicate redraws, in every
split independently, the test patients (with replacement, both eyes of a patient together) and the
training seeds (with replacement), and recomputes that mean; the 2.5 and 97.5 percentiles of
``N_BOOTSTRAP`` replicates give the 95 % interval. So the interval holds the test-set sampling and
the seed-to-seed (training) noise; the three splits' own training sets are not redrawn. A paired
difference uses the same redrawn patients and seeds (seed i of one approach with seed i of the other)
for both approaches.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from training.metrics import balanced_accuracy, cohen_kappa, confusion

N_BOOTSTRAP = 2000
UNCERTAINTY_NOTE = (
    f"95 % intervals from {N_BOOTSTRAP} bootstrap replicates: in each replicate every test split's patients "
    "(both eyes together) and its training seeds are redrawn with replacement, and the mean over splits "
    "and seeds recomputed (percentile interval). They hold test-set sampling and training noise; the "
    "splits' training sets are not redrawn. Paired differences redraw the same patients and seeds for "
    "both approaches; p is the two-sided bootstrap p-value. McNemar (exact) and Stuart-Maxwell compare "
    "approach 3 with flat on each split's test eyes for each seed."
)
METRIC_FUNCTIONS = {"kappa": cohen_kappa, "balanced_accuracy": balanced_accuracy}


class SplitPredictions:
    """One approach's predicted classes on one split's test eyes: pred (n_seeds, n_eyes) ints, y (n_eyes,)
    true class indices, patients (n_eyes,) patient ids."""

    def __init__(self, pred: np.ndarray, y: np.ndarray, patients: np.ndarray):
        self.pred, self.y = np.atleast_2d(pred), np.asarray(y)
        _, self.group = np.unique(np.asarray(patients), return_inverse=True)
        self.members = [np.flatnonzero(self.group == g) for g in range(self.group.max() + 1)]


def _metric(split: SplitPredictions, metric: str, eyes: np.ndarray, seeds: np.ndarray) -> float:
    function = METRIC_FUNCTIONS[metric]
    return float(
        np.mean([function(confusion(split.y[eyes], split.pred[s % len(split.pred), eyes])) for s in seeds])
    )


def _draws(splits: list[SplitPredictions], n_seeds: int, n_boot: int, seed: int):
    """Per replicate and split: (eye positions of redrawn patients, redrawn seed indices)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield [
            (
                np.concatenate([s.members[g] for g in rng.integers(0, len(s.members), len(s.members))]),
                rng.integers(0, n_seeds, n_seeds),
            )
            for s in splits
        ]


def bootstrap(
    splits: list[SplitPredictions], metric: str, n_boot: int = N_BOOTSTRAP, seed: int = 0
) -> dict[str, float]:
    """{estimate, low, high}: the mean over splits and seeds of ``metric`` and its 95 % interval."""
    return paired_bootstrap(splits, None, metric, n_boot, seed)


def paired_bootstrap(
    a: list[SplitPredictions],
    b: list[SplitPredictions] | None,
    metric: str,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> dict[str, float]:
    """{estimate, low, high, p_two_sided}: mean ``metric`` of ``a`` minus that of ``b`` (or of ``a`` alone
    when b is None) over the same splits, with its 95 % interval; p_two_sided is twice the smaller
    share of replicates on either side of 0 (a bootstrap p-value, at least 1 / n_boot)."""
    n_seeds = max(len(s.pred) for s in a + (b or []))

    def value(draw) -> float:
        va = np.mean([_metric(s, metric, eyes, seeds) for s, (eyes, seeds) in zip(a, draw, strict=True)])
        if b is None:
            return float(va)
        vb = np.mean([_metric(s, metric, eyes, seeds) for s, (eyes, seeds) in zip(b, draw, strict=True)])
        return float(va - vb)

    full = [(np.arange(len(s.y)), np.arange(n_seeds)) for s in a]
    replicates = np.array([value(draw) for draw in _draws(a, n_seeds, n_boot, seed)])
    low, high = np.percentile(replicates, [2.5, 97.5])
    out = {"estimate": value(full), "low": float(low), "high": float(high)}
    if b is not None:
        share = min(np.mean(replicates <= 0), np.mean(replicates >= 0))
        out["p_two_sided"] = float(max(2 * share, 1 / n_boot))
    return out


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """Exact McNemar test of two classifiers on the same eyes: {a_only, b_only, p} with a_only the eyes
    only ``a`` got right; p two-sided, from the binomial distribution of the discordant eyes."""
    a_only = int(np.sum(correct_a & ~correct_b))
    b_only = int(np.sum(~correct_a & correct_b))
    n = a_only + b_only
    p = 1.0 if n == 0 else float(stats.binomtest(a_only, n, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p": p}


def stuart_maxwell(pred_a: np.ndarray, pred_b: np.ndarray, n_classes: int) -> dict[str, float]:
    """Stuart-Maxwell test of marginal homogeneity: do two classifiers, on the same eyes, predict the
    classes equally often? {chi2, df, p}; classes neither predicts are left out."""
    table = confusion(pred_a, pred_b, n_classes).astype(float)
    used = (table.sum(axis=0) + table.sum(axis=1)) > 0
    table = table[np.ix_(used, used)]
    k = len(table)
    if k < 2:
        return {"chi2": 0.0, "df": 0, "p": 1.0}
    d = (table.sum(axis=1) - table.sum(axis=0))[:-1]
    s = -(table + table.T)[:-1, :-1]
    np.fill_diagonal(s, (table.sum(axis=1) + table.sum(axis=0) - 2 * np.diag(table))[:-1])
    chi2 = float(d @ np.linalg.pinv(s) @ d)
    df = int(np.linalg.matrix_rank(s))
    return {"chi2": chi2, "df": df, "p": float(stats.chi2.sf(chi2, df)) if df else 1.0}
