"""Controls without networks: logistic regressions on 10 summary numbers per eye, and on the phantom's
generator parameters (the ceiling of what the cohort's classes allow).

Summary numbers (:data:`SUMMARY_FEATURES`): the mean and sd of each of the four maps over their
unmasked pixels, and the disc hole of the RNFL thickness map (the masked region at the map's
centre): its area in mm2 and its aspect ratio (major / minor axis of the pixels' second moments).
Generator parameters (:data:`ORACLE_FEATURES`) are read from the phantom eyes' EyeParams; the oracle
exists only for phantom cohorts.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sdk.maps import MAP_NAMES, MAP_SIZE_PX, RNFL_FIELD_MM, Normative

SUMMARY_FEATURES = tuple(f"{m}_{s}" for m in MAP_NAMES for s in ("mean", "sd")) + (
    "disc_area_mm2",
    "disc_aspect",
)
ORACLE_FEATURES = (
    "cup_ratio",
    "cup_depth_mm",
    "cup_slope",
    "disc_ovality",
    "disc_tilt_mm",
    "diffuse_loss",
    "max_notch_depth",
    "atrophy_extent",
    "age_years",
    "choroid_um",
)
LOGISTIC_C = 1.0


def summary_features(thickness_um: np.ndarray, normative: Normative) -> np.ndarray:
    """(n_eyes, 10) float64 SUMMARY_FEATURES of thickness maps (n_eyes, 2, 224, 224) um, deviation from
    ``normative``."""
    out = np.empty((len(thickness_um), len(SUMMARY_FEATURES)))
    px_mm = RNFL_FIELD_MM / MAP_SIZE_PX
    for i, (rnfl, gcc) in enumerate(thickness_um):
        maps = (rnfl, gcc, *normative.deviation(rnfl, gcc))
        stats = [f(m[np.isfinite(m)]) for m in maps for f in (np.mean, np.std)]
        out[i] = [*stats, *disc_hole(rnfl, px_mm)]
    return out


def disc_hole(rnfl_um: np.ndarray, px_mm: float) -> tuple[float, float]:
    """(area mm2, aspect) of the masked region of an RNFL map holding its centre pixel; (0, 1) if the
    centre is not masked."""
    labels, _ = ndimage.label(~np.isfinite(rnfl_um))
    centre = labels[rnfl_um.shape[0] // 2, rnfl_um.shape[1] // 2]
    if centre == 0:
        return 0.0, 1.0
    ys, xs = np.nonzero(labels == centre)
    eig = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(float))) if len(ys) > 2 else np.ones(2)
    return float(len(ys) * px_mm**2), float(np.sqrt(eig[-1] / max(eig[0], 1e-9)))


def oracle_features(params) -> np.ndarray:
    """(n_eyes, 10) ORACLE_FEATURES of phantom EyeParams."""
    rows = []
    for p in params:
        notch = max((n.depth for n in p.notches), default=0.0)
        atrophy = sum(a.half_width_deg / 180 * a.width_mm for a in p.atrophy)
        rows.append(
            [
                p.cup_ratio,
                p.cup_depth_mm,
                p.cup_slope,
                p.bmo_semi_y_mm / p.bmo_semi_x_mm,
                p.disc_tilt_mm,
                p.diffuse_loss,
                notch,
                atrophy,
                p.age_years,
                p.choroid_um,
            ]
        )
    return np.array(rows, float)


def fit_logistic(x: np.ndarray, labels: np.ndarray):
    """Standardised multinomial logistic regression (C = LOGISTIC_C) on features x (n, k), class names
    ``labels``; classes_ sorted like a stacker's."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=LOGISTIC_C, max_iter=5000))
    return model.fit(x, labels)
