"""Checkpoint directory -> model bundle, every model checked before the bundle is written.

    build_bundle("checkpoint/", "bundle/", target="cpu", signing_key="vendor.key.pem")
    # python -m converters bundle CHECKPOINT_DIR OUT_DIR [--target cpu|tensorrt|all] [--signing-key KEY]

The layout and manifest are documented in :mod:`sdk.bundle` and docs/BUNDLE.md. Steps:

1. Golden inputs: a few phantom eyes (one per class by default) through ``sdk.maps.extract`` with
   the checkpoint's normative database and ``sdk.maps.to_network_input``: (n, 4, 3, H, W).
2. Per map and stage: the VGG16 rebuilt from the checkpoint, its reference probabilities in
   PyTorch, the FP32 ONNX export (opset 17, static batch 1, input "input", output
   "probabilities") and its FP16 variant. ONNX Runtime (CPU) runs both on the golden inputs: FP32
   must be within 1e-4 of PyTorch, FP16 within 1e-2 of FP32, each with the same top class on
   >= 99% of the inputs the reference decides (:data:`TOLERANCES`,
   :class:`converters.verify.Agreement`), else ValueError and nothing is written.
3. Per map, the two stages merged into one ONNX model (and its FP16 variant) that computes their
   identical leading layers once (:mod:`converters.shared_trunk`); checked on the golden inputs to
   give exactly what the two separate models give.
4. Stacking features and final probabilities of the golden eyes (numpy stacker), golden.npz
   (compressed; with the golden eyes' maps); stacker.npz and normative.npz copied byte for byte
   from the checkpoint; the model files the target does not ship removed (``sdk.bundle.TARGETS``:
   cpu keeps the merged FP32 models, tensorrt the per-stage FP32 and FP16 ones, all everything);
   manifest.json with every file's sha256 and size and the measured agreement under
   ``provenance.checks``; manifest.sig when a signing key is given.
5. The folder is written as a hidden temporary sibling of OUT_DIR, loaded with
   ``sdk.bundle.Bundle.load`` (every check the SDK makes, the signature included), then renamed
   into place.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import torch

import phantom
import sdk
from converters import bf16 as bfloat16
from converters.fp16 import convert_to_fp16
from converters.int8 import METHOD as INT8_METHOD
from converters.int8 import merged_outputs, quantise
from converters.onnx_export import export_onnx, onnx_outputs, onnx_probabilities
from converters.precision_gate import calibration_inputs, gate
from converters.shared_trunk import OUTPUTS as MERGED_OUTPUTS
from converters.shared_trunk import merge_stages
from converters.verify import Agreement
from sdk import maps, signing
from sdk.bundle import (
    DERIVED,
    FLOAT_PRECISIONS,
    FORMAT,
    MANIFEST,
    QUANTISED,
    SCHEMA_VERSION,
    SIGNATURE,
    TARGETS,
    Bundle,
    bundle_id,
    final_probabilities,
)
from sdk.bundle import stacking_features as stack_features
from sdk.errors import FileError
from sdk.files import file_sha256, write_atomically
from sdk.labels import CLASSES, STAGE1_CLASSES, STAGE2_CLASSES, stacking_features
from sdk.maps import MAP_NAMES, preprocessing_constants
from sdk.nets.vgg16 import VGG16
from training.checkpoint import STAGES, Checkpoint, read_checkpoint

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "probabilities"
DEFAULT_GOLDEN_EYES = (
    ("normal", 9001, "OD"),
    ("FI", 9002, "OS"),
    ("GE", 9003, "OD"),
    ("MY", 9004, "OS"),
    ("SS", 9005, "OD"),
)
"""(kind, seed, laterality) of the golden phantom eyes: one per class, both eyes."""
TOLERANCES = {
    "fp32": {"max_abs_probability": 1e-4, "min_top1_agreement": 0.99},
    "fp16": {"max_abs_probability": 1e-2, "min_top1_agreement": 0.99},
    "int8": {"max_abs_probability": 5e-2, "min_top1_agreement": 0.99},
    "bf16": {"max_abs_probability": 5e-2, "min_top1_agreement": 0.99},
}
"""Agreement a backend must reach with the PyTorch reference: at conversion (ONNX Runtime FP32 vs
PyTorch, FP16 vs FP32, int8 and bf16 vs FP32 on held-out training eyes and the golden eyes) and in
``python -m converters verify`` (any backend vs golden.npz)."""
LOWER_PRECISION_METHODS = {QUANTISED: INT8_METHOD, DERIVED: bfloat16.METHOD}
VERSIONED = ("numpy", "scipy", "torch", "onnx", "onnxruntime")
# a merged stage model computes what the separate ones do; ONNX Runtime may fuse its graph differently
MERGED_TOLERANCE = {p: 0.1 * TOLERANCES[p]["max_abs_probability"] for p in FLOAT_PRECISIONS}
STAGE_CLASSES = {1: STAGE1_CLASSES, 2: STAGE2_CLASSES}

_LOG = logging.getLogger(__name__)


def build_bundle(
    checkpoint_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    golden_eyes=DEFAULT_GOLDEN_EYES,
    phantom_shape: tuple[int, int, int] | None = None,
    target: str = "all",
    signing_key: str | os.PathLike | None = None,
    int8: bool = False,
    bf16: bool = False,
) -> Path:
    """Convert a checkpoint directory into a bundle folder ``out_dir``.

    out_dir : must not exist or be empty, unless ``overwrite`` (then it is replaced as a whole).
    golden_eyes : (kind, seed, laterality) of the phantom eyes behind golden.npz and the checks.
    phantom_shape : their (n_bscans, depth, n_ascans) (default: phantom's full size).
    target : "cpu", "tensorrt" or "all": which model files the bundle ships (``sdk.bundle.TARGETS``).
    signing_key : an Ed25519 private key file (``python -m converters keygen``): the bundle is signed.
    int8 : also ship int8 merged models (:mod:`converters.int8`), calibrated on the checkpoint's
        calibration eyes; ValueError, nothing written, if they miss ``TOLERANCES["int8"]``.
    bf16 : declare bf16 (:mod:`converters.bf16`: no files, the torch backend rounds the FP32 weights)
        after checking it on the calibration and golden eyes; ValueError, nothing written, if it
        misses ``TOLERANCES["bf16"]``.

    Returns the bundle path. Raises FileError (OUT_DIR not empty), ValueError (a model fails its
    check; the message has the figures), BundleError (an unusable signing key), and the checkpoint
    reader's errors.
    """
    if target not in TARGETS:
        raise ValueError(f"target {target!r} is unknown: use one of {', '.join(TARGETS)}")
    if int8 and "fp32" not in TARGETS[target]["merged"]:
        raise ValueError(f"int8 models are quantised merged FP32 ones, which target {target} does not ship")
    key_pem = signing.read_private_key(signing_key) if signing_key is not None else None
    checkpoint = read_checkpoint(checkpoint_dir)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileError(f"{out} exists and is not empty: choose a new folder or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        _write_bundle(checkpoint, work, golden_eyes, phantom_shape, target, int8, bf16)
        if key_pem is not None:
            sign_bundle(work, key_pem)
        bundle = Bundle.load(work, trusted_keys=())
        bundle.close()
        _move_into_place(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _LOG.info("bundle %s (%s) written to %s", bundle.bundle_id[:12], target, out)
    return out


def sign_bundle(folder: str | os.PathLike, private_key_pem: bytes) -> str:
    """Sign the bundle at ``folder``: check it (``Bundle.load``), then write manifest.sig over the
    manifest bytes that were checked, replacing an older signature, and check the new one.
    Returns the signer's key id."""
    bundle = Bundle.load(folder, trusted_keys=())
    try:
        signature = signing.sign_manifest(bundle.manifest_bytes, private_key_pem)
        own_key = signing.public_key_of(private_key_pem)
        signer = signing.verify_manifest(bundle.manifest_bytes, signature, [own_key], os.fspath(folder))
        write_atomically(bundle.path / SIGNATURE, lambda file: file.write(signature), overwrite=True)
    finally:
        bundle.close()
    _LOG.info("bundle %s signed by key %s", bundle.bundle_id[:12], signer)
    return signer


def _write_bundle(
    checkpoint: Checkpoint, folder: Path, golden_eyes, phantom_shape, target: str, int8: bool, bf16: bool
) -> None:
    input_hw = checkpoint.input_hw
    ships = TARGETS[target]
    with_fp16 = "fp16" in ships["models"] + ships["merged"]
    _LOG.info("golden inputs: %d phantom eyes", len(golden_eyes))
    golden_maps = golden_map_stacks(golden_eyes, checkpoint.normative, phantom_shape)
    inputs = np.stack([maps.to_network_input(m, input_hw) for m in golden_maps])
    (folder / "models").mkdir()
    n = len(inputs)
    stage1 = np.empty((n, len(MAP_NAMES), len(STAGE1_CLASSES)), np.float32)
    stage2 = np.empty((n, len(MAP_NAMES), len(STAGE2_CLASSES)), np.float32)
    models, checks = [], {}
    for m, map_name in enumerate(MAP_NAMES):
        for stage in STAGES:
            name = f"{map_name}.stage{stage}"
            network = _network(checkpoint, map_name, stage)
            x = inputs[:, m]
            with torch.inference_mode():
                reference = torch.softmax(network(torch.from_numpy(x)), dim=1).numpy()
            (stage1 if stage == 1 else stage2)[:, m] = reference
            entry, checks[name] = _convert(network, name, folder, x, reference, input_hw, with_fp16)
            entry["onnx"] = {p: entry["onnx"][p] for p in ships["models"]}
            models.append(
                {
                    "name": name,
                    "map": map_name,
                    "stage": stage,
                    "classes": list(STAGE_CLASSES[stage]),
                    **entry,
                }
            )
    merged = [
        _merge(folder, map_name, inputs[:, m], checks, ships["merged"])
        for m, map_name in enumerate(MAP_NAMES)
        if ships["merged"]
    ]
    if int8:
        checks[QUANTISED] = _quantise(checkpoint, folder, merged, inputs)
    if bf16:
        checks[DERIVED] = _gate_bf16(checkpoint, inputs)
    lower = [p for p, asked in ((QUANTISED, int8), (DERIVED, bf16)) if asked]
    features = stack_features(stacking_features(), stage1, stage2)
    np.savez_compressed(
        folder / "golden.npz",
        maps=golden_maps,
        inputs=inputs,
        stage1=stage1,
        stage2=stage2,
        features=features,
        probabilities=final_probabilities(checkpoint.stacker, features),
        kinds=np.array([k for k, _, _ in golden_eyes]),
        seeds=np.array([s for _, s, _ in golden_eyes]),
        lateralities=np.array([lat for _, _, lat in golden_eyes]),
    )
    for part in ("stacker.npz", "normative.npz"):
        shutil.copyfile(checkpoint.path / part, folder / part)
    shipped = {f for entry in models + merged for f in entry["onnx"].values()}
    for path in (folder / "models").iterdir():
        if path.relative_to(folder).as_posix() not in shipped:
            path.unlink()
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    manifest = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "target": target,
        "classes": list(CLASSES),
        "map_names": list(MAP_NAMES),
        "preprocessing": preprocessing_constants(input_hw),
        "network": checkpoint.metadata["network"],
        "files": {
            name: {"sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size}
            for name in files
        },
        "models": models,
        "merged": merged,
        "stacker": {
            "file": "stacker.npz",
            "classes": [str(c) for c in checkpoint.stacker.classes_],
            "features": list(stacking_features()),
        },
        "normative": {"file": "normative.npz", "n_eyes": checkpoint.normative.n_eyes},
        "golden": {
            "file": "golden.npz",
            "eyes": [{"kind": k, "seed": s, "laterality": lat} for k, s, lat in golden_eyes],
            "phantom_shape": list(phantom_shape or phantom.DEFAULT_SHAPE),
        },
        "tolerances": {p: TOLERANCES[p] for p in (*FLOAT_PRECISIONS, *lower)},
        "provenance": {
            "checkpoint": {
                "sha256": file_sha256(checkpoint.path / "checkpoint.json"),
                "format": checkpoint.metadata["format"],
                "version": checkpoint.metadata["version"],
                "provenance": checkpoint.metadata["provenance"],
            },
            "converter": {
                "opset": OPSET,
                "target": target,
                "exporter": "torch.onnx.export(dynamo=False), softmax appended",
                "fp16": "converters.fp16: float16 weights and compute, float32 I/O and softmax",
                **{p: LOWER_PRECISION_METHODS[p] for p in lower},
                "versions": {
                    "sdk": sdk.__version__,
                    "python": platform.python_version(),
                    **{name: version(name) for name in VERSIONED},
                },
            },
            "checks": checks,
        },
    }
    manifest["bundle_id"] = bundle_id(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def golden_map_stacks(golden_eyes, normative: maps.Normative, phantom_shape=None) -> np.ndarray:
    """The four maps (n_eyes, 4, 224, 224) float32 (MAP_NAMES order, NaN = masked) of phantom eyes
    given as (kind, seed, laterality), deviations against ``normative``."""
    return np.stack(
        [
            maps.extract(
                phantom.make_eye(kind, seed=seed, laterality=lat, shape=phantom_shape).volume, normative
            ).stack()
            for kind, seed, lat in golden_eyes
        ]
    ).astype(np.float32)


def golden_inputs(golden_eyes, normative: maps.Normative, input_hw, phantom_shape=None) -> np.ndarray:
    """Network inputs (n_eyes, 4, 3, H, W) float32 of phantom eyes given as (kind, seed, laterality)."""
    stacks = golden_map_stacks(golden_eyes, normative, phantom_shape)
    return np.stack([maps.to_network_input(m, input_hw) for m in stacks])


def _network(checkpoint: Checkpoint, map_name: str, stage: int) -> VGG16:
    meta = checkpoint.metadata["network"]
    network = VGG16(len(STAGE_CLASSES[stage]), width=checkpoint.width, dropout=float(meta["dropout"]))
    state = checkpoint.networks[(map_name, stage)]
    network.load_state_dict({key: torch.from_numpy(np.asarray(value)) for key, value in state.items()})
    return network.eval()


def _convert(
    network: VGG16, name: str, folder: Path, x: np.ndarray, reference: np.ndarray, input_hw, with_fp16: bool
):
    """Export the FP32 ONNX file (and the FP16 one if ``with_fp16``), check them on ``x`` (n, 3, H, W)
    against ``reference`` (n, C).

    Returns the manifest entry's fields (``onnx``: precision -> file) and the measured agreement;
    ValueError beyond TOLERANCES.
    """
    fp32_file, fp16_file = f"models/{name}.onnx", f"models/{name}.fp16.onnx"
    described = export_onnx(
        network,
        folder / fp32_file,
        input_hw=input_hw,
        batch=1,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        opset=OPSET,
    )
    fp32_probabilities = onnx_probabilities(folder / fp32_file, x)
    agreements = [Agreement.of(f"{name} FP32 vs PyTorch", fp32_probabilities, reference, TOLERANCES["fp32"])]
    if with_fp16:
        convert_to_fp16(folder / fp32_file, folder / fp16_file)
        fp16_probabilities = onnx_probabilities(folder / fp16_file, x)
        agreements.append(
            Agreement.of(f"{name} FP16 vs FP32", fp16_probabilities, fp32_probabilities, TOLERANCES["fp16"])
        )
    _LOG.info("%s", "; ".join(f"{a.name}: {a.summary()}" for a in agreements))
    for agreement in agreements:
        if not agreement.passed:
            raise ValueError(f"{agreement.name}: {agreement.summary()}; bundle not written")
    entry = {
        "onnx": {"fp32": fp32_file, **({"fp16": fp16_file} if with_fp16 else {})},
        "opset": described["opset"],
        "input": {"name": described["input_name"], "shape": described["input_shape"], "dtype": "float32"},
        "output": {"name": described["output_name"], "shape": described["output_shape"], "dtype": "float32"},
    }
    checks = {"fp32_vs_torch": agreements[0].to_dict()}
    if with_fp16:
        checks["fp16_vs_fp32"] = agreements[1].to_dict()
    return entry, checks


def _merge(folder: Path, map_name: str, x: np.ndarray, checks: dict, precisions: tuple[str, ...]) -> dict:
    """Write the map's merged stage model in each of ``precisions``, check it against the separate
    models on ``x`` (n, 3, H, W) and return its manifest entry; ValueError if it differs."""
    entry = {"map": map_name, "onnx": {}}
    for precision in precisions:
        suffix = ".onnx" if precision == "fp32" else ".fp16.onnx"
        parts = [folder / f"models/{map_name}.stage{stage}{suffix}" for stage in STAGES]
        model, shared = merge_stages(onnx.load(parts[0]), onnx.load(parts[1]))
        file = f"models/{map_name}.stages{suffix}"
        onnx.save(model, folder / file)
        merged_outputs = onnx_outputs(folder / file, x, list(MERGED_OUTPUTS))
        difference = max(
            float(np.max(np.abs(got - onnx_probabilities(part, x))))
            for part, got in zip(parts, merged_outputs, strict=True)
        )
        if difference > MERGED_TOLERANCE[precision]:
            raise ValueError(
                f"{file} differs from the separate stage models by {difference:.2e}; bundle not written"
            )
        entry["onnx"][precision] = file
        entry["shared_conv_layers"] = shared
        checks[f"{map_name}.stages.{precision}"] = {
            "shared_conv_layers": shared,
            "max_abs_vs_separate": difference,
        }
    entry["input"] = {"name": INPUT_NAME, "shape": [1, *x.shape[1:]], "dtype": "float32"}
    entry["outputs"] = {
        name: {"shape": [1, len(STAGE_CLASSES[stage])], "dtype": "float32"}
        for stage, name in zip(STAGES, MERGED_OUTPUTS, strict=True)
    }
    return entry


def _quantise(checkpoint: Checkpoint, folder: Path, merged: list[dict], golden: np.ndarray) -> dict:
    """Write each map's int8 merged model next to its FP32 one, calibrated on half the checkpoint's
    calibration eyes and gated on the other half and the ``golden`` inputs (n, 4, 3, H, W); adds the
    files to the merged entries and returns the gate's checks."""
    x = calibration_inputs(checkpoint, QUANTISED)
    fp32_files = [folder / entry["onnx"]["fp32"] for entry in merged]
    int8_files = [folder / f"models/{entry['map']}.stages.int8.onnx" for entry in merged]
    for m, (fp32_file, int8_file) in enumerate(zip(fp32_files, int8_files, strict=True)):
        quantise(fp32_file, x[0::2, m], int8_file)
    x_gate = np.concatenate([x[1::2], golden])
    got, reference = merged_outputs(int8_files, x_gate), merged_outputs(fp32_files, x_gate)
    checks = gate(QUANTISED, got, reference, checkpoint.stacker, TOLERANCES[QUANTISED])
    for entry, file in zip(merged, int8_files, strict=True):
        entry["onnx"][QUANTISED] = file.relative_to(folder).as_posix()
    return {"calibration_eyes": len(x[0::2]), "gate_eyes": len(x_gate), **checks}


def _gate_bf16(checkpoint: Checkpoint, golden: np.ndarray) -> dict:
    """bf16 against FP32 in PyTorch on the checkpoint's calibration eyes and the ``golden`` inputs
    (n, 4, 3, H, W); the gate's checks, ValueError beyond ``TOLERANCES["bf16"]``."""
    x = np.concatenate([calibration_inputs(checkpoint, DERIVED), golden])
    networks = [tuple(_network(checkpoint, m, stage) for stage in STAGES) for m in MAP_NAMES]
    got, reference = (bfloat16.outputs(networks, x, p) for p in (DERIVED, "fp32"))
    checks = gate(DERIVED, got, reference, checkpoint.stacker, TOLERANCES[DERIVED])
    return {"gate_eyes": len(x), **bfloat16.converting_cpu(), **checks}


def _move_into_place(work: Path, out: Path) -> None:
    """Rename the finished folder ``work`` to ``out``; an existing ``out`` is replaced whole."""
    if not out.exists():
        os.replace(work, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    os.replace(out, old / out.name)
    os.replace(work, out)
    shutil.rmtree(old)
