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

from training.metrics import confusion

N_BOOTSTRAP = 2000
UNCERTAINTY_NOTE = (
    f"95 % intervals from {N_BOOTSTRAP} bootstrap replicates: in each replicate every test split's patients "
    "(both eyes together) and its training seeds are redrawn with replacement, and the mean over splits "
    "and seeds recomputed (percentile interval). They hold test-set sampling and training noise; the "
    "splits' training sets are not redrawn. Paired differences redraw the same patients and seeds for "
    "both approaches; p is the two-sided bootstrap p-value. McNemar (exact) and Stuart-Maxwell compare "
    "approach 3 with flat on each split's test eyes for each seed."
)
METRICS = ("kappa", "balanced_accuracy")


class SplitPredictions:
    """One approach's predicted classes on one split's test eyes: pred (n_seeds, n_eyes) ints, y (n_eyes,)
    true class indices, patients (n_eyes,) patient ids."""

    def __init__(self, pred: np.ndarray, y: np.ndarray, patients: np.ndarray, n_classes: int = 5):
        self.pred, self.y = np.atleast_2d(pred), np.asarray(y)
        _, self.group = np.unique(np.asarray(patients), return_inverse=True)
        self.n_patients, self.n_classes = int(self.group.max()) + 1, n_classes

    def patient_confusions(self) -> np.ndarray:
        """(n_seeds, n_patients, n_classes ** 2) confusion counts of each patient's eyes per seed."""
        k = self.n_classes
        out = np.zeros((len(self.pred), self.n_patients, k * k))
        for s, pred in enumerate(self.pred):
            np.add.at(out[s], (self.group, self.y * k + pred), 1)
        return out


def _metric_of(cm: np.ndarray, metric: str) -> np.ndarray:
    """kappa or balanced accuracy of confusion matrices cm (..., k * k), rows true, vectorised."""
    k = int(round(np.sqrt(cm.shape[-1])))
    cm = cm.reshape(*cm.shape[:-1], k, k)
    diag = np.diagonal(cm, axis1=-2, axis2=-1)
    rows, cols = cm.sum(axis=-1), cm.sum(axis=-2)
    n = rows.sum(axis=-1)
    if metric == "kappa":
        observed, chance = diag.sum(axis=-1) / n, (rows * cols).sum(axis=-1) / n**2
        return (observed - chance) / (1 - chance)
    present = rows > 0
    return np.sum(np.where(present, diag / np.maximum(rows, 1), 0), axis=-1) / present.sum(axis=-1)


def _replicates(splits: list[SplitPredictions], metric: str, draws) -> np.ndarray:
    """The metric's mean over splits and seeds for each replicate: draws = per split (patient counts
    (n_boot, n_patients), seed counts (n_boot, n_seeds))."""
    per_split = []
    for split, (patient_counts, seed_counts) in zip(splits, draws, strict=True):
        confusions = split.patient_confusions()  # (n_seeds, n_patients, k * k)
        n_seeds = seed_counts.shape[1]
        values = np.stack(
            [_metric_of(patient_counts @ confusions[s % len(confusions)], metric) for s in range(n_seeds)],
            axis=1,
        )
        per_split.append(np.sum(values * seed_counts, axis=1) / n_seeds)
    return np.mean(per_split, axis=0)


def _draws(splits: list[SplitPredictions], n_seeds: int, n_boot: int, seed: int):
    """Per split: (patient counts (n_boot, n_patients), seed counts (n_boot, n_seeds)) of redraws with
    replacement, and the identity draw (every patient and seed once) for the estimate."""
    rng = np.random.default_rng(seed)
    draws, full = [], []
    for s in splits:
        patients = rng.integers(0, s.n_patients, (n_boot, s.n_patients))
        seeds = rng.integers(0, n_seeds, (n_boot, n_seeds))
        draws.append(
            (
                np.stack([np.bincount(row, minlength=s.n_patients) for row in patients]).astype(float),
                np.stack([np.bincount(row, minlength=n_seeds) for row in seeds]).astype(float),
            )
        )
        full.append((np.ones((1, s.n_patients)), np.ones((1, n_seeds))))
    return draws, full


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
    when b is None) over the same splits (same eyes and patients), with its 95 % interval; p_two_sided
    is twice the smaller share of replicates on either side of 0 (a bootstrap p-value, at least
    1 / n_boot)."""
    n_seeds = max(len(s.pred) for s in a + (b or []))
    draws, full = _draws(a, n_seeds, n_boot, seed)

    def value(d) -> np.ndarray:
        va = _replicates(a, metric, d)
        return va if b is None else va - _replicates(b, metric, d)

    replicates = value(draws)
    low, high = np.percentile(replicates, [2.5, 97.5])
    out = {"estimate": float(value(full)[0]), "low": float(low), "high": float(high)}
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
