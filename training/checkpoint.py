"""The checkpoint directory: what training hands to the converters.

    CHECKPOINT/
      checkpoint.json          format, classes, map order, network settings, stacking features, provenance
      networks/<map>.stage1.npz  VGG16 state dict as plain arrays (normal vs glaucoma)
      networks/<map>.stage2.npz  VGG16 state dict as plain arrays (FI / GE / MY / SS)
      stacker.npz              converters.svm.export_svm() arrays
      normative.npz            sdk.maps.Normative of the training split's normal eyes
      calibration.npz          optional: thickness_um (n, 2, 224, 224) float32 (RNFL, GCC; NaN = not
                               measured) and labels (n,) of a class-stratified sample of the training
                               eyes, for int8 calibration (converters.int8); stays with the vendor

Every array file is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdk.errors import FileError
from sdk.files import write_atomically
from sdk.labels import CLASSES, STAGE1_CLASSES, STAGE2_CLASSES, stacking_features
from sdk.maps import MAP_NAMES, MAP_SIZE_PX, Normative
from sdk.stacking import SVMStacker

FORMAT = "octclassify-checkpoint"
VERSION = 1
STAGES = (1, 2)
CALIBRATION_FILE = "calibration.npz"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. ``networks[(map_name, stage)]`` is a state dict of numpy arrays."""

    path: Path
    metadata: dict
    networks: dict[tuple[str, int], dict[str, np.ndarray]]
    stacker: SVMStacker
    normative: Normative
    calibration_um: np.ndarray | None = None  # (n, 2, 224, 224) training eyes' thickness maps, or None

    @property
    def width(self) -> float:
        return float(self.metadata["network"]["width"])

    @property
    def input_hw(self) -> tuple[int, int]:
        return tuple(self.metadata["network"]["input_hw"])


def network_file(map_name: str, stage: int) -> str:
    return f"networks/{map_name}.stage{stage}.npz"


def write_checkpoint(
    path,
    networks: dict,
    stacker_arrays: dict,
    normative: Normative,
    *,
    width: float,
    input_hw,
    dropout: float,
    shared_trunk_blocks: int,
    provenance: dict,
    overwrite: bool = False,
    calibration: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Write a checkpoint directory.

    networks : {(map_name, stage): state dict of torch tensors or numpy arrays} for every map and stage.
    stacker_arrays : converters.svm.export_svm(fitted stacker).
    provenance : cohort, seeds, versions, metrics, starting weights: anything JSON-serialisable.
    calibration : (thickness_um (n, 2, 224, 224), labels (n,)) of training eyes, written as
        calibration.npz (what ``converters bundle --int8`` calibrates on), or None.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileError(f"{path} exists and is not empty; choose a new folder or pass overwrite=True")
    missing = [(m, s) for m in MAP_NAMES for s in STAGES if (m, s) not in networks]
    if missing:
        raise ValueError(f"checkpoint needs every map and stage; missing {missing}")
    (path / "networks").mkdir(parents=True, exist_ok=True)
    for (map_name, stage), state in networks.items():
        arrays = {
            k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in state.items()
        }
        np.savez(path / network_file(map_name, stage), **arrays)
    np.savez(path / "stacker.npz", **stacker_arrays)
    normative.save(path / "normative.npz", overwrite=overwrite)
    if calibration is not None:
        thickness_um, labels = calibration
        arrays = {
            "thickness_um": np.asarray(thickness_um, np.float32),
            "labels": np.asarray(labels, np.int64),
        }
        write_atomically(
            path / CALIBRATION_FILE, lambda file: np.savez_compressed(file, **arrays), overwrite=overwrite
        )
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "classes": list(CLASSES),
        "map_names": list(MAP_NAMES),
        "stage_classes": {"1": list(STAGE1_CLASSES), "2": list(STAGE2_CLASSES)},
        "stacking_features": list(stacking_features()),
        "network": {
            "arch": "vgg16",
            "width": float(width),
            "input_hw": [int(input_hw[0]), int(input_hw[1])],
            "head": "global average pool, dropout, linear",
            "dropout": float(dropout),
            "shared_trunk_blocks": int(shared_trunk_blocks),
        },
        "provenance": provenance,
    }
    tmp = path / ".checkpoint.json.tmp"
    tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True))
    os.replace(tmp, path / "checkpoint.json")
    return path


def read_checkpoint(path) -> Checkpoint:
    """Load a checkpoint directory; FileError/ValueError naming what is missing or wrong."""
    path = Path(path)
    meta_file = path / "checkpoint.json"
    if not meta_file.is_file():
        raise FileError(f"{path} is not a checkpoint directory: {meta_file.name} is missing")
    metadata = json.loads(meta_file.read_text())
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise ValueError(
            f"{meta_file} is format {metadata.get('format')!r} version {metadata.get('version')!r}; "
            f"this converter reads {FORMAT!r} version {VERSION}"
        )
    if tuple(metadata["classes"]) != CLASSES or tuple(metadata["map_names"]) != MAP_NAMES:
        raise ValueError(
            f"{meta_file}: classes {metadata['classes']} / maps {metadata['map_names']} differ from "
            f"this SDK's {list(CLASSES)} / {list(MAP_NAMES)}"
        )
    networks = {}
    for map_name in MAP_NAMES:
        for stage in STAGES:
            file = path / network_file(map_name, stage)
            if not file.is_file():
                raise FileError(f"checkpoint {path} lacks {file.relative_to(path)}")
            with np.load(file, allow_pickle=False) as z:
                networks[(map_name, stage)] = {k: z[k] for k in z.files}
    return Checkpoint(
        path,
        metadata,
        networks,
        SVMStacker.load(path / "stacker.npz"),
        Normative.load(path / "normative.npz"),
        _calibration(path / CALIBRATION_FILE),
    )


def _calibration(file: Path) -> np.ndarray | None:
    """calibration.npz's thickness maps (n, 2, MAP_SIZE_PX, MAP_SIZE_PX) float32, or None without it."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            thickness = z["thickness_um"] if "thickness_um" in z.files else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{file} is not an .npz of plain arrays ({e})") from None
    if thickness is None or thickness.ndim != 4 or thickness.shape[1:] != (2, MAP_SIZE_PX, MAP_SIZE_PX):
        found = None if thickness is None else thickness.shape
        raise ValueError(f"{file}: thickness_um is {found}, expected (n, 2, {MAP_SIZE_PX}, {MAP_SIZE_PX})")
    return thickness.astype(np.float32)
