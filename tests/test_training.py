"""training: metrics, splits, out-of-fold stacking, bad cohorts, determinism, smoke experiment and train."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, confusion_matrix

import phantom
from sdk.errors import CohortError
from sdk.labels import CLASSES, stacking_features
from sdk.maps import MAP_NAMES
from sdk.nets.vgg16 import VGG16
from training import experiment, pipeline, train
from training.checkpoint import read_checkpoint
from training.cohort import from_phantom
from training.data import network_inputs
from training.hierarchy import APPROACHES
from training.inputs import MapInputs
from training.maps_cache import cache_key, load_maps
from training.metrics import accuracy, balanced_accuracy, cohen_kappa, confusion
from training.presets import PRESETS
from training.splits import patient_folds, take_patients
from training.stacking import out_of_fold

SMOKE = PRESETS["smoke"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """The smoke cohort's maps, computed once for the module."""
    path = tmp_path_factory.mktemp("maps")
    load_maps(smoke_eyes(), path, n_jobs=2, progress=False)
    return path


def smoke_eyes():
    specs = phantom.cohort(SMOKE.n_normal, SMOKE.n_glaucoma, seed=SMOKE.cohort_seed, shape=SMOKE.volume_shape)
    return from_phantom(specs)


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any network training starts."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(pipeline, "fit_stage_models", refuse)


# metrics -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, 200))  # class 4 rarely predicted
    cm = confusion(y_true, y_pred)
    assert cm.tolist() == confusion_matrix(y_true, y_pred, labels=range(5)).tolist()
    assert cohen_kappa(cm) == pytest.approx(cohen_kappa_score(y_true, y_pred), abs=1e-12)
    assert accuracy(cm) == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert balanced_accuracy(cm) == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)


def test_balanced_accuracy_ignores_classes_absent_from_the_truth():
    y_true, y_pred = np.array([0, 0, 1, 1, 2]), np.array([0, 3, 1, 1, 2])
    with pytest.warns(UserWarning):
        expected = balanced_accuracy_score(y_true, y_pred)
    assert balanced_accuracy(confusion(y_true, y_pred)) == pytest.approx(expected)


# splits and out-of-fold stacking -------------------------------------------------------------------


def test_splits_keep_patients_together_and_stratify():
    eyes = smoke_eyes()
    labels = np.array([CLASSES.index(e.label) for e in eyes])
    patients = np.array([e.patient_id for e in eyes])
    test = take_patients(labels, patients, 27, np.random.default_rng(0))
    assert len(test) == 27
    assert not set(patients[test]) & set(np.delete(patients, test))
    assert set(labels[test]) == set(range(5))
    folds = patient_folds(labels, patients, 3, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(eyes)))
    for a in range(3):
        for b in range(a + 1, 3):
            assert not set(patients[folds[a]]) & set(patients[folds[b]])


def test_out_of_fold_features_come_from_models_that_never_saw_the_eye():
    """A model that memorises its training eyes scores them 1, others 0: out-of-fold, all are 0."""
    folds = [np.array([0, 3, 6]), np.array([1, 4, 7, 9]), np.array([2, 5, 8])]
    fitted_on = []

    def fit(j, positions):
        fitted_on.append(set(positions.tolist()))
        return fitted_on[-1]

    def features(seen, positions):
        return {"memory": np.array([[float(p in seen)] for p in positions])}

    oof = out_of_fold(10, folds, fit, features)
    assert oof["memory"].shape == (10, 1)
    assert np.all(oof["memory"] == 0.0)
    assert fitted_on == [set(range(10)) - set(f.tolist()) for f in folds]


def test_cache_key_depends_on_the_volume_only():
    eye = smoke_eyes()[0]
    regraded = dataclasses.replace(eye, label="FI", eye_id="other", patient_id="other")
    assert cache_key(regraded) == cache_key(eye)
    other = dataclasses.replace(eye, source=dataclasses.replace(eye.source, seed=eye.source.seed + 1))
    assert cache_key(other) != cache_key(eye)


# bad input: CohortError before any training ---------------------------------------------------------


def write_csv(path, rows):
    path.write_text("path,label,laterality\n" + "".join(f"{p},{lab},{lat}\n" for p, lab, lat in rows))
    return path


def test_csv_naming_a_missing_file(tmp_path, no_training):
    (tmp_path / "a.npz").write_bytes(b"")
    csv = write_csv(tmp_path / "cohort.csv", [("a.npz", "normal", "OD"), ("missing.npz", "FI", "OS")])
    with pytest.raises(CohortError, match=r"line 3: volume file .*missing\.npz does not exist"):
        experiment.main(["--preset", "smoke", "--csv", str(csv), "--out", str(tmp_path / "out")])


def test_csv_with_an_unknown_label(tmp_path, no_training):
    for name in ("a.npz", "b.npz"):
        (tmp_path / name).write_bytes(b"")
    csv = write_csv(tmp_path / "cohort.csv", [("a.npz", "normal", "OD"), ("b.npz", "glaucoma", "OD")])
    with pytest.raises(CohortError, match=r"line 3: label 'glaucoma' is not one of normal, FI, GE, MY, SS"):
        train.main(["--preset", "smoke", "--csv", str(csv), "--out", str(tmp_path / "ckpt")])


def test_cohort_without_a_class(tmp_path, no_training):
    rows = [(f"{i}.npz", label, "OD") for i, label in enumerate(["normal", "normal", "FI", "GE", "MY"] * 3)]
    for name, _, _ in rows:
        (tmp_path / name).write_bytes(b"")
    csv = write_csv(tmp_path / "cohort.csv", rows)
    with pytest.raises(CohortError, match="no eye of class SS in the cohort"):
        experiment.main(["--preset", "smoke", "--csv", str(csv), "--out", str(tmp_path / "out")])


def test_class_absent_from_a_training_set(cache_dir, tmp_path, no_training):
    """One SS patient: some split's training set (or one of its folds) has no SS eye."""
    eyes = smoke_eyes()
    ss_patients = sorted({e.patient_id for e in eyes if e.label == "SS"})
    eyes = [e for e in eyes if e.label != "SS" or e.patient_id == ss_patients[0]]
    with pytest.raises(CohortError, match="no eye of class SS in the (full|reduced) training set"):
        experiment.run_experiment(
            SMOKE, eyes, {"source": "test"}, cache_dir=cache_dir, seed=0, progress=False
        )


def test_paper_preset_needs_imagenet_weights(capsys):
    with pytest.raises(SystemExit) as exit_info:
        experiment.main(["--preset", "paper"])
    assert exit_info.value.code == 2
    assert "--imagenet-weights PATH" in capsys.readouterr().err


# tiny real runs ------------------------------------------------------------------------------------


def tiny_run(cache_dir):
    eyes = smoke_eyes()
    maps = load_maps(eyes, cache_dir, progress=False)
    labels = np.array([CLASSES.index(e.label) for e in eyes])
    patients = np.array([e.patient_id for e in eyes])
    train_eyes = take_patients(labels, patients, 45, np.random.default_rng(0))
    folds = pipeline.plan_folds(labels, patients, train_eyes, 3, seed=1, where="tiny")
    inputs = MapInputs(maps.thickness_um, labels, SMOKE.network.input_hw, None)
    return pipeline.train_stacked(
        inputs, labels, patients, train_eyes, folds, APPROACHES, SMOKE.network, seed=5
    ), maps


def test_same_seed_same_numbers_and_stacking_is_out_of_fold(cache_dir):
    first, maps = tiny_run(cache_dir)
    second, _ = tiny_run(cache_dir)
    for approach in APPROACHES:
        np.testing.assert_array_equal(first.oof_features[approach], second.oof_features[approach])
        assert first.oof_features[approach].shape == (len(first.eyes), 20)
        assert np.isfinite(first.oof_features[approach]).all()
    for key, model in first.final.networks.items():
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, second.final.networks[key].state_dict()[name]), (key, name)
    test = np.setdiff1d(np.arange(len(maps.gradable)), first.eyes)[:10]
    features = first.final.features(test, APPROACHES)
    for approach in APPROACHES:
        np.testing.assert_array_equal(
            first.stackers[approach].predict_proba(features[approach]),
            second.stackers[approach].predict_proba(features[approach]),
        )
    # every training eye's features came from fold networks (and a normative model) that never saw it
    for held, trained_on in zip(first.folds, first.fold_trained_on, strict=True):
        assert not set(first.eyes[held].tolist()) & set(trained_on.tolist())
        assert len(held) + len(trained_on) == len(first.eyes)


def test_smoke_experiment(cache_dir, tmp_path):
    out = tmp_path / "experiment"
    results = experiment.main(["--preset", "smoke", "--cache-dir", str(cache_dir), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == [
        "predictions.csv.gz",
        "results.json",
        "results.md",
        "results.png",
    ]
    saved = json.loads((out / "results.json").read_text())
    n_approaches = len(saved["approaches"])  # the three, the network controls, the balanced stacker, oracle
    assert set(APPROACHES) <= set(saved["approaches"]) and n_approaches == 7
    assert len(saved["runs"]) == n_approaches * 2 * SMOKE.n_splits * SMOKE.n_seeds
    assert saved["settings"]["network"]["width"] == SMOKE.network.width
    assert saved["settings"]["network"]["input_hw"] == list(SMOKE.network.input_hw)
    assert saved["starting_weights"].startswith("random")
    assert saved["cohort"]["ungradable"]["count"] == int((~load_maps(smoke_eyes(), cache_dir).gradable).sum())
    for approach in APPROACHES:
        for name in ("full", "reduced"):
            entry = results["summary"][approach][name]
            assert -1 <= entry["kappa"]["mean"] <= 1 and entry["kappa"]["sd"] >= 0
            assert np.sum(entry["confusion"]) == SMOKE.n_splits * saved["runs"][0]["n_test"]
    text = (out / "results.md").read_text()
    assert "Starting weights: random" in text and "input 32 x 32 px" in text and "Wall time" in text


def test_smoke_train_writes_a_checkpoint_whose_stacker_works(cache_dir, tmp_path):
    out = tmp_path / "ckpt"
    train.main(
        ["--preset", "smoke", "--cache-dir", str(cache_dir), "--out", str(out), "--shared-trunk-blocks", "2"]
    )
    ckpt = read_checkpoint(out)
    assert ckpt.metadata["network"]["shared_trunk_blocks"] == 2
    assert ckpt.metadata["stacking_features"] == list(stacking_features())
    provenance = ckpt.metadata["provenance"]
    assert {"cohort", "seeds", "versions", "metrics", "starting_weights"} <= set(provenance)
    for map_name in MAP_NAMES:  # blocks 1-2 (features.0 ... features.7) shared with stage 1
        stage1, stage2 = ckpt.networks[(map_name, 1)], ckpt.networks[(map_name, 2)]
        np.testing.assert_array_equal(stage1["features.7.weight"], stage2["features.7.weight"])
        assert not np.array_equal(stage1["features.28.weight"], stage2["features.28.weight"])

    # real stage outputs on a few eyes -> 20 features in stacking_features() order -> 5 probabilities
    maps = load_maps(smoke_eyes()[:6], cache_dir, progress=False)
    x = network_inputs(maps.thickness_um, ckpt.normative, ckpt.input_hw)
    columns = []
    for m, map_name in enumerate(MAP_NAMES):
        probs = {}
        for stage, n_classes in ((1, 2), (2, 4)):
            model = VGG16(n_classes, width=ckpt.width)
            model.load_state_dict(
                {k: torch.from_numpy(v) for k, v in ckpt.networks[(map_name, stage)].items()}
            )
            with torch.inference_mode():
                probs[stage] = torch.softmax(model.eval()(torch.from_numpy(x[:, m])), dim=1).double().numpy()
        columns += [probs[1][:, :1], probs[2]]
    proba = ckpt.stacker.predict_proba(np.hstack(columns))
    assert proba.shape == (6, 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert sorted(ckpt.stacker.classes_.tolist()) == sorted(CLASSES)


def test_train_refuses_a_non_empty_output_folder_before_training(cache_dir, tmp_path, no_training):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "old.txt").write_text("x")
    with pytest.raises(OSError, match="not empty"):
        train.main(["--preset", "smoke", "--cache-dir", str(cache_dir), "--out", str(tmp_path / "ckpt")])
