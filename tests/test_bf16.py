"""bf16: declared by the manifest where conversion's gate passed (converters.bf16), run by the torch
backend on the CPU from the FP32 weights (per-stage or merged), refused where it cannot run, checked by
verify.

A CPU without bfloat16 instructions runs bf16 emulated (slowly, same rounding): the tests that run it
make sdk.cpu see avx512_bf16 so that they run on every CI machine; the refusal tests show the check.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import phantom
import sdk
from converters import bf16
from converters.bundle import TOLERANCES, build_bundle
from converters.verify import verify
from sdk import cpu
from sdk.backends import make_backend, stage_indices
from sdk.backends.torch_backend import (
    TorchBackend,
    bf16_network,
    fp32_networks,
    probabilities,
    state_dicts_from_merged,
)
from sdk.bundle import TOLERANCE_LIMITS, Bundle
from sdk.errors import BackendUnavailable, BundleError
from sdk.maps import MAP_NAMES
from tests.bundle_helpers import (
    SMALL_PHANTOM_SHAPE,
    copy_fixture,
    manifest_of,
    rewrite_manifest,
    small_checkpoint,
)
from training.checkpoint import CALIBRATION_FILE

PHANTOM_SHAPE = SMALL_PHANTOM_SHAPE
GOLDEN_EYE = ("MY", 9004, "OS")  # the fixture's golden eye
FP32_TOLERANCE = 1e-5  # the same network in PyTorch FP32, rebuilt from ONNX: float32 rounding only


def fake_cpuinfo(monkeypatch, tmp_path: Path, flags: str, machine: str = "x86_64") -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    monkeypatch.setattr(cpu, "CPUINFO", cpuinfo)
    monkeypatch.setattr(platform, "machine", lambda: machine)


@pytest.fixture
def bf16_cpu(monkeypatch, tmp_path):
    fake_cpuinfo(monkeypatch, tmp_path, "fpu sse2 avx2 avx512f avx512_bf16")


def declare_bf16(folder: Path, tolerance: dict | None = None) -> dict:
    """Declare bf16 in the fixture copy's manifest (as a passed --bf16 conversion does), unsigned."""
    manifest = manifest_of(folder)
    manifest["tolerances"]["bf16"] = tolerance or TOLERANCES["bf16"]
    (folder / "manifest.sig").unlink(missing_ok=True)
    return rewrite_manifest(folder, manifest)


@pytest.fixture
def bf16_folder(tmp_path) -> Path:
    folder = copy_fixture(tmp_path)
    declare_bf16(folder)
    return folder


# --- the torch backend from a cpu bundle's merged models ------------------------------------------


def test_the_torch_backend_rebuilds_both_stages_from_a_cpu_bundles_merged_models(tmp_path):
    bundle = Bundle.load(copy_fixture(tmp_path), trusted_keys=())
    assert bundle.target == "cpu" and bundle.model_precisions() == ()
    golden = bundle.golden()
    with TorchBackend(bundle, "fp32", device="cpu") as backend:
        stage1, stage2 = backend.run(golden["inputs"][0])
    assert np.abs(stage1 - golden["stage1"][0]).max() < FP32_TOLERANCE
    assert np.abs(stage2 - golden["stage2"][0]).max() < FP32_TOLERANCE


def test_a_shared_trunks_stage2_takes_the_stage1_tensors_it_shares(tmp_path):
    checkpoint = small_checkpoint(tmp_path / "checkpoint", seed=4, shared_trunk_blocks=2)
    out = build_bundle(
        checkpoint, tmp_path / "bundle", target="cpu", phantom_shape=PHANTOM_SHAPE, golden_eyes=[GOLDEN_EYE]
    )
    bundle = Bundle.load(out, trusted_keys=())
    assert bundle.merged[0].shared_conv_layers == 4  # VGG blocks 1-2: 2 + 2 convolutions
    stage1, stage2 = state_dicts_from_merged(bundle.read(bundle.merged[0].files["fp32"]))
    assert stage1.keys() == stage2.keys()
    assert np.array_equal(stage2["features.0.weight"], stage1["features.0.weight"])  # shared
    assert not np.array_equal(stage2["features.10.weight"], stage1["features.10.weight"])  # block 3: own
    golden = bundle.golden()
    with TorchBackend(bundle, "fp32", device="cpu") as backend:
        got = backend.run(golden["inputs"][0])
    assert np.abs(got[1] - golden["stage2"][0]).max() < FP32_TOLERANCE


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_layers_both_stages_share_run_once_and_give_the_whole_networks_outputs(
    tmp_path, bf16_cpu, precision
):
    checkpoint = small_checkpoint(tmp_path / "checkpoint", seed=4, shared_trunk_blocks=2)
    out = build_bundle(
        checkpoint, tmp_path / "bundle", target="cpu", phantom_shape=PHANTOM_SHAPE, golden_eyes=[GOLDEN_EYE]
    )
    declare_bf16(out)
    bundle = Bundle.load(out, trusted_keys=())
    x = bundle.golden()["inputs"][0]
    with TorchBackend(bundle, precision, device="cpu") as backend:
        # VGG blocks 1-2: four convolutions, their ReLUs and two poolings
        assert backend.details["shared_layers_run_once"] == [10] * len(MAP_NAMES)
        calls = []
        for first, second in stage_indices(bundle):
            assert backend._models[second].features[0] is backend._models[first].features[0]  # held once
            backend._models[first].features[0].register_forward_hook(lambda *_: calls.append(1))
        stage1, stage2 = backend.run(x)
    assert len(calls) == len(MAP_NAMES)  # not twice per map
    dtype = getattr(torch, TorchBackend.dtypes[precision])
    models = [bf16_network(m) if precision == "bf16" else m for m in fp32_networks(bundle)]
    with torch.inference_mode():
        whole = [
            probabilities(model, torch.from_numpy(x[m : m + 1]), dtype).numpy()[0]
            for m, pair in enumerate(stage_indices(bundle))
            for model in (models[pair[0]], models[pair[1]])
        ]
    assert np.array_equal(stage1, np.array(whole[0::2])) and np.array_equal(stage2, np.array(whole[1::2]))


# --- bf16 runs where declared and supported -------------------------------------------------------


def test_bf16_runs_the_fp32_weights_rounded_and_says_so(bf16_folder, bf16_cpu):
    bundle = Bundle.load(bf16_folder, trusted_keys=())
    assert bundle.derived_precisions() == ("bf16",)
    golden = bundle.golden()
    with make_backend(bundle, "auto", "bf16") as backend:  # auto: the one backend that runs bf16
        assert (backend.name, backend.precision, backend.device) == ("torch", "bf16", "cpu")
        stage1, stage2 = backend.run(golden["inputs"][0])
    difference = max(np.abs(stage1 - golden["stage1"][0]).max(), np.abs(stage2 - golden["stage2"][0]).max())
    assert FP32_TOLERANCE < difference < TOLERANCES["bf16"]["max_abs_probability"]  # rounded, close
    models = list(fp32_networks(bundle))
    networks = [(models[i], models[j]) for i, j in stage_indices(bundle)]
    gated = bf16.outputs(networks, golden["inputs"][:1], "bf16")  # what conversion's gate runs
    assert np.array_equal(gated["stage1"][0], stage1) and np.array_equal(gated["stage2"][0], stage2)
    kind, seed, laterality = GOLDEN_EYE
    volume = phantom.make_eye(kind, seed=seed, laterality=laterality, shape=PHANTOM_SHAPE).volume
    diagnosis = sdk.Classifier.of_bundle(bundle, "torch", "bf16").classify(volume)
    assert (diagnosis.backend, diagnosis.precision) == ("torch", "bf16")


def test_verify_measures_bf16_against_the_pytorch_reference(bf16_folder, bf16_cpu):
    verification = verify(bf16_folder, "torch", "bf16")
    assert verification.precision == "bf16" and verification.passed
    rows = {row.name: row for row in verification.rows}
    assert 0 < rows["rnfl_thickness.stage1"].max_abs < TOLERANCES["bf16"]["max_abs_probability"]
    assert rows["final (stacker)"].tolerance == TOLERANCES["bf16"]


# --- refused where it cannot run ------------------------------------------------------------------


def test_bf16_is_refused_where_it_cannot_run(bf16_folder, tmp_path, monkeypatch):
    fixture = Bundle.load(copy_fixture(tmp_path / "plain"), trusted_keys=())
    fake_cpuinfo(monkeypatch, tmp_path, "fpu sse2 avx2 avx512f avx512_bf16")
    with pytest.raises(BackendUnavailable, match="declares no bf16 gate.*--bf16"):
        make_backend(fixture, "torch", "bf16")
    bundle = Bundle.load(bf16_folder, trusted_keys=())
    with pytest.raises(BackendUnavailable, match="bf16 on the CPU only: on CUDA choose fp16"):
        TorchBackend(bundle, "bf16", device="cuda")
    with pytest.raises(BackendUnavailable, match="onnxruntime backend runs fp32 or fp16 or int8, not 'bf16'"):
        make_backend(bundle, "onnxruntime", "bf16")
    fake_cpuinfo(monkeypatch, tmp_path, "fpu sse2 avx2 avx512f avx512_vnni amx_int8")
    with pytest.raises(
        BackendUnavailable, match=r"this CPU \(Test CPU\) lacks avx512_bf16 and amx_bf16.*--precision fp32"
    ):
        make_backend(bundle, "torch", "bf16")
    make_backend(bundle, "torch", "fp32").close()  # FP32 still runs there
    fake_cpuinfo(monkeypatch, tmp_path, "fpu avx2 amx_bf16 amx_tile")
    assert cpu.bf16_unsupported() is None
    fake_cpuinfo(monkeypatch, tmp_path, "fp asimd asimddp bf16", machine="aarch64")
    assert cpu.bf16_unsupported() is None
    fake_cpuinfo(monkeypatch, tmp_path, "fp asimd asimddp", machine="aarch64")
    assert "lacks bf16" in cpu.bf16_unsupported()
    fake_cpuinfo(monkeypatch, tmp_path, "", machine="riscv64")
    assert "not riscv64" in cpu.bf16_unsupported()


# --- the manifest ---------------------------------------------------------------------------------


def test_a_bf16_tolerance_looser_than_the_schema_or_an_unknown_one_is_refused(tmp_path):
    folder = copy_fixture(tmp_path)
    manifest = declare_bf16(folder, {"max_abs_probability": 0.2, "min_top1_agreement": 0.99})
    with pytest.raises(BundleError, match="tolerances.bf16 .* looser than the schema allows"):
        Bundle.load(folder, trusted_keys=())
    manifest["tolerances"]["bf16"] = TOLERANCE_LIMITS["bf16"]
    rewrite_manifest(folder, manifest)
    assert Bundle.load(folder, trusted_keys=()).derived_precisions() == ("bf16",)  # at the limit: loads
    manifest["tolerances"]["tf32"] = TOLERANCES["fp32"]
    rewrite_manifest(folder, manifest)
    with pytest.raises(BundleError, match=r"exactly \['fp32', 'fp16'\], and may add bf16"):
        Bundle.load(folder, trusted_keys=())


# --- conversion -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("checkpoint") / "checkpoint")


def test_a_bf16_conversion_gates_declares_and_records_it(checkpoint_dir, tmp_path, bf16_cpu):
    out = build_bundle(
        checkpoint_dir, tmp_path / "bundle", target="cpu", bf16=True, phantom_shape=PHANTOM_SHAPE
    )
    manifest = manifest_of(out)
    assert manifest["tolerances"]["bf16"] == TOLERANCES["bf16"]  # the real gate, passed
    checks = manifest["provenance"]["checks"]["bf16"]
    assert checks["gate_eyes"] == 8 + 5  # every calibration eye (none is calibrated on) and the golden ones
    assert checks["cpu"] == "Test CPU" and checks["bf16_instructions"] is True
    final = checks["final bf16 vs FP32"]
    assert final["compared"] == 13 and 0 < final["max_abs"] <= TOLERANCES["bf16"]["max_abs_probability"]
    assert "rounded to bfloat16" in manifest["provenance"]["converter"]["bf16"]
    assert sorted(p.name for p in (out / "models").iterdir()) == sorted(
        f"{m}.stages.onnx" for m in sdk.maps.MAP_NAMES
    )  # no files of its own
    bundle = Bundle.load(out, trusted_keys=())
    with make_backend(bundle, "torch", "bf16") as backend:
        stage1, _ = backend.run(bundle.golden()["inputs"][0])
    assert np.allclose(stage1.sum(1), 1, atol=1e-5)


def test_a_failed_bf16_gate_writes_nothing_and_without_instructions_the_cpu_is_recorded(
    checkpoint_dir, tmp_path, tmp_path_factory, monkeypatch
):
    fake_cpuinfo(monkeypatch, tmp_path_factory.mktemp("cpu"), "fpu sse2 avx2")
    monkeypatch.setitem(TOLERANCES, "bf16", {"max_abs_probability": 0.0, "min_top1_agreement": 1.0})
    out = tmp_path / "bundle"
    with pytest.raises(ValueError, match=r"bf16 vs FP32: max \|dp\| .*bundle not written"):
        build_bundle(checkpoint_dir, out, target="cpu", bf16=True, phantom_shape=PHANTOM_SHAPE)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert bf16.converting_cpu() == {
        "cpu": "Test CPU",
        "bf16_instructions": False,
        "emulated": "this CPU (Test CPU) lacks avx512_bf16 and amx_bf16, which bf16 models need to run "
        "faster than fp32",
    }


def test_bf16_needs_the_checkpoints_calibration_eyes(checkpoint_dir, tmp_path):
    bare = shutil.copytree(checkpoint_dir, tmp_path / "checkpoint")
    (bare / CALIBRATION_FILE).unlink()
    with pytest.raises(ValueError, match=r"keeps 0 calibration eyes.*bf16 needs.*without --bf16"):
        build_bundle(bare, tmp_path / "bundle", target="cpu", bf16=True, phantom_shape=PHANTOM_SHAPE)
    assert not (tmp_path / "bundle").exists()


def test_bf16_outputs_leave_the_fp32_networks_unchanged(checkpoint_dir):
    from converters.bundle import _network
    from training.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(checkpoint_dir)
    network = _network(checkpoint, "rnfl_thickness", 1)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    x = np.zeros((2, 4, 3, 32, 32), np.float32)
    bf16.outputs([(network, network)] * 4, x, "bf16")
    assert all(
        v.dtype == torch.float32 and torch.equal(v, before[k]) for k, v in network.state_dict().items()
    )


def test_the_benchmarks_bf16_pipeline_runs_what_the_backend_runs(bf16_folder, bf16_cpu):
    from benchmarks.compare import composed, one_by_one

    bundle = Bundle.load(bf16_folder, trusted_keys=())
    kind, seed, laterality = GOLDEN_EYE
    volume = phantom.make_eye(kind, seed=seed, laterality=laterality, shape=PHANTOM_SHAPE).volume
    networks = one_by_one(bundle, "bf16")
    run = composed(bundle, volume, networks)
    x = bundle.golden()["inputs"][0]
    got = networks(x)
    with sdk.Classifier(bundle, TorchBackend(bundle, "bf16")) as classifier:
        expected = classifier.backend.run(x)
        diagnosis = classifier.classify(volume)
    assert all(np.array_equal(g, e) for g, e in zip(got, expected, strict=True))
    probabilities = np.array([diagnosis.probabilities[c] for c in sdk.labels.CLASSES])
    assert np.allclose(run(), probabilities, atol=1e-12)


def test_the_float32_references_switch_tf32_off(bf16_folder):
    """benchmarks.compare's FP32 references compute in float32 on a GPU too: TF32 off (torch allows it
    for convolutions by default), as the torch backend's fp32 on CUDA sets it."""
    import torch

    from benchmarks.compare import one_by_one

    bundle = Bundle.load(bf16_folder, trusted_keys=())
    found = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        one_by_one(bundle, "fp32")
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = found
