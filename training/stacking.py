"""Stage 3: the SVM stacked on out-of-fold confidences.

The stacker learns how far to trust each map's networks from confidences on eyes those networks did
not see: a network's confidence on its own training eyes is near 1 and would teach the stacker to
trust it blindly. So the training eyes are split into k folds by patient; the networks fitted
without fold j (normative model included) give fold j's features (:func:`out_of_fold`), and the
SVM is fitted on those. The networks shipped (and used on test eyes) are fitted on all training eyes.

The SVM is scikit-learn's ``SVC`` (RBF kernel) in ``CalibratedClassifierCV`` (sigmoid), which
``converters.svm.export_svm`` exports; the calibration folds are the same patient folds. The SVC is a
:class:`ConfidenceSVC`: the sigmoids read a continuous score per class, not SVC's one-vs-rest scores,
which count one-vs-one votes and so make the probabilities step wherever one pairwise SVM changes
sign (docs/bf16-probe/stacker_jump.py: a 0.004 change of the features moved P(normal) 0.446 -> 0.520).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.svm import SVC

from sdk.stacking import confidence_sums, ovo_pairs
from training.splits import rest

SVM_C = 1.0
SVM_KERNEL = "rbf"
CALIBRATION = "sigmoid"


class ConfidenceSVC(SVC):
    """scikit-learn's SVC whose multi-class decision function is continuous in its input: per class, the
    one-vs-one decision values of its pairs signed for it and summed (:func:`sdk.stacking.confidence_sums`;
    SVC's own one-vs-rest scores are the votes plus these sums squashed into (-1/3, 1/3)). Make it with
    ``decision_function_shape="ovo"``; ``converters.svm.export_svm`` exports it for the SDK."""

    def decision_function(self, X):
        values = super().decision_function(X)
        if len(self.classes_) == 2:
            return values
        if self.decision_function_shape != "ovo":
            raise ValueError(
                "ConfidenceSVC sums the one-vs-one values: make it with decision_function_shape='ovo'"
            )
        n = len(self.classes_)
        return confidence_sums(values, ovo_pairs(n), n)


def out_of_fold(
    n_eyes: int, folds: list[np.ndarray], fit: Callable, features: Callable
) -> dict[str, np.ndarray]:
    """Features of every eye from models that never saw it.

    folds : held-out positions (into range(n_eyes)) of each fold, together covering every eye once.
    fit(j, train_positions) -> model fitted on the positions outside fold j.
    features(model, positions) -> {name: (len(positions), n_features)}.
    Returns {name: (n_eyes, n_features)}: row i from the model of the fold holding i.
    """
    out: dict[str, np.ndarray] = {}
    for j, held in enumerate(folds):
        model = fit(j, rest(n_eyes, held))
        for name, values in features(model, held).items():
            out.setdefault(name, np.full((n_eyes, values.shape[1]), np.nan))[held] = values
    return out


def fit_stacker(
    features: np.ndarray, labels: np.ndarray, folds: list[np.ndarray], class_weight: str | None = None
) -> CalibratedClassifierCV:
    """Fit the stacker on out-of-fold ``features`` (n_eyes, 20) and class names ``labels`` (n_eyes,),
    calibrating over ``folds`` (held-out positions). Its classes_ are the class names, sorted.
    class_weight : None, or "balanced" (the SVM weighs each class by the inverse of its frequency)."""
    cv = [(rest(len(labels), held), held) for held in folds]
    svm = ConfidenceSVC(
        kernel=SVM_KERNEL, C=SVM_C, gamma="scale", class_weight=class_weight, decision_function_shape="ovo"
    )
    stacker = CalibratedClassifierCV(svm, method=CALIBRATION, cv=cv)
    return stacker.fit(features, labels)
