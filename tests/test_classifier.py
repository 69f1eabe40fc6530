"""sdk.Classifier end to end on a bundle made in the test, the sdk.classify CLI, and the report."""

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import phantom
import sdk
from converters.__main__ import main as converters_main
from sdk.classify import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNGRADABLE
from sdk.classify import main as classify_main
from sdk.labels import CLASSES, STAGE1_CLASSES, STAGE2_CLASSES
from sdk.maps import MAP_NAMES

REPO = Path(__file__).resolve().parents[1]
SHAPE = (48, 496, 256)  # wide-field phantoms: B-scans x depth x A-scans over 9 x 12 mm
BUNDLE_ARGS = ["--width", "0.0625", "--input-px", "64", "--seed", "2", "--phantom-shape", "32", "248", "128"]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    checkpoint = tmp_path_factory.mktemp("checkpoint")
    assert converters_main(["random-checkpoint", str(checkpoint), *BUNDLE_ARGS]) == 0
    out = tmp_path_factory.mktemp("bundles") / "bundle"
    assert converters_main(["bundle", str(checkpoint), str(out), "--phantom-shape", "32", "248", "128"]) == 0
    return out


@pytest.fixture(scope="module")
def classifier(bundle_dir):
    with sdk.Classifier.load(bundle_dir, backend="onnxruntime") as clf:
        yield clf


@pytest.fixture(scope="module")
def eyes():
    return {kind: phantom.make_eye(kind, seed=20 + i, shape=SHAPE) for i, kind in enumerate(phantom.KINDS)}


@pytest.fixture(scope="module")
def scan_files(eyes, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    files = {}
    for kind, eye in eyes.items():
        files[kind] = folder / f"{kind}.dcm"
        sdk.io.write_dicom(eye.volume, files[kind])
    weak = phantom.make_eye("normal", seed=3, shape=SHAPE, signal_db=12).volume
    files["weak"] = folder / "weak.npz"
    sdk.io.write_npz(weak, files["weak"])
    return files


def test_every_class_of_eye_is_classified_end_to_end(classifier, eyes, bundle_dir):
    for kind, eye in eyes.items():
        dx = classifier.classify(eye.volume)
        assert dx.gradable, (kind, dx.reasons)
        assert dx.label in CLASSES and dx.label == max(dx.probabilities, key=dx.probabilities.get)
        assert list(dx.probabilities) == list(CLASSES)
        assert sum(dx.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert set(dx.per_map) == set(MAP_NAMES)
        for confidences in dx.per_map.values():
            assert list(confidences["stage1"]) == list(STAGE1_CLASSES)
            assert list(confidences["stage2"]) == list(STAGE2_CLASSES)
            assert sum(confidences["stage2"].values()) == pytest.approx(1.0, abs=1e-5)
        assert dx.backend == "onnxruntime" and dx.precision == "fp32" and dx.device == "cpu"
        assert dx.bundle_id == json.loads((bundle_dir / "manifest.json").read_text())["bundle_id"]
        assert {"sdk", "numpy", "onnxruntime"} <= set(dx.versions)
        assert {"front_end", "networks", "stacking", "total"} <= set(dx.timings_ms)
        json.dumps(dx.to_dict())


def test_the_answer_is_the_bundles_stacker_on_the_networks_outputs(classifier, eyes):
    """Recompute the answer by hand from the maps: network input -> backend -> stacker."""
    dx = classifier.classify(eyes["FI"].volume)
    x = sdk.maps.to_network_input(dx.maps.stack(), classifier.bundle.input_hw)
    stage1, stage2 = classifier.backend.run(x)
    features = classifier.bundle.stacking_features(stage1, stage2)[None]
    expected = classifier.bundle.stacker.predict_proba(features)[0]
    order = [list(map(str, classifier.bundle.stacker.classes_)).index(c) for c in CLASSES]
    np.testing.assert_allclose([dx.probabilities[c] for c in CLASSES], expected[order], atol=1e-12)


def test_array_input_gives_the_same_answer(classifier, eyes):
    vol = eyes["GE"].volume
    a = classifier.classify(vol)
    b = classifier.classify(np.asarray(vol.data), spacing_mm=vol.spacing_mm, laterality=vol.laterality)
    assert a.probabilities == b.probabilities


def test_ungradable_scan_gets_no_class(classifier):
    dx = classifier.classify(phantom.make_eye("MY", seed=4, shape=SHAPE, signal_db=12).volume)
    assert not dx.gradable and dx.label is None and dx.probabilities is None and dx.per_map is None
    assert any("signal too weak" in r for r in dx.reasons)
    assert "UNGRADABLE" in dx.summary() and dx.to_dict()["label"] is None


def test_two_cube_exam(classifier):
    disc = phantom.make_eye("SS", seed=8, protocol="disc", shape=SHAPE).volume
    macula = phantom.make_eye("SS", seed=8, protocol="macula", shape=SHAPE).volume
    dx = classifier.classify_exam(disc=disc, macula=macula)
    assert dx.gradable, dx.reasons
    assert dx.protocol == "disc+macula" and dx.label in CLASSES


def test_torch_and_onnxruntime_agree_on_the_same_bundle(bundle_dir, classifier, eyes):
    with sdk.Classifier.load(bundle_dir, backend="torch") as reference:
        for eye in list(eyes.values())[:3]:
            a, b = classifier.classify(eye.volume), reference.classify(eye.volume)
            diff = max(abs(a.probabilities[c] - b.probabilities[c]) for c in CLASSES)
            assert diff <= 1e-4
            for name in MAP_NAMES:
                for stage in ("stage1", "stage2"):
                    x, y = a.per_map[name][stage], b.per_map[name][stage]
                    assert max(abs(x[k] - y[k]) for k in x) <= 1e-4


def test_one_classifier_is_safe_from_several_threads(classifier, eyes):
    volumes = list(eyes.values())[:4]
    serial = [classifier.classify(v.volume).probabilities for v in volumes]
    results = [None] * len(volumes)

    def work(i):
        results[i] = classifier.classify(volumes[i].volume).probabilities

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(volumes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == serial


def test_bad_input_through_the_api(classifier, eyes, tmp_path):
    with pytest.raises(sdk.InvalidVolume, match="NaN"):
        classifier.classify(
            np.full(SHAPE, np.nan, np.float32), spacing_mm=(0.19, 0.0039, 0.047), laterality="OD"
        )
    with pytest.raises(sdk.InvalidVolume, match="laterality 'XY'"):
        classifier.classify(
            np.asarray(eyes["FI"].volume.data), spacing_mm=(0.19, 0.0039, 0.047), laterality="XY"
        )
    with pytest.raises(sdk.BundleError):
        sdk.Classifier.load(tmp_path / "no-bundle")


# ---------------------------------------------------------------------------------------------- CLI


def run_cli(args, capsys):
    code = classify_main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_cli_line_json_and_report(bundle_dir, scan_files, capsys, tmp_path):
    code, out, _ = run_cli([str(scan_files["FI"]), "--bundle", str(bundle_dir)], capsys)
    assert code == EXIT_OK and "OD:" in out and "p=" in out
    report = tmp_path / "fi.png"
    code, out, _ = run_cli(
        [str(scan_files["FI"]), "--bundle", str(bundle_dir), "--json", "--report", str(report)], capsys
    )
    result = json.loads(out)
    assert code == EXIT_OK and result["label"] in CLASSES and result["exit_code"] == EXIT_OK
    assert report.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run_cli(
        [str(scan_files["FI"]), "--bundle", str(bundle_dir), "--report", str(report)], capsys
    )
    assert code == EXIT_BAD_INPUT and "exists" in err  # never overwrites without --overwrite


def test_cli_many_volumes_progress_and_most_severe_code(bundle_dir, scan_files, capsys, tmp_path):
    files = [str(scan_files["normal"]), str(scan_files["weak"]), str(scan_files["SS"])]
    code, out, err = run_cli(
        [*files, "--bundle", str(bundle_dir), "--json", "--report", str(tmp_path)], capsys
    )
    results = json.loads(out)
    assert code == EXIT_UNGRADABLE
    assert [r["exit_code"] for r in results] == [EXIT_OK, EXIT_UNGRADABLE, EXIT_OK]
    assert "[2/3]" in err
    assert len(list(tmp_path.glob("*.report.png"))) == 3


@pytest.mark.parametrize(
    "case", ["missing file", "not OCT", "NaN voxels", "wrong laterality", "newer bundle"]
)
def test_cli_bad_input_exits_2_with_a_message(case, bundle_dir, scan_files, tmp_path, capsys):
    bundle, volume, extra = bundle_dir, tmp_path / "scan.npz", []
    if case == "missing file":
        volume = tmp_path / "nowhere.dcm"
    elif case == "not OCT":
        volume = tmp_path / "notes.dcm"
        volume.write_text("this is not a DICOM file")
    elif case == "NaN voxels":
        np.savez(
            volume,
            data=np.full(SHAPE, np.nan, np.float32),
            spacing_mm=np.array([0.19, 0.0039, 0.047]),
            laterality=np.array("OD"),
            protocol=np.array("wide"),
        )
    elif case == "wrong laterality":
        volume = tmp_path / "scan.npy"
        np.save(volume, np.zeros(SHAPE, np.uint8))
        extra = ["--spacing", "0.19", "0.0039", "0.047", "--laterality", "middle"]
    else:
        bundle = tmp_path / "bundle"
        shutil.copytree(bundle_dir, bundle)
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["schema_version"] = manifest["schema_version"] + 1
        (bundle / "manifest.json").write_text(json.dumps(manifest))
        volume = scan_files["FI"]
    code, _, err = run_cli([str(volume), "--bundle", str(bundle), *extra], capsys)
    assert code == EXIT_BAD_INPUT
    assert "error:" in err and len(err.strip().splitlines()) <= 2


def test_cli_as_a_real_process(bundle_dir, scan_files):
    """The module runs as a command: exit code 3 for an ungradable scan, nothing on stderr but the reason."""
    proc = subprocess.run(
        [sys.executable, "-m", "sdk.classify", str(scan_files["weak"]), "--bundle", str(bundle_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == EXIT_UNGRADABLE
    assert "UNGRADABLE" in proc.stdout and "Traceback" not in proc.stderr


def test_a_callers_bundle_outlives_the_classifiers_built_on_it(bundle_dir, eyes):
    """A Classifier closes the bundle it loaded itself, never a Bundle its caller passed in."""
    from sdk.backends import make_backend
    from sdk.bundle import Bundle
    from sdk.errors import BundleError

    bundle = Bundle.load(bundle_dir)
    try:
        answers = []
        for _ in range(2):  # a second backend reads the models again from the same Bundle
            with sdk.Classifier(bundle, make_backend(bundle, "onnxruntime")) as classifier:
                answers.append(classifier.classify(eyes["FI"].volume).probabilities)
        assert answers[0] == answers[1]
    finally:
        bundle.close()
    with sdk.Classifier.load(bundle_dir, backend="onnxruntime") as loaded:
        pass
    with pytest.raises(BundleError):
        loaded.bundle.read("manifest.json")


def test_cli_first_volume_made_ready_while_loading_matches_the_api(
    classifier, bundle_dir, scan_files, capsys
):
    """The CLI reads its first volume and makes its maps in a second thread while the networks load:
    the same answer as Classifier.classify, for it and for the volumes after it."""
    kinds = ["FI", "SS"]
    code, out, _ = run_cli(
        [*(str(scan_files[k]) for k in kinds), "--bundle", str(bundle_dir), "--json"], capsys
    )
    assert code == EXIT_OK
    for result, kind in zip(json.loads(out), kinds, strict=True):
        expected = classifier.classify(sdk.read_volume(scan_files[kind])).to_dict()
        assert result["probabilities"] == expected["probabilities"] and result["label"] == expected["label"]
        assert 0 < result["timings_ms"]["front_end"] < result["timings_ms"]["total"]


def test_the_warm_up_passes_are_the_backends_own(bundle_dir):
    """Classifier runs as many passes on zeros as its backend asks for: none on ONNX Runtime's CPU
    (its first pass measures as fast as the next, benchmarks/test_load_bench.py), two when asked."""
    from sdk.backends.onnxruntime_backend import OnnxRuntimeBackend
    from sdk.bundle import Bundle

    class CountingBackend(OnnxRuntimeBackend):
        warm_up_runs = 2
        calls = 0

        def run(self, inputs):
            type(self).calls += 1
            assert not inputs.any()
            return super().run(inputs)

    bundle = Bundle.load(bundle_dir)
    try:
        plain = OnnxRuntimeBackend(bundle)
        assert plain.device == "cpu" and plain.warm_up_runs == 0
        plain.close()
        sdk.Classifier(bundle, CountingBackend(bundle)).close()
    finally:
        bundle.close()
    assert CountingBackend.calls == 2


def test_a_classifier_that_cannot_load_its_networks_closes_the_bundle(bundle_dir):
    from sdk.bundle import Bundle
    from sdk.errors import BackendUnavailable, BundleError

    bundle = Bundle.load(bundle_dir)
    with pytest.raises(BackendUnavailable):  # no TensorRT on this machine
        sdk.Classifier.of_bundle(bundle, "tensorrt")
    with pytest.raises(BundleError):
        bundle.read("manifest.json")


def test_scipy_ndimage_is_imported_by_load_in_a_thread_not_by_importing_the_sdk(bundle_dir):
    """Importing the SDK and reading a bundle leave scipy.ndimage (0.3-0.5 s to import) alone;
    Classifier.load starts its import in a thread, once, and the front end works with it."""
    code = (
        "import sys, threading\nimport sdk, sdk.maps\nfrom sdk.bundle import Bundle\n"
        "Bundle.load(sys.argv[1]).close()\n"
        "assert 'scipy.ndimage' not in sys.modules, 'imported by the SDK'\n"
        "started = []\nstart = threading.Thread.start\n"
        "threading.Thread.start = lambda self: (started.append(self.name), start(self))[1]\n"
        "for _ in range(2):\n    sdk.Classifier.load(sys.argv[1], backend='onnxruntime').close()\n"
        "assert started.count('octc-import') == 1, started\n"
        "import phantom\n"
        "assert sdk.maps.extract(phantom.make_eye('FI', seed=1, shape=(16, 248, 128)).volume)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(bundle_dir)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
