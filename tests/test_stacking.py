"""sdk.stacking.SVMStacker against scikit-learn 1.9, via converters.svm.export_svm."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from converters.svm import export_svm
from sdk.errors import BundleError, FileError
from sdk.stacking import SVMStacker
from training.stacking import ConfidenceSVC, fit_stacker

TOL = 1e-10
N_FEATURES = 20  # the stacker's real input: 4 maps x (P(normal) + 4 type probabilities)
LABELS = np.array(["normal", "FI", "GE", "MY", "SS"])
KERNELS = ["linear", "rbf", "poly", "sigmoid"]
PATHS = {
    "svc": lambda svc: svc,
    "svc_probability": lambda svc: svc.set_params(probability=True, random_state=0),
    "sigmoid_single": lambda svc: CalibratedClassifierCV(svc, ensemble=False),
    "sigmoid_ensemble": lambda svc: CalibratedClassifierCV(svc, ensemble=True),
    "isotonic_ensemble": lambda svc: CalibratedClassifierCV(svc, method="isotonic", ensemble=True),
}


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """The matrices here are tiny: extra BLAS threads only slow the suite down on a busy machine."""
    with threadpool_limits(limits=1):
        yield


@functools.cache
def make_data(n_classes: int, labels: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes: X_train (40 n_classes, 20), y_train and X_test (90, 20), 10 far out."""
    rng = np.random.default_rng(100 + n_classes)
    centers = rng.normal(scale=0.35, size=(n_classes, N_FEATURES))
    names = np.array(labels) if labels else LABELS[:n_classes]
    y_index = np.repeat(np.arange(n_classes), 40)
    X_train = centers[y_index] + rng.normal(size=(len(y_index), N_FEATURES))
    X_near = centers[rng.integers(0, n_classes, 80)] + rng.normal(size=(80, N_FEATURES))
    X_far = 4.0 * rng.normal(size=(10, N_FEATURES))
    return X_train, names[y_index], np.vstack([X_near, X_far])


def make_svc(kernel: str, **params) -> SVC:
    return SVC(kernel=kernel, coef0=1.0 if kernel == "poly" else 0.0, **params)


def fit(estimator, X, y):
    """Fit, expecting scikit-learn 1.9's deprecation warning exactly when probability=True."""
    if isinstance(estimator, SVC) and estimator.probability is True:
        with pytest.warns(FutureWarning, match="probability"):
            return estimator.fit(X, y)
    return estimator.fit(X, y)


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def assert_matches(estimator, stacker: SVMStacker, X: np.ndarray) -> None:
    np.testing.assert_array_equal(stacker.classes_, estimator.classes_)
    np.testing.assert_array_equal(stacker.predict(X), estimator.predict(X))
    if hasattr(estimator, "decision_function"):
        assert max_diff(stacker.decision_function(X), estimator.decision_function(X)) <= TOL
    if hasattr(estimator, "predict_proba"):
        assert max_diff(stacker.predict_proba(X), estimator.predict_proba(X)) <= TOL


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n_classes", [2, 3, 4, 5])
@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_sklearn(kernel, n_classes, path):
    X, y, X_test = make_data(n_classes)
    estimator = fit(PATHS[path](make_svc(kernel)), X, y)
    assert hasattr(estimator, "predict_proba") == (path != "svc")
    assert_matches(estimator, SVMStacker(export_svm(estimator)), X_test)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("kernel", KERNELS)
def test_the_confidence_svc_matches_sklearn(kernel, n_classes):
    """training.stacking's ConfidenceSVC, alone and calibrated, exported and run in numpy."""
    X, y, X_test = make_data(n_classes)
    svc = ConfidenceSVC(kernel=kernel, coef0=1.0 if kernel == "poly" else 0.0, decision_function_shape="ovo")
    for estimator in (svc, CalibratedClassifierCV(svc)):
        fitted = fit(estimator, X, y)
        assert_matches(fitted, SVMStacker(export_svm(fitted)), X_test)


def test_the_products_stacker_is_continuous_where_votes_step():
    """Along straight lines between samples, the product's stacker (fit_stacker: sigmoids on the summed
    one-vs-one values) changes its probabilities by little per small step; the same SVM and calibration
    on scikit-learn's one-vs-rest scores, which count votes, steps wherever a pairwise SVM changes sign."""
    X, y, X_test = make_data(5)
    folds = [np.arange(len(y))[k::3] for k in range(3)]
    cv = [(np.setdiff1d(np.arange(len(y)), held), held) for held in folds]
    votes = CalibratedClassifierCV(SVC(kernel="rbf", gamma="scale"), method="sigmoid", cv=cv).fit(X, y)
    steps = np.linspace(0, 1, 501)  # 500 steps between two samples
    largest = {}
    for name, estimator in (("continuous", fit_stacker(X, y, folds)), ("votes", votes)):
        stacker = SVMStacker(export_svm(estimator))
        largest[name] = max(
            float(
                np.abs(
                    np.diff(stacker.predict_proba(np.outer(1 - steps, a) + np.outer(steps, b)), axis=0)
                ).max()
            )
            for a, b in zip(X_test[:20], X_test[20:40], strict=True)
        )
    assert largest["continuous"] < 0.01 and largest["votes"] > 0.05, largest


def test_rbf_kernel_over_several_blocks_of_samples():
    """More samples than ROWS_PER_BLOCK: every block's kernel rows are the right samples' rows."""
    from sdk.stacking import ROWS_PER_BLOCK

    X, y, X_test = make_data(5)
    many = np.vstack([X_test] * (2 * ROWS_PER_BLOCK // len(X_test) + 1))[::-1]
    assert len(many) > 2 * ROWS_PER_BLOCK
    estimator = fit(make_svc("rbf"), X, y)
    assert_matches(estimator, SVMStacker(export_svm(estimator)), many)


@pytest.mark.parametrize("n_classes", [3, 4, 5])
def test_ovo_shape(n_classes):
    X, y, X_test = make_data(n_classes)
    svc = make_svc("rbf", decision_function_shape="ovo").fit(X, y)
    stacker = SVMStacker(export_svm(svc))
    assert stacker.decision_function(X_test).shape == (len(X_test), n_classes * (n_classes - 1) // 2)
    assert_matches(svc, stacker, X_test)
    # CalibratedClassifierCV pairs its per-class calibrators with the first n_classes ovo columns.
    calibrated = CalibratedClassifierCV(make_svc("rbf", decision_function_shape="ovo")).fit(X, y)
    assert_matches(calibrated, SVMStacker(export_svm(calibrated)), X_test)


@pytest.mark.parametrize("n_classes", [3, 4, 5])
def test_break_ties(n_classes):
    X, y, X_test = make_data(n_classes)
    svc = make_svc("rbf", break_ties=True).fit(X, y)
    assert_matches(svc, SVMStacker(export_svm(svc)), X_test)
    if n_classes == 5:  # the data has tied votes, so break_ties changes some predictions
        assert np.any(svc.predict(X_test) != make_svc("rbf").fit(X, y).predict(X_test))


@pytest.mark.parametrize("gamma", ["auto", 0.03])
def test_gamma_settings_and_isotonic_single(gamma):
    X, y, X_test = make_data(4)
    for estimator in (
        make_svc("rbf", gamma=gamma),
        CalibratedClassifierCV(make_svc("rbf", gamma=gamma), method="isotonic", ensemble=False),
    ):
        fit(estimator, X, y)
        assert_matches(estimator, SVMStacker(export_svm(estimator)), X_test)


def test_ensemble_members_keep_their_own_gamma():
    X, y, X_test = make_data(3)
    calibrated = CalibratedClassifierCV(make_svc("rbf")).fit(X, y)
    arrays = export_svm(calibrated)
    gammas = {float(arrays[f"svm{m}.gamma"]) for m in range(int(arrays["n_svms"]))}
    assert int(arrays["n_svms"]) == 5 and len(gammas) > 1
    assert_matches(calibrated, SVMStacker(arrays), X_test)


def test_integer_labels_and_frozen_svc():
    X, y, X_test = make_data(3, labels=(3, 7, 11))
    svc = make_svc("rbf").fit(X, y)
    calibrated = CalibratedClassifierCV(FrozenEstimator(svc)).fit(X, y)
    stacker = SVMStacker(export_svm(calibrated))
    assert stacker.classes_.dtype.kind == "i"
    assert_matches(calibrated, stacker, X_test)


def test_save_load_round_trip(tmp_path):
    X, y, X_test = make_data(5)
    calibrated = CalibratedClassifierCV(make_svc("rbf"), method="isotonic").fit(X, y)
    stacker = SVMStacker(export_svm(calibrated))
    path = tmp_path / "stacker.npz"
    stacker.save(path)
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == set(export_svm(calibrated))
        assert all(archive[key].dtype.kind in "biufU" for key in archive.files)
    loaded = SVMStacker.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), stacker.predict_proba(X_test))
    assert_matches(calibrated, loaded, X_test)
    assert os.listdir(tmp_path) == ["stacker.npz"]


def test_save_refuses_to_overwrite(tmp_path):
    X, y, _ = make_data(2)
    stacker = SVMStacker(export_svm(make_svc("linear").fit(X, y)))
    path = tmp_path / "stacker.npz"
    path.write_bytes(b"keep me")
    with pytest.raises(FileError, match="overwrite=True"):
        stacker.save(path)
    assert path.read_bytes() == b"keep me"
    stacker.save(path, overwrite=True)
    assert SVMStacker.load(path).n_features_in_ == N_FEATURES
    assert os.listdir(tmp_path) == ["stacker.npz"]


def test_load_rejects_missing_pickled_and_foreign_files(tmp_path):
    with pytest.raises(FileError, match="does not exist"):
        SVMStacker.load(tmp_path / "absent.npz")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, classes=np.array(["a", 1], dtype=object))
    with pytest.raises(BundleError, match="pickle"):
        SVMStacker.load(pickled)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(BundleError, match="single array"):
        SVMStacker.load(single)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BundleError):
        SVMStacker.load(garbage)


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    X, y, _ = make_data(3)
    return export_svm(fit(make_svc("rbf", probability=True, random_state=0), X, y))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("svm0.dual_coef"), "'svm0.dual_coef' is missing"),
        (lambda a: a.update(format_version=np.array(2)), "'format_version' is 2"),
        (lambda a: a.update({"svm0.intercept": np.zeros(2)}), r"'svm0.intercept' has shape \(2,\)"),
        (lambda a: a.update({"svm0.kernel": np.array("laplacian")}), "'svm0.kernel' is 'laplacian'"),
        (lambda a: a.update({"svm0.n_support": np.array([1, 1, 1])}), r"n_support is \[1, 1, 1\]"),
        (lambda a: a.update({"svm0.gamma": np.array(np.nan)}), "'svm0.gamma' has NaN"),
        (lambda a: a.update({"svm0.prob_a": np.zeros(2)}), "prob_a and svm0.prob_b have 2 and 3 values"),
        (lambda a: a.update(classes=np.array(["a", 1], dtype=object)), "'classes' has dtype object"),
        (lambda a: a.update(estimator=np.array(7)), "'estimator' has dtype"),
    ],
)
def test_malformed_arrays_raise_bundle_error(arrays, change, message):
    broken = dict(arrays)
    change(broken)
    with pytest.raises(BundleError, match=message):
        SVMStacker(broken)


def test_bad_samples_raise_value_error(arrays):
    stacker = SVMStacker(arrays)
    with pytest.raises(ValueError, match="has 19 features per sample; this stacker takes 20"):
        stacker.predict(np.zeros((2, 19)))
    with pytest.raises(ValueError, match="reshape"):
        stacker.predict_proba(np.zeros(N_FEATURES))
    X = np.zeros((3, N_FEATURES))
    X[1, 4] = np.nan
    X[2, 0] = np.inf
    with pytest.raises(ValueError, match="2 NaN or infinite values"):
        stacker.decision_function(X)


def test_unavailable_methods_raise_attribute_error():
    X, y, _ = make_data(3)
    with pytest.raises(AttributeError, match="probability=True"):
        SVMStacker(export_svm(make_svc("rbf").fit(X, y))).predict_proba(X)
    calibrated = CalibratedClassifierCV(make_svc("rbf"), ensemble=False).fit(X, y)
    with pytest.raises(AttributeError, match="no decision_function"):
        SVMStacker(export_svm(calibrated)).decision_function(X)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda X, y: SVC(), "not fitted"),
        (lambda X, y: CalibratedClassifierCV(SVC()), "not fitted"),
        (lambda X, y: SVC(kernel="precomputed").fit(X @ X.T, y), "kernel 'precomputed'"),
        (lambda X, y: SVC(kernel=lambda a, b: a @ b.T).fit(X, y), "cannot be exported"),
        (lambda X, y: LogisticRegression().fit(X, y), "cannot export a LogisticRegression"),
        (lambda X, y: CalibratedClassifierCV(LogisticRegression()).fit(X, y), "LogisticRegression"),
        (lambda X, y: CalibratedClassifierCV(SVC(), method="temperature").fit(X, y), "'temperature'"),
        (lambda X, y: SVC(break_ties=True, decision_function_shape="ovo").fit(X, y), "break_ties"),
        (lambda X, y: ConfidenceSVC().fit(X, y), "needs decision_function_shape='ovo'"),
    ],
)
def test_export_rejects_unsupported(make, message):
    X, y, _ = make_data(3)
    with pytest.raises(ValueError, match=message):
        export_svm(make(X, y))


def test_sdk_stacking_imports_no_sklearn():
    code = "import sys, sdk.stacking; assert not [m for m in sys.modules if m.startswith('sklearn')]"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
