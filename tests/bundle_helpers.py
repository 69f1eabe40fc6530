"""Test helpers around the frozen fixture bundle tests/fixtures/bundle (tests/fixtures/make_bundle.py).

folder = copy_fixture(tmp_path)           # a copy to change
rewrite_manifest(folder, manifest)        # every file's sha256 and size and the bundle id made to
                                          # match again, as an attacker with write access would
tensorrt_bundle(folder)                   # the copy turned into a target-tensorrt bundle of tiny models
small_checkpoint(folder)                  # a random checkpoint of tiny networks, 32 px, small phantoms
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from sdk.bundle import bundle_id

SMALL_PHANTOM_SHAPE = (32, 248, 128)  # (n_bscans, depth, n_ascans): phantom eyes 30x faster to make
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE = FIXTURES / "bundle"
TEST_PUBLIC_KEY = FIXTURES / "test-only-signing.pub.pem"
TEST_PRIVATE_KEY = FIXTURES / "test-only-signing.key.pem"


def copy_fixture(tmp_path: Path, name: str = "bundle") -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / name))


def small_checkpoint(folder: Path, seed: int = 3, **options) -> Path:
    """A random checkpoint (``converters.random_checkpoint``) of width-1/16 networks at 32 x 32 px
    from small phantom eyes, written to ``folder``; ``options`` as make_random_checkpoint's."""
    from converters.random_checkpoint import make_random_checkpoint

    return make_random_checkpoint(
        folder, width=1 / 16, input_hw=(32, 32), seed=seed, phantom_shape=SMALL_PHANTOM_SHAPE, **options
    )


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def rewrite_manifest(folder: Path, manifest: dict | None = None, *, files: list[str] | None = None) -> dict:
    """Write ``manifest`` (default: the folder's) with the sha256 and size of every file it lists (or
    of ``files``, replacing the list) and a matching bundle id; manifest.sig is left as it is."""
    manifest = manifest or manifest_of(folder)
    names = files if files is not None else list(manifest["files"])
    manifest["files"] = {
        name: {
            "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(),
            "bytes": (folder / name).stat().st_size,
        }
        for name in sorted(names)
    }
    manifest["bundle_id"] = bundle_id(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def tensorrt_bundle(folder: Path) -> Path:
    """Turn a copy of the fixture into a target-tensorrt bundle: per-stage FP32 and FP16 models (tiny
    GlobalAveragePool -> Gemm -> Softmax classifiers, seed = model index), no merged models."""
    from tests.test_engines import write_classifier_onnx

    manifest = manifest_of(folder)
    for entry in manifest["merged"]:
        for file in entry["onnx"].values():
            (folder / file).unlink()
    shape = tuple(manifest["models"][0]["input"]["shape"])
    parts = [manifest[part]["file"] for part in ("stacker", "normative", "golden")]
    for i, entry in enumerate(manifest["models"]):
        entry["onnx"] = {"fp32": f"models/{entry['name']}.onnx", "fp16": f"models/{entry['name']}.fp16.onnx"}
        for precision, file in entry["onnx"].items():
            write_classifier_onnx(
                folder / file,
                seed=i,
                fp16=precision == "fp16",
                n_classes=len(entry["classes"]),
                input_shape=shape,
            )
        parts += list(entry["onnx"].values())
    manifest.update(target="tensorrt", merged=[])
    (folder / "manifest.sig").unlink(missing_ok=True)
    rewrite_manifest(folder, manifest, files=parts)
    return folder
