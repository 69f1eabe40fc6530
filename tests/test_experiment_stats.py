"""The experiment's statistics against references: Brier, ECE, per-class figures, McNemar, Stuart-Maxwell,
patient-level bootstrap intervals and paired differences; the summary-number and oracle controls."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score, precision_score, recall_score

import phantom
from sdk.maps import MAP_SIZE_PX, RNFL_FIELD_MM
from training.controls import disc_hole, oracle_features
from training.metrics import brier, confusion, expected_calibration_error, per_class
from training.uncertainty import SplitPredictions, bootstrap, mcnemar, paired_bootstrap, stuart_maxwell


def random_probabilities(rng, n, k=5):
    p = rng.random((n, k)) ** 3
    return p / p.sum(axis=1, keepdims=True)


def test_brier_ece_and_per_class_match_their_definitions():
    rng = np.random.default_rng(0)
    p, y = random_probabilities(rng, 300), rng.integers(0, 5, 300)
    expected = np.mean([sum((p[i, c] - (c == y[i])) ** 2 for c in range(5)) for i in range(300)])
    assert brier(p, y) == pytest.approx(expected, abs=1e-12)
    conf, hit = p.max(axis=1), p.argmax(axis=1) == y
    edges = np.linspace(0, 1, 11)
    ece = sum(
        np.sum(m) / 300 * abs(hit[m].mean() - conf[m].mean())
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        if (m := (conf >= lo) & (conf < hi)).any()
    )
    assert expected_calibration_error(p, y) == pytest.approx(ece, abs=1e-12)
    perfect = np.eye(5)[y]
    assert brier(perfect, y) == 0 and expected_calibration_error(perfect, y) == 0
    pred = p.argmax(axis=1)
    figures = per_class(confusion(y, pred))
    sens = recall_score(y, pred, average=None, labels=range(5))
    ppv = precision_score(y, pred, average=None, labels=range(5), zero_division=0)
    for i, c in enumerate(figures):
        assert figures[c]["sensitivity"] == pytest.approx(sens[i], abs=1e-12)
        if figures[c]["ppv"] is not None:
            assert figures[c]["ppv"] == pytest.approx(ppv[i], abs=1e-12)


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_eyes():
    a = np.array([1] * 30 + [0] * 12 + [1] * 50 + [0] * 8, bool)
    b = np.array([0] * 30 + [1] * 12 + [1] * 50 + [0] * 8, bool)
    result = mcnemar(a, b)
    assert (result["a_only"], result["b_only"]) == (30, 12)
    assert result["p"] == pytest.approx(2 * stats.binom.cdf(12, 42, 0.5), rel=1e-9)
    assert mcnemar(a, a)["p"] == 1.0


def test_stuart_maxwell_reduces_to_mcnemar_and_finds_a_shift():
    # 2 classes: chi2 = (b - c)^2 / (b + c)
    pred_a = np.array([0] * 20 + [0] * 15 + [1] * 5 + [1] * 60)
    pred_b = np.array([0] * 20 + [1] * 15 + [0] * 5 + [1] * 60)
    result = stuart_maxwell(pred_a, pred_b, 2)
    assert result["chi2"] == pytest.approx((15 - 5) ** 2 / 20, rel=1e-12) and result["df"] == 1
    # 3 classes, hand-computed: d = (n1. - n.1, n2. - n.2), S from the off-diagonal counts
    table = np.array([[20, 10, 5], [3, 30, 6], [2, 4, 25]])
    pa = np.repeat([0, 0, 0, 1, 1, 1, 2, 2, 2], table.ravel())
    pb = np.repeat([0, 1, 2, 0, 1, 2, 0, 1, 2], table.ravel())
    d = (table.sum(1) - table.sum(0))[:2]
    s = np.array([[10 + 5 + 3 + 2, -(10 + 3)], [-(10 + 3), 3 + 6 + 10 + 4]], float)
    assert stuart_maxwell(pa, pb, 3)["chi2"] == pytest.approx(d @ np.linalg.solve(s, d), rel=1e-12)
    same = stuart_maxwell(pa, pa, 3)
    assert same["chi2"] == 0 and same["p"] == 1.0


def make_splits(rng, accuracy, n_seeds=5, n_patients=60):
    splits = []
    for _ in range(3):
        patients = np.repeat(np.arange(n_patients), 2)
        y = np.repeat(rng.integers(0, 5, n_patients), 2)
        pred = np.where(rng.random((n_seeds, len(y))) < accuracy, y, rng.integers(0, 5, (n_seeds, len(y))))
        splits.append(SplitPredictions(pred, y, patients))
    return splits


def test_bootstrap_interval_holds_the_estimate_and_covers_the_truth():
    rng = np.random.default_rng(1)
    splits = make_splits(rng, 0.7)
    ci = bootstrap(splits, "kappa", n_boot=400)
    direct = np.mean([cohen_kappa_score(s.y, p) for s in splits for p in s.pred])
    assert ci["estimate"] == pytest.approx(direct, abs=1e-12)
    assert ci["low"] < ci["estimate"] < ci["high"]
    # kappa of a 70 %-right rater among 5 classes is about 0.7 - (0.3 * 0.2) ... = 0.7 + 0.3/5 - 0.2 over 0.8
    truth = (0.7 + 0.3 / 5 - 0.2) / 0.8
    assert ci["low"] < truth < ci["high"]
    assert 0.02 < ci["high"] - ci["low"] < 0.2  # 360 eyes of 180 patients: a few hundredths wide


def test_paired_bootstrap_sees_a_real_difference_and_none_where_there_is_none():
    rng = np.random.default_rng(2)
    better, worse = make_splits(rng, 0.8), make_splits(np.random.default_rng(2), 0.6)
    for b, w in zip(better, worse, strict=True):  # same eyes and patients
        w.y, w.group = b.y, b.group
        w.pred = np.where(rng.random(w.pred.shape) < 0.6, b.y, rng.integers(0, 5, w.pred.shape))
    diff = paired_bootstrap(better, worse, "kappa", n_boot=400)
    assert diff["low"] > 0.1 and diff["p_two_sided"] < 0.01
    same = paired_bootstrap(better, better, "balanced_accuracy", n_boot=200)
    assert same["estimate"] == 0 and same["low"] == 0 and same["high"] == 0


def test_bootstrap_keeps_fellow_eyes_together():
    """Patients of two eyes whose eyes are either both right or both wrong: redrawing patients (not
    eyes) gives a wider interval than eyes drawn one by one would."""
    rng = np.random.default_rng(3)
    y = np.repeat(rng.integers(0, 5, 100), 2)
    right = np.repeat(rng.random(100) < 0.6, 2)
    pred = np.where(right, y, (y + 1) % 5)[None]
    paired = bootstrap([SplitPredictions(pred, y, np.repeat(np.arange(100), 2))], "balanced_accuracy", 400)
    single = bootstrap([SplitPredictions(pred, y, np.arange(200))], "balanced_accuracy", 400)
    assert paired["high"] - paired["low"] > 1.2 * (single["high"] - single["low"])


def test_disc_hole_area_and_aspect():
    px_mm = RNFL_FIELD_MM / MAP_SIZE_PX
    yy, xx = np.mgrid[:MAP_SIZE_PX, :MAP_SIZE_PX] - MAP_SIZE_PX / 2 + 0.5
    rnfl = np.full((MAP_SIZE_PX, MAP_SIZE_PX), 100.0)
    rnfl[(yy / 40) ** 2 + (xx / 20) ** 2 < 1] = np.nan
    rnfl[:5] = np.nan  # outside the scan, not the disc
    area, aspect = disc_hole(rnfl, px_mm)
    assert area == pytest.approx(np.pi * 40 * 20 * px_mm**2, rel=0.02)
    assert aspect == pytest.approx(2.0, rel=0.02)
    assert disc_hole(np.full((MAP_SIZE_PX, MAP_SIZE_PX), 90.0), px_mm) == (0.0, 1.0)


def test_oracle_features_read_the_generator_parameters():
    spec = phantom.cohort(2, 8, seed=1)[5]
    p = spec.params()
    row = oracle_features([p])[0]
    assert row[0] == p.cup_ratio and row[3] == pytest.approx(p.bmo_semi_y_mm / p.bmo_semi_x_mm)
    assert row[6] == max((n.depth for n in p.notches), default=0.0)
