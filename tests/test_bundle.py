"""converters bundle / verify and sdk.bundle: a bundle from a random checkpoint made here, its
agreement figures, its verification per backend, and every kind of damaged bundle.

Networks are VGG16 at width 1/16 on 64 x 64 inputs; the phantom eyes are small (32 B-scans of
128 A-scans), so the module runs in about 20 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from converters.__main__ import main
from converters.bundle import DEFAULT_GOLDEN_EYES, TOLERANCES, build_bundle
from converters.onnx_export import check_against_torch, export_onnx, onnx_probabilities
from converters.verify import Agreement
from sdk import bundle as sdk_bundle
from sdk.bundle import SCHEMA_VERSION, Bundle, bundle_id
from sdk.errors import BundleError, FileError
from sdk.files import file_sha256
from sdk.labels import CLASSES, stacking_features
from sdk.maps import MAP_NAMES, preprocessing_constants
from sdk.nets.vgg16 import VGG16
from tests.bundle_helpers import rewrite_manifest
from training.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
WIDTH, PX = 1 / 16, 64
PHANTOM_SHAPE = ("32", "248", "128")  # (n_bscans, depth, n_ascans): 0.1 s per eye


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoint")
    args = ["--width", str(WIDTH), "--input-px", str(PX), "--seed", "1", "--phantom-shape", *PHANTOM_SHAPE]
    assert main(["random-checkpoint", str(folder), *args]) == 0
    return folder


@pytest.fixture(scope="module")
def bundle_dir(checkpoint_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "bundle"
    assert main(["bundle", str(checkpoint_dir), str(out), "--phantom-shape", *PHANTOM_SHAPE]) == 0
    return out


@pytest.fixture
def copy(bundle_dir, tmp_path) -> Path:
    """A copy of the bundle to damage."""
    return Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def resign(folder: Path, manifest: dict | None = None) -> None:
    """Rewrite the manifest with every file's current sha256 and size and a matching bundle id: only
    the change under test remains wrong."""
    rewrite_manifest(folder, manifest)


def checkpoint_network(checkpoint, map_name: str, stage: int) -> VGG16:
    network = VGG16(2 if stage == 1 else 4, width=WIDTH)
    network.load_state_dict(
        {k: torch.from_numpy(v) for k, v in checkpoint.networks[(map_name, stage)].items()}
    )
    return network.eval()


# --- the bundle as written ------------------------------------------------------------------------


def test_layout_and_manifest(bundle_dir, checkpoint_dir):
    manifest = manifest_of(bundle_dir)
    files = sorted(p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file())
    models = [f"models/{m}.stage{s}{v}.onnx" for m in MAP_NAMES for s in (1, 2) for v in ("", ".fp16")]
    merged = [f"models/{m}.stages{v}.onnx" for m in MAP_NAMES for v in ("", ".fp16")]
    assert files == sorted(["manifest.json", "stacker.npz", "normative.npz", "golden.npz", *models, *merged])
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["bundle_id"] == bundle_id(manifest)
    assert manifest["target"] == "all" and sorted(manifest["files"]) == [
        f for f in files if f != "manifest.json"
    ]
    for name, entry in manifest["files"].items():
        assert entry == {
            "sha256": file_sha256(bundle_dir / name),
            "bytes": (bundle_dir / name).stat().st_size,
        }
    assert manifest["classes"] == list(CLASSES) and manifest["map_names"] == list(MAP_NAMES)
    assert manifest["preprocessing"] == json.loads(json.dumps(preprocessing_constants((PX, PX))))
    assert manifest["stacker"]["features"] == list(stacking_features())
    assert manifest["tolerances"] == {p: TOLERANCES[p] for p in ("fp32", "fp16")}  # int8 only when shipped
    for model in manifest["models"]:
        classes = 2 if model["stage"] == 1 else 4
        assert model["name"] == f"{model['map']}.stage{model['stage']}" and len(model["classes"]) == classes
        assert model["input"] == {"name": "input", "shape": [1, 3, PX, PX], "dtype": "float32"}
        assert model["output"] == {"name": "probabilities", "shape": [1, classes], "dtype": "float32"}
        assert model["opset"] >= 17
        assert model["onnx"] == {
            "fp32": f"models/{model['name']}.onnx",
            "fp16": f"models/{model['name']}.fp16.onnx",
        }
        for file in model["onnx"].values():
            proto = onnx.load(bundle_dir / file)
            assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 3, PX, PX]
            assert proto.opset_import[0].version >= 17
    provenance = manifest["provenance"]
    checkpoint = read_checkpoint(checkpoint_dir)
    assert provenance["checkpoint"]["provenance"] == checkpoint.metadata["provenance"]
    assert provenance["checkpoint"]["sha256"] == file_sha256(checkpoint_dir / "checkpoint.json")
    assert {"sdk", "python", "numpy", "torch", "onnx", "onnxruntime"} <= set(
        provenance["converter"]["versions"]
    )
    assert set(provenance["checks"]) == {m["name"] for m in manifest["models"]} | {
        f"{m}.stages.{p}" for m in MAP_NAMES for p in ("fp32", "fp16")
    }
    for entry in manifest["merged"]:  # random stage-2 trunks drift from stage 1: nothing is shared
        assert entry["shared_conv_layers"] == 0
        assert entry["outputs"] == {
            "stage1": {"shape": [1, 2], "dtype": "float32"},
            "stage2": {"shape": [1, 4], "dtype": "float32"},
        }
    assert manifest["network"]["width"] == WIDTH
    for name in ("stacker.npz", "normative.npz", "golden.npz"):  # plain arrays: loads without pickle
        with np.load(bundle_dir / name, allow_pickle=False) as z:
            assert all(z[key].dtype.kind in "biufU" for key in z.files)


def test_onnx_fp32_and_fp16_agree_with_pytorch(bundle_dir, checkpoint_dir):
    """Recomputed here, independently of the converter's own check: FP32 within 1e-4 of PyTorch;
    FP16 within 1e-2 of FP32 with the same top class on >= 99% of the phantom maps."""
    bundle, checkpoint = Bundle.load(bundle_dir), read_checkpoint(checkpoint_dir)
    inputs = bundle.golden()["inputs"]  # (5 eyes, 4 maps, 3, 64, 64)
    worst_fp32, worst_fp16, same_top, total = 0.0, 0.0, 0, 0
    for spec in bundle.models:
        x = inputs[:, MAP_NAMES.index(spec.map_name)]
        worst_fp32 = max(
            worst_fp32,
            check_against_torch(
                checkpoint_network(checkpoint, spec.map_name, spec.stage), bundle_dir / spec.files["fp32"], x
            ),
        )
        fp32 = onnx_probabilities(bundle_dir / spec.files["fp32"], x)
        fp16 = onnx_probabilities(bundle_dir / spec.files["fp16"], x)
        worst_fp16 = max(worst_fp16, float(np.max(np.abs(fp16 - fp32))))
        same_top += int(np.sum(fp16.argmax(1) == fp32.argmax(1)))
        total += len(x)
    print(f"FP32 vs PyTorch {worst_fp32:.2e}, FP16 vs FP32 {worst_fp16:.2e}, top class {same_top}/{total}")
    assert worst_fp32 <= 1e-4
    assert worst_fp16 <= 1e-2 and same_top / total >= 0.99


def test_random_networks_are_not_degenerate(bundle_dir):
    """Confident, input-dependent outputs: a top-class comparison means something."""
    golden = Bundle.load(bundle_dir).golden()
    for stage in ("stage1", "stage2"):
        probabilities = golden[stage]  # (eyes, maps, classes)
        assert probabilities.max(-1).mean() > 1 / probabilities.shape[-1] + 0.1  # clearly above uniform
        assert np.ptp(probabilities, axis=0).max(-1).min() > 0.01  # every network varies across eyes


def test_stacker_and_normative_equal_the_checkpoints(bundle_dir, checkpoint_dir):
    for name in ("stacker.npz", "normative.npz"):
        assert file_sha256(bundle_dir / name) == file_sha256(checkpoint_dir / name)
    bundle, checkpoint = Bundle.load(bundle_dir), read_checkpoint(checkpoint_dir)
    features = np.random.default_rng(0).uniform(size=(30, 20))
    np.testing.assert_array_equal(
        bundle.stacker.predict_proba(features), checkpoint.stacker.predict_proba(features)
    )
    np.testing.assert_array_equal(bundle.normative.rnfl_mean_um, checkpoint.normative.rnfl_mean_um)


def test_golden_holds_the_pytorch_and_stacker_references(bundle_dir, checkpoint_dir):
    bundle, checkpoint = Bundle.load(bundle_dir), read_checkpoint(checkpoint_dir)
    golden = bundle.golden()
    n = len(DEFAULT_GOLDEN_EYES)
    assert golden["inputs"].shape == (n, 4, 3, PX, PX) and golden["inputs"].dtype == np.float32
    assert golden["stage1"].shape == (n, 4, 2) and golden["stage2"].shape == (n, 4, 4)
    assert list(golden["kinds"]) == [kind for kind, _, _ in DEFAULT_GOLDEN_EYES]
    network = checkpoint_network(checkpoint, "gcc_deviation", 2)
    with torch.inference_mode():
        expected = torch.softmax(network(torch.from_numpy(golden["inputs"][:, 3])), 1).numpy()
    np.testing.assert_array_equal(golden["stage2"][:, 3], expected)
    features = bundle.stacking_features(golden["stage1"], golden["stage2"])
    np.testing.assert_array_equal(features, golden["features"])
    assert features[0, :5].tolist() == [golden["stage1"][0, 0, 0], *golden["stage2"][0, 0]]
    stacker_order = [list(checkpoint.stacker.classes_).index(c) for c in CLASSES]
    np.testing.assert_array_equal(
        golden["probabilities"], checkpoint.stacker.predict_proba(features)[:, stacker_order]
    )


# --- verify ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "precision"), [("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("torch", "fp32")]
)
def test_verify_passes(bundle_dir, backend, precision, capsys):
    threads = torch.get_num_threads()
    try:  # 1 thread: torch's OpenMP threads slow down 100-fold beside other jobs on a 2-core machine
        assert (
            main(
                ["verify", str(bundle_dir), "--backend", backend, "--precision", precision, "--threads", "1"]
            )
            == 0
        )
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert f"backend {backend} {precision}" in out and out.rstrip().endswith("PASS")
    assert out.count(" ok") == 12  # 2 deviation maps, the network input, 8 networks, the final probabilities


def test_verify_fails_beyond_tolerance(copy, capsys):
    golden = dict(np.load(copy / "golden.npz"))
    golden["stage1"][:, 2, 0] += 0.05  # rnfl_deviation.stage1's reference moved
    np.savez_compressed(copy / "golden.npz", **golden)
    resign(copy)
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    failed = [line.split()[0] for line in out.splitlines() if line.endswith("FAIL")]
    assert failed[0] == "rnfl_deviation.stage1" and "beyond the manifest's tolerances" in out


def test_verify_of_a_bad_bundle_or_missing_backend_exits_2(copy, capsys):
    (copy / "golden.npz").unlink()
    assert main(["verify", str(copy)]) == 2
    assert "golden.npz is missing" in capsys.readouterr().err
    assert main(["verify", str(copy.parent / "nothing")]) == 2


def test_agreement_counts_only_the_inputs_the_reference_decides():
    reference = np.array([[0.9, 0.1], [0.504, 0.496], [0.2, 0.8]])
    got = np.array([[0.895, 0.105], [0.496, 0.504], [0.205, 0.795]])  # the near tie swaps
    agreement = Agreement.of("m", got, reference, {"max_abs_probability": 1e-2, "min_top1_agreement": 0.99})
    assert (agreement.compared, agreement.decided, agreement.same_top) == (3, 2, 2)
    assert agreement.passed and agreement.max_abs == pytest.approx(0.008)
    assert "same top class 2/2 (+1 tie)" in agreement.summary()
    got[0] = [0.4, 0.6]  # a decided input swapped, far beyond the tolerance
    assert not Agreement.of("m", got, reference, agreement.tolerance).passed


def test_verify_runs_without_torch(bundle_dir):
    code = (
        "import sys; from converters.verify import verify; r = verify(sys.argv[1]); "
        "assert r.passed; assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(bundle_dir)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# --- writing --------------------------------------------------------------------------------------


def test_out_dir_must_be_new_or_empty_unless_overwrite(checkpoint_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(FileError, match="not empty"):
        build_bundle(checkpoint_dir, out)
    build_bundle(
        checkpoint_dir, out, overwrite=True, golden_eyes=DEFAULT_GOLDEN_EYES[:1], phantom_shape=(32, 248, 128)
    )
    assert (
        not (out / "old.txt").exists() and Bundle.load(out).manifest["golden"]["eyes"][0]["kind"] == "normal"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folders left


def test_a_model_beyond_tolerance_writes_nothing(checkpoint_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(TOLERANCES, "fp32", {"max_abs_probability": 0.0, "min_top1_agreement": 1.0})
    monkeypatch.setattr(
        "converters.bundle.onnx_probabilities", lambda path, x: onnx_probabilities(path, x) + 1e-3
    )
    with pytest.raises(
        ValueError, match=r"rnfl_thickness.stage1 FP32 vs PyTorch: max \|dp\| 1.00e-03 \(limit 0\)"
    ):
        build_bundle(
            checkpoint_dir,
            tmp_path / "out",
            golden_eyes=DEFAULT_GOLDEN_EYES[:1],
            phantom_shape=(32, 248, 128),
        )
    assert list(tmp_path.iterdir()) == []


# --- damaged bundles ------------------------------------------------------------------------------


def _replace_stacker_with_object_array(folder: Path) -> None:
    np.savez(folder / "stacker.npz", classes=np.array([{"a": 1}], dtype=object))
    resign(folder)


def _set_manifest(**changes):
    def edit(folder: Path) -> None:
        manifest = manifest_of(folder)
        manifest.update(changes)
        resign(folder, manifest)

    return edit


def _write(name: str, data: bytes = b"x"):
    def edit(folder: Path) -> None:
        (folder / name).write_bytes(data)

    return edit


def _edit_tolerance_only(folder: Path) -> None:
    manifest = manifest_of(folder)
    manifest["tolerances"]["fp16"]["max_abs_probability"] = 1e-3
    (folder / "manifest.json").write_text(json.dumps(manifest))


DAMAGE = {
    "missing file": (
        lambda f: (f / "models" / "rnfl_deviation.stage2.fp16.onnx").unlink(),
        r"models/rnfl_deviation.stage2.fp16.onnx is missing",
    ),
    "extra file": (_write("notes.txt"), r"notes.txt is not listed in manifest.json"),
    "size mismatch": (
        lambda f: (f / "stacker.npz").write_bytes((f / "stacker.npz").read_bytes() + b"\0"),
        r"stacker.npz is \d+ bytes, manifest.json says \d+",
    ),
    "sha256 mismatch": (
        lambda f: (f / "normative.npz").write_bytes(b"\0" + (f / "normative.npz").read_bytes()[1:]),
        r"normative.npz does not match its sha256",
    ),
    "newer schema": (
        _set_manifest(schema_version=SCHEMA_VERSION + 1),
        r"newer than this SDK reads.*upgrade the SDK",
    ),
    "unknown schema": (_set_manifest(schema_version="1.0"), r"unknown schema version '1.0'"),
    "pickle file": (_write("models/extra.pkl"), r"models/extra.pkl is a pickle file"),
    "torch file": (_write("weights.pt"), r"weights.pt is a pickle file"),
    "object arrays": (
        _replace_stacker_with_object_array,
        r"stacker.npz is not an .npz of plain arrays \(Object arrays cannot be loaded",
    ),
    "old schema": (_set_manifest(schema_version=1), r"schema version 1, from an older converter"),
    "manifest edited": (_edit_tolerance_only, r"bundle_id does not match"),
    "manifest not json": (_write("manifest.json", b"{not json"), r"cannot be read as JSON"),
    "manifest missing": (lambda f: (f / "manifest.json").unlink(), r"manifest.json does not exist"),
    "other classes": (
        _set_manifest(classes=["normal", "glaucoma"]),
        r"the bundle classifies \['normal', 'glaucoma'\]",
    ),
    "other preprocessing": (
        lambda f: resign(
            f, {**manifest_of(f), "preprocessing": preprocessing_constants((PX, PX)) | {"clip": 3.0}}
        ),
        r"preprocessing \['clip'\] differs",
    ),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_bundle_is_refused_before_anything_loads(copy, case, monkeypatch):
    damage, message = DAMAGE[case]
    damage(copy)
    loaded = []
    monkeypatch.setattr(sdk_bundle, "SVMStacker", lambda arrays: loaded.append(arrays))
    monkeypatch.setattr(sdk_bundle, "Normative", lambda *arrays, n_eyes: loaded.append(arrays))
    with pytest.raises(BundleError, match=message):
        Bundle.load(copy)
    assert loaded == []


def test_a_model_that_does_not_fit_its_manifest_is_refused_before_it_runs(copy):
    path = copy / "models" / "gcc_thickness.stages.onnx"
    shrunk = copy.parent / "shrunk.onnx"
    path.unlink()
    export_onnx(VGG16(2, width=WIDTH), shrunk, input_hw=(32, 32))
    shrunk.replace(path)
    resign(copy)
    bundle = Bundle.load(copy)
    with pytest.raises(
        BundleError, match=r"gcc_thickness.stages.onnx has inputs and outputs .*\(1, 3, 32, 32\)"
    ):
        bundle.read(bundle.merged[1].files["fp32"])


def test_every_damage_has_its_own_message():
    messages = [message for _, message in DAMAGE.values()]
    assert len(set(messages)) == len(messages)
