"""Fitted scikit-learn SVC, or CalibratedClassifierCV over SVCs -> plain numpy arrays for the stacker.

``export_svm(estimator)`` returns the dict of arrays that :class:`sdk.stacking.SVMStacker` reads
(its module docstring lists the keys): numbers and unicode strings only, so a bundle's stacker.npz
loads with ``allow_pickle=False``. Supported: ``SVC`` with a linear, poly, rbf or sigmoid kernel,
either decision_function_shape, break_ties, with or without ``probability=True`` (and
``training.stacking.ConfidenceSVC``, exported with the shape "confidences"); and
``CalibratedClassifierCV`` (method 'sigmoid' or 'isotonic', ``ensemble`` True or False) whose members
are such SVCs, also pre-fitted ones wrapped in ``FrozenEstimator``. Anything else raises ValueError.

Read from scikit-learn 1.9: the resolved gamma ``_gamma`` and libsvm's Platt parameters ``_probA``
and ``_probB`` (the public ``probA_``/``probB_`` are deprecated in 1.9 and removed in 1.11).
"""

from __future__ import annotations

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.svm import SVC

from sdk.stacking import CALIBRATION_METHODS, CONFIDENCES, FORMAT_VERSION, KERNELS, PLAIN_KINDS
from training.stacking import ConfidenceSVC


def export_svm(estimator) -> dict[str, np.ndarray]:
    """The stacker arrays (see ``sdk.stacking``) of a fitted SVC or CalibratedClassifierCV(SVC).

    Raises ValueError, naming the problem, for an unfitted estimator, a precomputed or callable
    kernel, an estimator of another type or a calibration method other than sigmoid or isotonic.
    """
    if isinstance(estimator, CalibratedClassifierCV):
        return _export_calibrated(estimator)
    _check_svc(estimator)
    return {**_header("SVC", estimator, n_svms=1), **_svm_arrays(estimator, "svm0.")}


def _export_calibrated(calibrated: CalibratedClassifierCV) -> dict[str, np.ndarray]:
    if not hasattr(calibrated, "calibrated_classifiers_"):
        raise ValueError("the CalibratedClassifierCV is not fitted: call fit before export_svm")
    if calibrated.method not in CALIBRATION_METHODS:
        raise ValueError(
            f"CalibratedClassifierCV method {calibrated.method!r} is not supported: "
            f"use one of {', '.join(CALIBRATION_METHODS)}"
        )
    members = calibrated.calibrated_classifiers_
    arrays = _header("CalibratedClassifierCV", calibrated, n_svms=len(members))
    arrays["calibration_method"] = np.array(calibrated.method)
    for m, member in enumerate(members):
        svc = member.estimator
        if isinstance(svc, FrozenEstimator):  # CalibratedClassifierCV(FrozenEstimator(fitted_svc))
            svc = svc.estimator
        _check_svc(svc)
        if not np.array_equal(svc.classes_, calibrated.classes_):
            raise ValueError(
                f"calibrated member {m} was fitted on classes {svc.classes_.tolist()}, not all of "
                f"{calibrated.classes_.tolist()}: refit with folds that hold every class"
            )
        arrays.update(_svm_arrays(svc, f"svm{m}."))
        arrays.update(_calibrator_arrays(member.calibrators, calibrated.method, f"cal{m}."))
    return arrays


def _check_svc(estimator) -> None:
    if type(estimator) not in (SVC, ConfidenceSVC):
        raise ValueError(
            f"cannot export a {type(estimator).__name__}: export_svm takes a fitted sklearn.svm.SVC (or "
            "training.stacking.ConfidenceSVC) or a CalibratedClassifierCV wrapping one"
        )
    if type(estimator) is ConfidenceSVC and estimator.decision_function_shape != "ovo":
        raise ValueError("a ConfidenceSVC sums one-vs-one values: it needs decision_function_shape='ovo'")
    if not hasattr(estimator, "support_vectors_"):
        raise ValueError("the SVC is not fitted: call fit before export_svm")
    if callable(estimator.kernel) or estimator.kernel not in KERNELS:
        raise ValueError(
            f"SVC kernel {estimator.kernel!r} cannot be exported: use one of {', '.join(KERNELS)}"
        )
    if estimator._sparse:
        raise ValueError("the SVC was fitted on a sparse matrix: refit it on a dense array")
    if estimator.break_ties and estimator.decision_function_shape == "ovo":
        raise ValueError("SVC has break_ties=True with decision_function_shape='ovo', which cannot predict")


def _header(name: str, estimator, n_svms: int) -> dict[str, np.ndarray]:
    return {
        "format_version": np.array(FORMAT_VERSION),
        "estimator": np.array(name),
        "classes": _labels(estimator.classes_),
        "n_features_in": np.array(estimator.n_features_in_),
        "n_svms": np.array(n_svms),
    }


def _labels(classes: np.ndarray) -> np.ndarray:
    """Class labels as numbers or unicode strings (object arrays of str become unicode)."""
    labels = np.asarray(classes)
    if labels.dtype.kind == "O" and all(isinstance(label, str) for label in labels):
        labels = labels.astype(str)
    if labels.dtype.kind not in PLAIN_KINDS:
        raise ValueError(f"class labels {labels.tolist()} are not all numbers or all strings")
    return labels


def _svm_arrays(svc: SVC, prefix: str) -> dict[str, np.ndarray]:
    # scikit-learn negates a binary SVC's public dual_coef_ and intercept_; the stacker keeps libsvm's sign.
    libsvm_sign = -1.0 if len(svc.classes_) == 2 else 1.0
    arrays = {
        "kernel": np.array(svc.kernel),
        "gamma": np.array(svc._gamma, dtype=np.float64),
        "coef0": np.array(svc.coef0, dtype=np.float64),
        "degree": np.array(svc.degree, dtype=np.int64),
        "support_vectors": np.array(svc.support_vectors_, dtype=np.float64),
        "n_support": np.array(svc.n_support_, dtype=np.int64),
        "dual_coef": libsvm_sign * np.array(svc.dual_coef_, dtype=np.float64),
        "intercept": libsvm_sign * np.array(svc.intercept_, dtype=np.float64),
        "prob_a": np.array(svc._probA, dtype=np.float64),
        "prob_b": np.array(svc._probB, dtype=np.float64),
        "decision_function_shape": np.array(
            CONFIDENCES if type(svc) is ConfidenceSVC else svc.decision_function_shape
        ),
        "break_ties": np.array(bool(svc.break_ties)),
    }
    return {prefix + key: value for key, value in arrays.items()}


def _calibrator_arrays(calibrators: list, method: str, prefix: str) -> dict[str, np.ndarray]:
    if method == "sigmoid":
        return {
            prefix + "a": np.array([c.a_ for c in calibrators], dtype=np.float64),
            prefix + "b": np.array([c.b_ for c in calibrators], dtype=np.float64),
        }
    arrays = {}
    for c, calibrator in enumerate(calibrators):
        arrays[f"{prefix}{c}.x"] = np.array(calibrator.X_thresholds_, dtype=np.float64)
        arrays[f"{prefix}{c}.y"] = np.array(calibrator.y_thresholds_, dtype=np.float64)
    return arrays
