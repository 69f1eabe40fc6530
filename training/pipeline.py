"""One training set -> stage networks + stacker: the procedure shared by training.train and the experiment.

    folds = plan_folds(labels, patients, eyes, k, seed, "the training set")   # CohortError up front
    trained = train_stacked(inputs, labels, patients, eyes, folds, approaches, settings, seed)

For each of the k patient folds, the normative model and networks are fitted on the other folds and
give the held-out eyes' stacking features (out of fold); then the normative model and networks are
fitted on all training eyes (these are the ones shipped and evaluated), and each approach's SVM is
fitted on the out-of-fold features. So k + 1 fits per training set.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from sklearn.calibration import CalibratedClassifierCV

from sdk.errors import CohortError
from sdk.labels import CLASSES
from training.data import NORMAL
from training.hierarchy import NetworkSettings, StageModels, fit_stage_models
from training.inputs import Inputs
from training.seeds import derive_seed
from training.splits import patient_folds, rest
from training.stacking import fit_stacker, out_of_fold

log = logging.getLogger(__name__)


@dataclass
class Trained:
    """What one training set gives.

    eyes : cohort indices of the training eyes. final : stage models fitted on all of them.
    oof_features : {approach: (len(eyes), 20)} out-of-fold stacking features.
    stackers : {approach: fitted CalibratedClassifierCV(ConfidenceSVC)}, classes_ = class names; with
        ``balanced_stacker``, also "<approach>_balanced": the same SVM with class-balanced weights.
    folds : held-out positions (into ``eyes``) of each fold.
    fold_trained_on : per fold, the cohort indices its normative model and networks were fitted on.
    """

    eyes: np.ndarray
    final: StageModels
    oof_features: dict[str, np.ndarray]
    stackers: dict[str, CalibratedClassifierCV]
    folds: list[np.ndarray]
    fold_trained_on: list[np.ndarray]


def require_classes(labels: np.ndarray, where: str) -> None:
    """CohortError unless ``labels`` (class indices) hold every class, and 2 normal eyes for the
    normative model."""
    counts = np.bincount(labels, minlength=len(CLASSES))
    missing = [c for c, n in zip(CLASSES, counts, strict=True) if n == 0]
    if missing:
        raise CohortError(
            f"no eye of class {', '.join(missing)} in {where}: every class needs training eyes "
            f"(class counts {dict(zip(CLASSES, counts.tolist(), strict=True))}); add eyes of that class"
        )
    if counts[NORMAL] < 2:
        raise CohortError(
            f"{where} holds {counts[NORMAL]} normal eye(s); the normative model needs at least 2"
        )


def plan_folds(
    labels: np.ndarray, patients: np.ndarray, eyes: np.ndarray, k_folds: int, seed: int, where: str
) -> list[np.ndarray]:
    """The k patient folds of training eyes ``eyes`` (held-out positions into ``eyes``).

    Raises CohortError, before anything is trained, if a class is absent from the training eyes or
    from the training part of any fold, or there are fewer patients than folds.
    """
    y, p = labels[eyes], patients[eyes]
    require_classes(y, where)
    if len(set(p.tolist())) < k_folds:
        raise CohortError(
            f"{where} has {len(set(p.tolist()))} patients, fewer than the {k_folds} folds needed "
            "for out-of-fold stacking features"
        )
    folds = patient_folds(y, p, k_folds, seed)
    for j, held in enumerate(folds):
        require_classes(y[rest(len(eyes), held)], f"{where} without fold {j + 1} of {k_folds}")
    return folds


def train_stacked(
    inputs: Inputs,
    labels: np.ndarray,
    patients: np.ndarray,
    eyes: np.ndarray,
    folds: list[np.ndarray],
    approaches,
    settings: NetworkSettings,
    seed: int,
    pool: Executor | None = None,
    start_seed: int | None = None,
    balanced_stacker: str | None = None,
) -> Trained:
    """Fit the stage models of ``approaches`` on training eyes ``eyes`` and their stackers on
    out-of-fold features (see the module docstring). Arrays, ``start_seed`` and ``pool`` as in
    training.hierarchy.fit_stage_models; ``balanced_stacker``: an approach that also gets a
    class-weighted stacker."""
    fold_trained_on: list[np.ndarray] = []

    def fit(j: int, positions: np.ndarray) -> StageModels:
        start = time.perf_counter()
        models = fit_stage_models(
            inputs,
            labels,
            patients,
            eyes[positions],
            approaches,
            settings,
            derive_seed(seed, "fold", j),
            pool,
            start_seed,
        )
        log.info(
            "fold %d/%d: %d networks on %d eyes in %.0f s",
            j + 1,
            len(folds),
            len(models.networks),
            len(positions),
            time.perf_counter() - start,
        )
        fold_trained_on.append(models.trained_on)
        return models

    def features(models: StageModels, positions: np.ndarray) -> dict[str, np.ndarray]:
        return models.features(eyes[positions], approaches)

    oof = out_of_fold(len(eyes), folds, fit, features)
    start = time.perf_counter()
    final = fit_stage_models(
        inputs, labels, patients, eyes, approaches, settings, derive_seed(seed, "final"), pool, start_seed
    )
    log.info(
        "final: %d networks on %d eyes in %.0f s", len(final.networks), len(eyes), time.perf_counter() - start
    )
    names = np.array(CLASSES)[labels[eyes]]
    stackers = {a: fit_stacker(oof[a], names, folds) for a in approaches}
    if balanced_stacker:
        stackers[f"{balanced_stacker}_balanced"] = fit_stacker(
            oof[balanced_stacker], names, folds, class_weight="balanced"
        )
    return Trained(eyes, final, oof, stackers, folds, fold_trained_on)
