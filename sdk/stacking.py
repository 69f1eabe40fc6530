"""The stage-3 stacker: a scikit-learn ``SVC``, or a ``CalibratedClassifierCV`` over SVCs, in numpy.

:class:`SVMStacker` reproduces scikit-learn 1.9's ``decision_function``, ``predict`` and
``predict_proba`` in float64 (measured within 4e-14) from the plain arrays that
``converters.svm.export_svm`` writes: libsvm's one-vs-one model, scikit-learn's conventions on top of
it (binary sign flip, one-vs-rest scores, ``break_ties``), libsvm's Platt probabilities with
Wu-Lin-Weng pairwise coupling, and ``CalibratedClassifierCV``'s per-class sigmoid or isotonic
calibrators averaged over its members.

Stacker arrays, format version 1 (each a numpy array of numbers or unicode strings; ``()`` is a
scalar; ``n_pairs = n_classes * (n_classes - 1) / 2``; ``m`` numbers the SVMs from 0)::

    format_version          ()                      int, 1
    estimator               ()                      "SVC" or "CalibratedClassifierCV"
    classes                 (n_classes,)            labels in scikit-learn's ``classes_`` order
    n_features_in           ()                      int
    n_svms                  ()                      1 for an SVC, else one per calibrated member
    svm{m}.kernel           ()                      "linear", "poly", "rbf" or "sigmoid"
    svm{m}.gamma            ()                      float, resolved (scikit-learn's ``_gamma``)
    svm{m}.coef0            ()                      float
    svm{m}.degree           ()                      int
    svm{m}.support_vectors  (n_sv, n_features)      float, grouped by class
    svm{m}.n_support        (n_classes,)            int, support vectors per class
    svm{m}.dual_coef        (n_classes - 1, n_sv)   float, libsvm's sign
    svm{m}.intercept        (n_pairs,)              float, libsvm's sign (-rho)
    svm{m}.prob_a           (n_pairs,) or (0,)      float, libsvm Platt slope (empty: no probabilities)
    svm{m}.prob_b           (n_pairs,) or (0,)      float, libsvm Platt offset
    svm{m}.decision_function_shape  ()              "ovr", "ovo" or "confidences" (training.stacking's
                                                    ConfidenceSVC: the ovr scores' confidence sums alone)
    svm{m}.break_ties       ()                      bool
    calibration_method      ()                      "sigmoid" or "isotonic" (CalibratedClassifierCV only)
    cal{m}.a, cal{m}.b      (n_calibrators,)        float, sigmoid p = 1 / (1 + exp(a f + b))
    cal{m}.{c}.x, cal{m}.{c}.y  (n_thresholds,)     float, isotonic knots, x increasing

A calibrated member has one calibrator per class (on decision column c for class c), or one for
two classes (on the binary decision value, for ``classes[1]``).

libsvm's sign: for two classes scikit-learn negates the dual coefficients, the intercept and the
decision value; the arrays keep libsvm's own sign because libsvm's Platt scaling runs on it.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping

import numpy as np

from sdk.errors import BundleError, FileError
from sdk.files import write_atomically

FORMAT_VERSION = 1
ESTIMATORS = ("SVC", "CalibratedClassifierCV")
KERNELS = ("linear", "poly", "rbf", "sigmoid")
CONFIDENCES = "confidences"  # per class the summed one-vs-one values: ovr without the votes (continuous)
DECISION_SHAPES = ("ovr", "ovo", CONFIDENCES)
CALIBRATION_METHODS = ("sigmoid", "isotonic")
PLAIN_KINDS = "biufU"  # numpy dtype kinds a stacker array may have: nothing that needs pickle
MIN_PAIRWISE_PROB = 1e-7  # libsvm clips each pairwise Platt probability to [1e-7, 1 - 1e-7]
_KIND_NAMES = {"iu": "an integer", "fiu": "a number", "b": "a boolean", "U": "a unicode string"}
ROWS_PER_BLOCK = 256  # samples per block of RBF distances: at most 256 x n_sv x n_features doubles at once

Calibrator = Callable[[np.ndarray], np.ndarray]


class SVMStacker:
    """A fitted SVC or CalibratedClassifierCV(SVC), evaluated in numpy float64.

    Parameters
    ----------
    arrays : mapping of str to numpy array, as ``converters.svm.export_svm`` returns (see the module
        docstring for the keys). Raises :class:`sdk.errors.BundleError` naming the first malformed key.

    Attributes
    ----------
    classes_ : array (n_classes,) of class labels, in scikit-learn's order.
    n_features_in_ : int, features per sample.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self._arrays = _plain_copy(arrays)
        reader = _Reader(self._arrays)
        version = reader.number("format_version", "iu")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"stacker array 'format_version' is {version}: this SDK reads version {FORMAT_VERSION}; "
                "re-export the stacker with this version's converters.svm.export_svm"
            )
        self._estimator = reader.choice("estimator", ESTIMATORS)
        self.classes_ = reader.array("classes", PLAIN_KINDS, (None,))
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise BundleError(f"stacker array 'classes' has {n_classes} label(s); at least 2 are needed")
        self.n_features_in_ = reader.count("n_features_in", minimum=1)
        n_svms = reader.count("n_svms", minimum=1)
        if self._estimator == "SVC" and n_svms != 1:
            raise BundleError(f"stacker array 'n_svms' is {n_svms}; an SVC stacker holds exactly 1")
        self._svms = [_SVM(reader, f"svm{m}.", n_classes, self.n_features_in_) for m in range(n_svms)]
        self._calibrators = []
        if self._estimator == "CalibratedClassifierCV":
            method = reader.choice("calibration_method", CALIBRATION_METHODS)
            self._calibrators = [_read_calibrators(reader, m, method, n_classes) for m in range(n_svms)]

    @classmethod
    def load(cls, path: str | os.PathLike) -> SVMStacker:
        """Read a stacker .npz (plain arrays only: it is opened with ``allow_pickle=False``)."""
        try:
            with open(path, "rb") as file:
                arrays = _read_npz(file, path)
        except FileNotFoundError:
            raise FileError(f"stacker file {path} does not exist: check the bundle folder") from None
        except OSError as error:
            raise FileError(f"stacker file {path} cannot be read: {error}") from error
        return cls(arrays)

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the arrays to ``path`` as an .npz, atomically (temp file + os.replace).

        Raises :class:`sdk.errors.FileError` if ``path`` exists and ``overwrite`` is False, or if it
        cannot be written.
        """
        # numeric arrays only: allow_pickle=False, which the bundle's reader also insists on
        write_atomically(
            path, lambda file: np.savez(file, allow_pickle=False, **self._arrays), overwrite=overwrite
        )

    def decision_function(self, X) -> np.ndarray:
        """The SVC's decision values, as scikit-learn's ``SVC.decision_function``.

        X : array (n_samples, n_features_in_). Returns (n_samples,) for two classes (positive means
        ``classes_[1]``), else (n_samples, n_classes) for 'ovr' or (n_samples, n_pairs) for 'ovo'.
        A CalibratedClassifierCV has no decision function: this raises AttributeError for it.
        """
        if self._estimator != "SVC":
            raise AttributeError(
                "a CalibratedClassifierCV stacker has no decision_function: use predict_proba"
            )
        return self._svms[0].decision_function(self._check_X(X))

    def predict(self, X) -> np.ndarray:
        """Class labels (n_samples,) for X (n_samples, n_features_in_), as scikit-learn predicts.

        SVC: libsvm's one-vs-one vote (first class with most votes), or with ``break_ties`` the
        arg-max of the one-vs-rest scores. CalibratedClassifierCV: arg-max of ``predict_proba``.
        """
        X = self._check_X(X)
        if self._estimator == "SVC":
            return self.classes_[self._svms[0].predict_index(X)]
        return self.classes_[np.argmax(self._calibrated_proba(X), axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n_samples, n_classes) for X (n_samples, n_features_in_).

        SVC(probability=True): libsvm's Platt scaling and pairwise coupling. CalibratedClassifierCV:
        each member's calibrated, normalised probabilities, averaged. An SVC fitted without
        probabilities raises AttributeError, as scikit-learn does.
        """
        X = self._check_X(X)
        if self._estimator == "SVC":
            return self._svms[0].platt_proba(X)
        return self._calibrated_proba(X)

    def _calibrated_proba(self, X: np.ndarray) -> np.ndarray:
        total = np.zeros((X.shape[0], len(self.classes_)))
        for svm, calibrators in zip(self._svms, self._calibrators, strict=True):
            total += _calibrated_member_proba(svm.decision_function(X), calibrators, len(self.classes_))
        return total / len(self._svms)

    def _check_X(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        n_features = self.n_features_in_
        if X.ndim != 2:
            raise ValueError(
                f"X must be 2-D (n_samples, {n_features}), got shape {X.shape}; "
                "for one sample use X.reshape(1, -1)"
            )
        if X.shape[1] != n_features:
            raise ValueError(f"X has {X.shape[1]} features per sample; this stacker takes {n_features}")
        if not np.isfinite(X).all():
            n_bad = int(X.size - np.count_nonzero(np.isfinite(X)))
            raise ValueError(f"X has {n_bad} NaN or infinite values; every feature must be finite")
        return X


class _SVM:
    """One fitted SVC: libsvm's one-vs-one model and scikit-learn's conventions on top of it."""

    def __init__(self, reader: _Reader, prefix: str, n_classes: int, n_features: int):
        n_pairs = n_classes * (n_classes - 1) // 2
        self.n_classes = n_classes
        self.pairs = ovo_pairs(n_classes)
        self.kernel = reader.choice(prefix + "kernel", KERNELS)
        self.gamma = reader.number(prefix + "gamma", "fiu")
        self.coef0 = reader.number(prefix + "coef0", "fiu")
        self.degree = reader.count(prefix + "degree", minimum=0)
        self.support_vectors = reader.array(prefix + "support_vectors", "fiu", (None, n_features))
        n_sv = len(self.support_vectors)
        n_support = reader.array(prefix + "n_support", "iu", (n_classes,))
        if n_support.sum() != n_sv or np.any(n_support < 0):
            raise BundleError(
                f"stacker array {prefix}n_support is {n_support.tolist()}: it must count the {n_sv} "
                "support vectors class by class"
            )
        ends = np.cumsum(n_support)
        self.class_slices = [slice(end - n, end) for n, end in zip(n_support, ends, strict=True)]
        self.dual_coef = reader.array(prefix + "dual_coef", "fiu", (n_classes - 1, n_sv))
        self.intercept = reader.array(prefix + "intercept", "fiu", (n_pairs,))
        self.prob_a = reader.array(prefix + "prob_a", "fiu", (None,))
        self.prob_b = reader.array(prefix + "prob_b", "fiu", (None,))
        if len(self.prob_a) not in (0, n_pairs) or len(self.prob_b) != len(self.prob_a):
            raise BundleError(
                f"stacker arrays {prefix}prob_a and {prefix}prob_b have {len(self.prob_a)} and "
                f"{len(self.prob_b)} values; expected 0 or {n_pairs} each"
            )
        self.shape = reader.choice(prefix + "decision_function_shape", DECISION_SHAPES)
        self.break_ties = reader.number(prefix + "break_ties", "b")
        if self.break_ties and self.shape == "ovo":
            raise BundleError(
                f"stacker array {prefix}break_ties is True with 'ovo': scikit-learn cannot predict so"
            )

    def _squared_distances(self, X: np.ndarray) -> np.ndarray:
        """(n_samples, n_sv) squared euclidean distances, summed over the differences as libsvm's
        prediction does, ROWS_PER_BLOCK samples at a time (scipy.spatial's cdist would cost 0.14 s
        of import at every start)."""
        squared = np.empty((len(X), len(self.support_vectors)))
        for i in range(0, len(X), ROWS_PER_BLOCK):
            difference = X[i : i + ROWS_PER_BLOCK, None, :] - self.support_vectors[None, :, :]
            squared[i : i + ROWS_PER_BLOCK] = np.square(difference).sum(axis=2)
        return squared

    def kernel_matrix(self, X: np.ndarray) -> np.ndarray:
        """Kernel values (n_samples, n_sv) between X (n_samples, n_features) and the support vectors."""
        if self.kernel == "rbf":
            return np.exp(-self.gamma * self._squared_distances(X))
        dot = X @ self.support_vectors.T
        if self.kernel == "linear":
            return dot
        if self.kernel == "poly":
            return (self.gamma * dot + self.coef0) ** self.degree
        return np.tanh(self.gamma * dot + self.coef0)

    def ovo_values(self, X: np.ndarray) -> np.ndarray:
        """libsvm's one-vs-one decision values (n_samples, n_pairs), pairs (0,1), (0,2), ..., (1,2), ...

        Positive means the first class of the pair, in libsvm's sign (also for two classes).
        """
        K = self.kernel_matrix(X)
        columns = []
        for p, (i, j) in enumerate(self.pairs):
            si, sj = self.class_slices[i], self.class_slices[j]
            value = K[:, si] @ self.dual_coef[j - 1, si] + K[:, sj] @ self.dual_coef[i, sj]
            columns.append(value + self.intercept[p])
        return np.stack(columns, axis=1)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's SVC.decision_function: (n_samples,) for two classes, else ovr or ovo columns."""
        values = self.ovo_values(X)
        if self.n_classes == 2:
            return -values[:, 0]
        if self.shape == "ovr":
            return _ovr_scores(values, self.pairs, self.n_classes)
        if self.shape == CONFIDENCES:
            return confidence_sums(values, self.pairs, self.n_classes)
        return values

    def predict_index(self, X: np.ndarray) -> np.ndarray:
        """Predicted class indices (n_samples,): libsvm's vote, or with break_ties the ovr arg-max."""
        if self.break_ties and self.n_classes > 2:
            return np.argmax(self.decision_function(X), axis=1)
        values = self.ovo_values(X)
        votes = np.zeros((len(X), self.n_classes), dtype=np.int64)
        for p, (i, j) in enumerate(self.pairs):
            first_wins = values[:, p] > 0
            votes[:, i] += first_wins
            votes[:, j] += ~first_wins
        return np.argmax(votes, axis=1)

    def platt_proba(self, X: np.ndarray) -> np.ndarray:
        """libsvm's probabilities (n_samples, n_classes): pairwise Platt sigmoids, then coupling."""
        if len(self.prob_a) == 0:
            raise AttributeError(
                "predict_proba is not available: the SVC was fitted without probability=True"
            )
        values = self.ovo_values(X)
        r = np.zeros((len(X), self.n_classes, self.n_classes))
        for p, (i, j) in enumerate(self.pairs):
            r_ij = _libsvm_sigmoid(values[:, p], self.prob_a[p], self.prob_b[p])
            r[:, i, j] = np.clip(r_ij, MIN_PAIRWISE_PROB, 1 - MIN_PAIRWISE_PROB)
            r[:, j, i] = 1 - r[:, i, j]
        return _pairwise_coupling(r)


def ovo_pairs(n_classes: int) -> list[tuple[int, int]]:
    """libsvm's (and scikit-learn's) order of the one-vs-one pairs: (0, 1), (0, 2), ..., (1, 2), ..."""
    return [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]


def confidence_sums(values: np.ndarray, pairs: list[tuple[int, int]], n_classes: int) -> np.ndarray:
    """Per class (n_samples, n_classes), the one-vs-one values (n_samples, n_pairs) of its pairs, signed
    for it: a continuous function of the input, where the one-vs-rest scores step with every vote."""
    sums = np.zeros((len(values), n_classes))
    for p, (i, j) in enumerate(pairs):
        sums[:, i] += values[:, p]
        sums[:, j] -= values[:, p]
    return sums


def _ovr_scores(values: np.ndarray, pairs: list[tuple[int, int]], n_classes: int) -> np.ndarray:
    """scikit-learn's one-vs-rest scores (n_samples, n_classes) from ovo values (n_samples, n_pairs).

    Votes (a zero value votes for the pair's first class) plus the summed confidences squashed into
    (-1/3, 1/3) by s / (3 (|s| + 1)), so confidences only break ties between equal votes.
    """
    votes = np.zeros((len(values), n_classes))
    for p, (i, j) in enumerate(pairs):
        second_wins = values[:, p] < 0
        votes[:, i] += ~second_wins
        votes[:, j] += second_wins
    sums = confidence_sums(values, pairs, n_classes)
    return votes + sums / (3 * (np.abs(sums) + 1))


def _libsvm_sigmoid(values: np.ndarray, a: float, b: float) -> np.ndarray:
    """libsvm's Platt probability 1 / (1 + exp(a f + b)), in its overflow-safe two-branch form."""
    f_ab = values * a + b
    e = np.exp(-np.abs(f_ab))
    return np.where(f_ab >= 0, e / (1.0 + e), 1.0 / (1 + e))


def _pairwise_coupling(r: np.ndarray) -> np.ndarray:
    """Class probabilities (n_samples, k) from pairwise ones r (n_samples, k, k), r[i, j] = P(i | i or j).

    Wu, Lin and Weng's method 2 solved as libsvm solves it, sample by sample: Gauss-Seidel sweeps
    from p = 1/k, stopping when max_t |(Qp)_t - p'Qp| < 0.005 / k or after max(100, k) sweeps. It
    does not run to full convergence, so neither may this (also for k = 2).
    """
    n, k, _ = r.shape
    Q = -r * np.swapaxes(r, 1, 2)
    for t in range(k):
        Q[:, t, t] = 0.0
        for j in range(k):
            if j != t:
                Q[:, t, t] += r[:, j, t] * r[:, j, t]
    p = np.full((n, k), 1.0 / k)
    live = np.arange(n)
    for _ in range(max(100, k)):
        Qp, pQp = _coupling_products(Q[live], p[live])
        unconverged = ~(np.max(np.abs(Qp - pQp[:, None]), axis=1) < 0.005 / k)
        live = live[unconverged]
        if live.size == 0:
            break
        p[live] = _coupling_sweep(Q[live], p[live], Qp[unconverged], pQp[unconverged])
    return p


def _coupling_products(Q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Qp (n, k) and p'Qp (n,), summed in libsvm's order, for Q (n, k, k) and p (n, k)."""
    k = p.shape[1]
    Qp = np.zeros_like(p)
    pQp = np.zeros(len(p))
    for t in range(k):
        for j in range(k):
            Qp[:, t] += Q[:, t, j] * p[:, j]
        pQp += p[:, t] * Qp[:, t]
    return Qp, pQp


def _coupling_sweep(Q: np.ndarray, p: np.ndarray, Qp: np.ndarray, pQp: np.ndarray) -> np.ndarray:
    """One Gauss-Seidel sweep of libsvm's coupling solver; returns the new p (n, k)."""
    for t in range(p.shape[1]):
        q_tt = Q[:, t, t]
        diff = (-Qp[:, t] + pQp) / q_tt
        p[:, t] += diff
        pQp = (pQp + diff * (diff * q_tt + 2 * Qp[:, t])) / (1 + diff) / (1 + diff)
        Qp = (Qp + diff[:, None] * Q[:, t, :]) / (1 + diff)[:, None]
        p = p / (1 + diff)[:, None]
    return p


def _calibrated_member_proba(scores: np.ndarray, calibrators: list[Calibrator], n_classes: int) -> np.ndarray:
    """One CalibratedClassifierCV member's probabilities (n_samples, n_classes).

    scores: the member SVC's decision_function, (n_samples,) for two classes, else (n_samples,
    n_columns) of which calibrator c reads column c (for 'ovo' the first n_classes pair columns, as
    scikit-learn pairs them).
    """
    if n_classes == 2:
        positive = calibrators[0](scores)
        proba = np.column_stack([1.0 - positive, positive])
    else:
        proba = np.column_stack([calibrate(scores[:, c]) for c, calibrate in enumerate(calibrators)])
        total = np.sum(proba, axis=1)[:, None]
        uniform = np.full_like(proba, 1 / n_classes)
        proba = np.divide(proba, total, out=uniform, where=total != 0)
    proba[(1.0 < proba) & (proba <= 1.0 + 1e-5)] = 1.0
    return proba


def _read_calibrators(reader: _Reader, m: int, method: str, n_classes: int) -> list[Calibrator]:
    """Calibrated member m's calibrators, one per class (one for two classes)."""
    n_calibrators = 1 if n_classes == 2 else n_classes
    if method == "sigmoid":
        a = reader.array(f"cal{m}.a", "fiu", (n_calibrators,))
        b = reader.array(f"cal{m}.b", "fiu", (n_calibrators,))
        return [_sigmoid_calibrator(a_c, b_c) for a_c, b_c in zip(a, b, strict=True)]
    return [_isotonic_calibrator(reader, f"cal{m}.{c}.") for c in range(n_calibrators)]


def _sigmoid_calibrator(a: float, b: float) -> Calibrator:
    """scikit-learn's _SigmoidCalibration: p = expit(-(a f + b)) = 1 / (1 + exp(a f + b))."""

    def calibrated(scores):
        with np.errstate(over="ignore"):  # exp overflows to inf where p is 0
            return 1.0 / (1.0 + np.exp(a * scores + b))

    return calibrated


def _isotonic_calibrator(reader: _Reader, prefix: str) -> Calibrator:
    """scikit-learn's IsotonicRegression(out_of_bounds='clip'): clip to the knots, interpolate linearly."""
    x = reader.array(prefix + "x", "fiu", (None,))
    y = reader.array(prefix + "y", "fiu", (len(x),))
    if len(x) == 0 or np.any(np.diff(x) <= 0):
        raise BundleError(f"stacker array {prefix}x must be non-empty and strictly increasing")
    return lambda scores: np.interp(np.clip(scores, x[0], x[-1]), x, y)


class _Reader:
    """Typed access to a stacker's arrays; each problem raises a BundleError naming its key."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self._arrays = arrays

    def array(self, key: str, kinds: str, shape: tuple[int | None, ...]) -> np.ndarray:
        """The array under key, of a dtype kind in kinds (numbers come back as float64) and of the
        given shape (None matches any length)."""
        if key not in self._arrays:
            raise BundleError(
                f"stacker array {key!r} is missing: re-export the stacker with converters.svm.export_svm"
            )
        value = self._arrays[key]
        if value.dtype.kind not in kinds:
            expected = _KIND_NAMES.get(kinds, f"of dtype kind {kinds!r}")
            raise BundleError(f"stacker array {key!r} has dtype {value.dtype}; expected {expected}")
        if value.ndim != len(shape) or any(
            n not in (None, m) for n, m in zip(shape, value.shape, strict=True)
        ):
            expected_shape = tuple("any" if n is None else n for n in shape)
            raise BundleError(f"stacker array {key!r} has shape {value.shape}; expected {expected_shape}")
        if kinds == "fiu":
            value = value.astype(np.float64)
            if not np.isfinite(value).all():
                raise BundleError(f"stacker array {key!r} has NaN or infinite values")
        return value

    def number(self, key: str, kinds: str):
        """The scalar under key as a Python number or bool."""
        return self.array(key, kinds, ()).item()

    def count(self, key: str, minimum: int) -> int:
        """The integer scalar under key, at least minimum."""
        value = self.number(key, "iu")
        if value < minimum:
            raise BundleError(f"stacker array {key!r} is {value}; it must be at least {minimum}")
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        """The string scalar under key, one of choices."""
        value = self.number(key, "U")
        if value not in choices:
            raise BundleError(f"stacker array {key!r} is {value!r}; expected one of {', '.join(choices)}")
        return value


def _read_npz(file, path) -> dict[str, np.ndarray]:
    """Every array of an open .npz file, read with allow_pickle=False; BundleError if it is not one."""
    try:
        archive = np.load(file, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise BundleError(f"stacker file {path} holds a single array, not a stacker .npz")
        return {key: archive[key] for key in archive.files}
    except (ValueError, EOFError, zipfile.BadZipFile) as error:
        raise BundleError(f"stacker file {path} is not a plain-array .npz: {error}") from error


def _plain_copy(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copies of the arrays; raises BundleError for one that is not numbers or unicode strings."""
    copies = {}
    for key, value in arrays.items():
        array = np.array(value)
        if array.dtype.kind not in PLAIN_KINDS:
            raise BundleError(
                f"stacker array {key!r} has dtype {array.dtype}: stacker arrays must be numbers or unicode "
                "strings (nothing that needs pickle)"
            )
        copies[str(key)] = array
    return copies
