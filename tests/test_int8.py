"""int8 merged models: quantised (converters.int8), carried in the manifest (sdk.bundle), gated at
conversion, run and refused by the onnxruntime backend, checked by verify.

An int8 bundle here is a copy of the frozen fixture whose four merged FP32 models are quantised with
``converters.int8.quantise`` on the fixture's golden inputs, as ``converters bundle --int8`` does on a
checkpoint's calibration eyes.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest

import phantom
import sdk
from converters.bundle import TOLERANCES, build_bundle
from converters.int8 import merged_outputs, quantise
from converters.precision_gate import calibration_inputs, gate
from converters.verify import verify
from sdk import cpu
from sdk.backends import make_backend
from sdk.bundle import TOLERANCE_LIMITS, Bundle
from sdk.errors import BackendUnavailable, BundleError
from sdk.labels import CLASSES
from tests.bundle_helpers import (
    SMALL_PHANTOM_SHAPE,
    copy_fixture,
    manifest_of,
    rewrite_manifest,
    small_checkpoint,
)
from training.checkpoint import CALIBRATION_FILE, read_checkpoint
from training.train import calibration_eyes

PHANTOM_SHAPE = SMALL_PHANTOM_SHAPE
GOLDEN_EYE = ("MY", 9004, "OS")  # the fixture's golden eye


def add_int8(folder: Path, maps: tuple[int, ...] = (0, 1, 2, 3), tolerance: dict | None = None) -> dict:
    """Quantise the fixture copy's merged models of ``maps`` (indices) on its golden inputs, list them
    and the int8 tolerance in the manifest, and make every hash match again (the copy is unsigned)."""
    manifest = manifest_of(folder)
    inputs = np.load(folder / "golden.npz")["inputs"]
    for m in maps:
        entry = manifest["merged"][m]
        int8_file = entry["onnx"]["fp32"].replace(".onnx", ".int8.onnx")
        quantise(folder / entry["onnx"]["fp32"], inputs[:, m], folder / int8_file)
        entry["onnx"]["int8"] = int8_file
    manifest["tolerances"]["int8"] = tolerance or TOLERANCES["int8"]
    (folder / "manifest.sig").unlink()
    files = [*manifest["files"], *(manifest["merged"][m]["onnx"]["int8"] for m in maps)]
    return rewrite_manifest(folder, manifest, files=files)


@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory) -> Path:
    folder = copy_fixture(tmp_path_factory.mktemp("int8"))
    add_int8(folder)
    return folder


@pytest.fixture
def fixture_copy(tmp_path) -> Path:
    return copy_fixture(tmp_path)


# --- the bundle and the backend -------------------------------------------------------------------


def test_an_int8_bundle_runs_its_int8_models_and_says_so(int8_folder):
    bundle = Bundle.load(int8_folder, trusted_keys=())
    assert bundle.merged_precisions() == ("fp32", "int8")
    x = bundle.golden()["inputs"][0]
    with (
        make_backend(bundle, "onnxruntime", "fp32") as fp32,
        make_backend(bundle, "onnxruntime", "int8") as int8,
    ):
        assert int8.precision == "int8" and int8.details["providers"] == ["CPUExecutionProvider"]
        got, reference = int8.run(x), fp32.run(x)
    difference = max(float(np.max(np.abs(g - r))) for g, r in zip(got, reference, strict=True))
    assert 0 < difference < TOLERANCE_LIMITS["int8"]["max_abs_probability"]  # quantised, close to FP32
    kind, seed, laterality = GOLDEN_EYE
    volume = phantom.make_eye(kind, seed=seed, laterality=laterality, shape=PHANTOM_SHAPE).volume
    diagnosis = sdk.Classifier.of_bundle(bundle, "onnxruntime", "int8").classify(volume)
    assert diagnosis.precision == "int8" and diagnosis.label in CLASSES


def test_verify_measures_int8_against_the_pytorch_reference(int8_folder):
    bundle = Bundle.load(int8_folder, trusted_keys=())
    golden = bundle.golden()
    with make_backend(bundle, "onnxruntime", "int8") as backend:
        stage1, stage2 = backend.run(golden["inputs"][0])
    verification = verify(int8_folder, "onnxruntime", "int8")
    assert verification.precision == "int8"
    rows = {row.name: row for row in verification.rows}
    expected = float(np.max(np.abs(stage1[0] - golden["stage1"][0, 0])))
    assert rows["rnfl_thickness.stage1"].max_abs == pytest.approx(expected, abs=1e-7)


def test_int8_is_refused_where_it_cannot_run(int8_folder, tmp_path, monkeypatch):
    fixture = Bundle.load(copy_fixture(tmp_path), trusted_keys=())
    with pytest.raises(BackendUnavailable, match="ships no int8 models.*--int8"):
        make_backend(fixture, "onnxruntime", "int8")
    bundle = Bundle.load(int8_folder, trusted_keys=())
    with pytest.raises(BackendUnavailable, match="alone, not CUDAExecutionProvider"):
        from sdk.backends.onnxruntime_backend import OnnxRuntimeBackend

        OnnxRuntimeBackend(bundle, "int8", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(BackendUnavailable, match="torch backend runs fp32 or fp16 or bf16, not 'int8'"):
        make_backend(bundle, "torch", "int8")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Old Xeon\nflags\t\t: fpu sse4_1 avx\n\nprocessor\t: 1\n"
    )
    monkeypatch.setattr(cpu, "CPUINFO", cpuinfo)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert cpu.cpu_model() == "Old Xeon" and "avx" in cpu.cpu_flags() and "avx2" not in cpu.cpu_flags()
    with pytest.raises(BackendUnavailable, match=r"this CPU \(Old Xeon\) lacks avx2.*--precision fp32"):
        make_backend(bundle, "onnxruntime", "int8")
    make_backend(bundle, "onnxruntime", "fp32").close()  # FP32 still runs there
    monkeypatch.setattr(platform, "machine", lambda: "riscv64")
    assert "not riscv64" in cpu.int8_unsupported()


def test_this_machines_cpu_is_read():
    assert cpu.cpu_model() not in ("", "unknown")
    if platform.machine() == "x86_64":
        assert "sse2" in cpu.cpu_flags()


# --- the manifest ---------------------------------------------------------------------------------


def test_int8_models_need_their_tolerance_and_all_four_maps(fixture_copy):
    manifest = add_int8(fixture_copy, maps=(0, 1, 2))
    with pytest.raises(BundleError, match="int8 models must come with every map's fp32 merged model"):
        Bundle.load(fixture_copy, trusted_keys=())
    manifest["merged"][3]["onnx"]["int8"] = manifest["merged"][0]["onnx"]["int8"]
    del manifest["tolerances"]["int8"]
    rewrite_manifest(fixture_copy, manifest)
    with pytest.raises(BundleError, match=r"tolerances must be given for exactly \['fp32', 'fp16', 'int8'\]"):
        Bundle.load(fixture_copy, trusted_keys=())


def test_an_int8_tolerance_without_int8_models_or_looser_than_the_schema_is_refused(fixture_copy):
    manifest = manifest_of(fixture_copy)
    manifest["tolerances"]["int8"] = TOLERANCES["int8"]
    rewrite_manifest(fixture_copy, manifest)
    with pytest.raises(BundleError, match=r"tolerances must be given for exactly \['fp32', 'fp16'\]"):
        Bundle.load(fixture_copy, trusted_keys=())
    manifest = add_int8(fixture_copy, tolerance={"max_abs_probability": 0.2, "min_top1_agreement": 0.99})
    with pytest.raises(BundleError, match="tolerances.int8 .* looser than the schema allows"):
        Bundle.load(fixture_copy, trusted_keys=())


# --- conversion -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("checkpoint") / "checkpoint")


def test_the_checkpoint_keeps_calibration_eyes_of_every_class(checkpoint_dir):
    checkpoint = read_checkpoint(checkpoint_dir)
    assert checkpoint.calibration_um.shape == (4 + 4, 2, 224, 224)  # 4 normal eyes and one per type
    x = calibration_inputs(checkpoint, "int8")
    assert x.shape == (8, 4, 3, 32, 32) and np.all(np.isfinite(x))
    labels = np.array([0] * 30 + [1] * 200 + [2] * 3 + [3] * 50 + [4] * 40)
    eyes = np.flatnonzero(np.arange(len(labels)) % 3 != 0)  # the training eyes: two in three
    chosen = calibration_eyes(labels, eyes, seed=5, n=40)
    assert len(chosen) == 40 and set(chosen) <= set(eyes) and np.all(np.diff(chosen) > 0)
    counts = np.bincount(labels[chosen], minlength=5)
    assert (
        counts[2] == np.sum(labels[eyes] == 2)
        and counts.min() >= 1
        and counts.max() - counts[counts > 2].min() <= 1
    )
    assert np.array_equal(chosen, calibration_eyes(labels, eyes, seed=5, n=40))


def test_an_int8_gate_that_fails_writes_nothing(checkpoint_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(TOLERANCES, "int8", {"max_abs_probability": 0.0, "min_top1_agreement": 1.0})
    out = tmp_path / "bundle"
    with pytest.raises(ValueError, match=r"int8 vs FP32: max \|dp\| .*bundle not written"):
        build_bundle(checkpoint_dir, out, target="cpu", int8=True, phantom_shape=PHANTOM_SHAPE)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="which target tensorrt does not ship"):
        build_bundle(checkpoint_dir, out, target="tensorrt", int8=True)


def test_int8_needs_the_checkpoints_calibration_eyes(checkpoint_dir, tmp_path):
    bare = Path(tmp_path / "checkpoint")
    import shutil

    shutil.copytree(checkpoint_dir, bare)
    (bare / CALIBRATION_FILE).unlink()
    with pytest.raises(ValueError, match=r"keeps 0 calibration eyes \(calibration.npz\).*training.train"):
        build_bundle(bare, tmp_path / "bundle", target="cpu", int8=True, phantom_shape=PHANTOM_SHAPE)
    assert not (tmp_path / "bundle").exists()


def test_the_gate_compares_every_map_stage_and_the_final_answer(int8_folder):
    bundle = Bundle.load(int8_folder, trusted_keys=())
    x = bundle.golden()["inputs"]
    fp32 = [int8_folder / spec.files["fp32"] for spec in bundle.merged]
    int8 = [int8_folder / spec.files["int8"] for spec in bundle.merged]
    reference, got = merged_outputs(fp32, x), merged_outputs(int8, x)
    same = gate("int8", reference, reference, bundle.stacker, TOLERANCES["int8"])
    assert len(same) == 4 * 2 + 1 and all(row["max_abs"] == 0.0 for row in same.values())
    opened = {"max_abs_probability": 1.0, "min_top1_agreement": 0.0}
    checks = gate("int8", got, reference, bundle.stacker, opened)
    assert (
        checks["final int8 vs FP32"]["compared"] == 1
        and checks["rnfl_thickness.stage1 int8 vs FP32"]["max_abs"] > 0
    )


def test_a_converted_int8_bundle_ships_checks_loads_and_runs(checkpoint_dir, tmp_path, monkeypatch):
    """The whole --int8 conversion, with the gate opened as far as it goes (these tiny random networks
    do not pass the real one): files, manifest entries and checks written, the bundle loads, int8 runs."""
    opened = {"max_abs_probability": 1.0, "min_top1_agreement": 0.0}
    monkeypatch.setitem(TOLERANCES, "int8", opened)
    monkeypatch.setitem(TOLERANCE_LIMITS, "int8", opened)
    out = build_bundle(
        checkpoint_dir, tmp_path / "bundle", target="cpu", int8=True, phantom_shape=PHANTOM_SHAPE
    )
    manifest = manifest_of(out)
    assert manifest["tolerances"]["int8"] == opened
    assert [entry["onnx"]["int8"] for entry in manifest["merged"]] == [
        f"models/{entry['map']}.stages.int8.onnx" for entry in manifest["merged"]
    ]
    checks = manifest["provenance"]["checks"]["int8"]
    assert (checks["calibration_eyes"], checks["gate_eyes"]) == (4, 4 + 5)  # 8 calibration eyes, 5 golden
    assert checks["final int8 vs FP32"]["compared"] == 9
    assert "every Conv but the first" in manifest["provenance"]["converter"]["int8"]
    assert not any(p.name.endswith(".prepared.onnx") for p in (out / "models").iterdir())
    bundle = Bundle.load(out, trusted_keys=())
    assert bundle.merged_precisions() == ("fp32", "int8")
    x = bundle.golden()["inputs"][0]
    with make_backend(bundle, "onnxruntime", "int8") as backend:
        stage1, stage2 = backend.run(x)
    assert stage1.shape == (4, 2) and stage2.shape == (4, 4) and np.allclose(stage1.sum(1), 1, atol=1e-5)
