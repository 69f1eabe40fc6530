"""Agreement of predicted classes with the graded labels, from the confusion matrix.

The paper reports Cohen's kappa and a "weighted accuracy"; :data:`WEIGHTED_ACCURACY_NOTE` says
which figure here corresponds to it and why.
"""

from __future__ import annotations

import numpy as np

from sdk.labels import CLASSES
from sdk.maps import MAP_NAMES
from training.data import NORMAL

WEIGHTED_ACCURACY_NOTE = (
    'The paper\'s "weighted accuracy" is taken to be the balanced accuracy: the accuracy with every eye '
    "weighted by the inverse of its true class's frequency, which equals the mean of the per-class recalls. "
    "It is the only reading in which the weighting changes anything (weighting per-class accuracies by class "
    "size gives back the plain accuracy), and with 156 normal against 798 glaucoma eyes and unequal types a "
    "class-balanced figure is the one worth reporting beside kappa. The paper does not define the term, so "
    "the overall accuracy is reported too."
)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(CLASSES)) -> np.ndarray:
    """(n_classes, n_classes) int counts: row = true class index, column = predicted class index."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def accuracy(cm: np.ndarray) -> float:
    """Share of eyes classified correctly."""
    return float(np.trace(cm) / cm.sum())


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes that occur in the true labels (the paper's "weighted accuracy",
    see WEIGHTED_ACCURACY_NOTE)."""
    present = cm.sum(axis=1) > 0
    return float(np.mean(np.diag(cm)[present] / cm.sum(axis=1)[present]))


def cohen_kappa(cm: np.ndarray) -> float:
    """Cohen's kappa: (observed agreement - chance agreement) / (1 - chance agreement)."""
    n = cm.sum()
    observed = np.trace(cm) / n
    chance = (cm.sum(axis=0) @ cm.sum(axis=1)) / n**2
    return float((observed - chance) / (1 - chance))


def summarise(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Kappa, accuracy, balanced accuracy and the confusion matrix (rows/columns in CLASSES order)
    of class indices ``y_pred`` against ``y_true``."""
    cm = confusion(y_true, y_pred)
    return {
        "kappa": cohen_kappa(cm),
        "accuracy": accuracy(cm),
        "balanced_accuracy": balanced_accuracy(cm),
        "confusion": cm.tolist(),
    }


def stage_accuracies(features: np.ndarray, y_true: np.ndarray, approach: str) -> dict[str, dict[str, float]]:
    """Per-map accuracy of each stage network, read from its stacking features (n_eyes, 20).

    flat: "flat" = 5-class accuracy of the argmax. hierarchical approaches: "stage1" = normal vs
    glaucoma on every eye (P(normal) >= 0.5 means normal), "stage2" = type accuracy of the argmax of
    the four type probabilities on the glaucoma eyes.
    """
    per_map = features.reshape(len(features), len(MAP_NAMES), len(CLASSES))
    glaucoma = y_true != NORMAL
    out: dict[str, dict[str, float]] = {}
    for m, map_name in enumerate(MAP_NAMES):
        f = per_map[:, m]
        if approach == "flat":
            out.setdefault("flat", {})[map_name] = float(np.mean(f.argmax(axis=1) == y_true))
            continue
        out.setdefault("stage1", {})[map_name] = float(np.mean((f[:, 0] < 0.5) == glaucoma))
        if glaucoma.any():
            types = f[glaucoma, 1:].argmax(axis=1)
            out.setdefault("stage2", {})[map_name] = float(np.mean(types == y_true[glaucoma] - 1))
    return out


ECE_BINS = 10


def brier(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    """Multi-class Brier score: mean over eyes of sum over classes of (p - [class is true])^2 (0 best, 2
    worst); probabilities (n, n_classes) in CLASSES order."""
    onehot = np.eye(probabilities.shape[1])[np.asarray(y_true)]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def expected_calibration_error(probabilities: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error: eyes binned by their highest probability into ``bins``
    equal-width bins over [0, 1]; the eye-weighted mean of |accuracy - mean confidence| per bin."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(confidence))


def per_class(cm: np.ndarray) -> dict[str, dict[str, float | None]]:
    """{class: {sensitivity, ppv}} from a confusion matrix (rows true); None where undefined (no true
    eye of the class, or none predicted as it)."""
    true, predicted, hits = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    return {
        c: {
            "sensitivity": float(hits[i] / true[i]) if true[i] else None,
            "ppv": float(hits[i] / predicted[i]) if predicted[i] else None,
        }
        for i, c in enumerate(CLASSES)
    }


def summarise_probabilities(y_true: np.ndarray, probabilities: np.ndarray) -> dict:
    """:func:`summarise` of the most probable class, with the Brier score, ECE and per-class
    sensitivity and PPV; probabilities (n, 5) in CLASSES order."""
    y_pred = probabilities.argmax(axis=1)
    out = summarise(y_true, y_pred)
    out["brier"] = brier(probabilities, y_true)
    out["ece"] = expected_calibration_error(probabilities, y_true)
    out["per_class"] = per_class(np.array(out["confusion"]))
    return out
