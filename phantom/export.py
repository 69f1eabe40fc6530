"""Save phantom eyes as files a user's tools read: the volume as DICOM or .npz, the truth beside it.

    python -m phantom.export FI 3 eye.dcm [--laterality OS] [--protocol wide] [--shape 128 496 512]

writes ``eye.dcm`` (DICOM Ophthalmic Tomography, read back by ``sdk.read_volume``) and
``eye.truth.npz``, the exact ground truth as plain arrays (no pickle):

==================  ==========================  ==================================================
key                 shape, dtype                meaning
==================  ==========================  ==================================================
format_version      (), int64                   TRUTH_FORMAT_VERSION
label               (), str                     class: normal, FI, GE, MY or SS
surface_names       (4,), str                   ILM, RNFL_GCL, IPL_INL, BM
surfaces_px         (4, n_bscans, n_ascans) f8  axial position of each surface in px (a boundary
                                                at z lies between voxels z-1 and z); all but the
                                                ILM are NaN inside the disc
disc_center_mm      (2,), f8                    (y, x) en-face mm of the volume, from its top-left
fovea_center_mm     (2,), f8                    (y, x) en-face mm (may lie outside a disc cube)
bmo_semi_axes_mm    (2,), f8                    (y, x) semi-axes of Bruch's-membrane opening
disc_mask           (n_bscans, n_ascans) bool   A-scans inside Bruch's-membrane opening
rnfl_thickness_um   (n_bscans, n_ascans) f8     ILM to RNFL/GCL, NaN inside the disc
gcc_thickness_um    (n_bscans, n_ascans) f8     ILM to IPL/INL, NaN inside the disc
==================  ==========================  ==================================================
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from phantom.eye import DEFAULT_SHAPE, PROTOCOL_EXTENT_MM, TRUTH_SURFACES, Eye, Truth, make_eye
from phantom.params import KINDS
from sdk.errors import FileError, OCTError, UnsupportedFormat
from sdk.files import write_atomically
from sdk.io import write_dicom, write_npz

TRUTH_FORMAT_VERSION = 1
TRUTH_SUFFIX = ".truth.npz"
TRUTH_KEYS = (
    "format_version",
    "label",
    "surface_names",
    "surfaces_px",
    "disc_center_mm",
    "fovea_center_mm",
    "bmo_semi_axes_mm",
    "disc_mask",
    "rnfl_thickness_um",
    "gcc_thickness_um",
)
_WRITERS = {".dcm": write_dicom, ".npz": write_npz}


def truth_path(path) -> Path:
    """Where the truth of the volume file ``path`` lies: ``<stem>.truth.npz`` in the same folder."""
    path = Path(path)
    return path.with_name(path.stem + TRUTH_SUFFIX)


def save_eye(eye: Eye, path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``eye.volume`` to ``path`` (.dcm: DICOM Ophthalmic Tomography, .npz: sdk's npz layout)
    and ``eye.truth`` to ``<stem>.truth.npz`` beside it. Returns (volume path, truth path).

    Nothing is written if either file exists, unless ``overwrite``: FileError. Each file is written
    atomically. Raises UnsupportedFormat for another suffix.
    """
    path = Path(path)
    writer = _WRITERS.get(path.suffix.lower())
    if writer is None or path.name.endswith(TRUTH_SUFFIX):
        raise UnsupportedFormat(
            f"{path}: phantom volumes are written as .dcm (DICOM) or .npz, not {TRUTH_SUFFIX}"
        )
    truth_file = truth_path(path)
    existing = [str(p) for p in (path, truth_file) if p.exists()]
    if existing and not overwrite:
        raise FileError(
            f"not overwriting {' and '.join(existing)}: pass overwrite=True (--overwrite) to replace"
        )
    writer(eye.volume, path, overwrite=overwrite)
    arrays = _truth_arrays(eye.truth)
    write_atomically(truth_file, lambda file: np.savez(file, **arrays), overwrite=overwrite)
    return path, truth_file


def load_truth(path) -> Truth:
    """Read the truth written by :func:`save_eye`, given its ``.truth.npz`` or the volume file's path.

    Raises FileError if the file is missing, UnsupportedFormat if it is not a phantom truth file.
    """
    path = Path(path)
    if not path.name.endswith(TRUTH_SUFFIX):
        path = truth_path(path)
    if not path.is_file():
        raise FileError(f"{path}: no such truth file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError) as error:
        raise UnsupportedFormat(f"{path} is not a readable .npz of plain arrays: {error}") from error
    missing = [key for key in TRUTH_KEYS if key not in arrays]
    if missing:
        raise UnsupportedFormat(f"{path} is not a phantom truth file: it lacks {', '.join(missing)}")
    if int(arrays["format_version"]) != TRUTH_FORMAT_VERSION:
        raise UnsupportedFormat(
            f"{path} has truth format {int(arrays['format_version'])}; this phantom reads "
            f"format {TRUTH_FORMAT_VERSION}"
        )
    names = [str(name) for name in arrays["surface_names"]]
    return Truth(
        label=str(arrays["label"]),
        surfaces_px=dict(zip(names, arrays["surfaces_px"], strict=True)),
        disc_center_mm=_pair(arrays["disc_center_mm"]),
        fovea_center_mm=_pair(arrays["fovea_center_mm"]),
        bmo_semi_axes_mm=_pair(arrays["bmo_semi_axes_mm"]),
        disc_mask=arrays["disc_mask"],
        rnfl_thickness_um=arrays["rnfl_thickness_um"],
        gcc_thickness_um=arrays["gcc_thickness_um"],
    )


def _truth_arrays(truth: Truth) -> dict[str, np.ndarray]:
    return {
        "format_version": np.int64(TRUTH_FORMAT_VERSION),
        "label": np.asarray(truth.label),
        "surface_names": np.asarray(TRUTH_SURFACES),
        "surfaces_px": np.stack([truth.surfaces_px[name] for name in TRUTH_SURFACES]),
        "disc_center_mm": np.asarray(truth.disc_center_mm, dtype=np.float64),
        "fovea_center_mm": np.asarray(truth.fovea_center_mm, dtype=np.float64),
        "bmo_semi_axes_mm": np.asarray(truth.bmo_semi_axes_mm, dtype=np.float64),
        "disc_mask": np.asarray(truth.disc_mask, dtype=bool),
        "rnfl_thickness_um": truth.rnfl_thickness_um,
        "gcc_thickness_um": truth.gcc_thickness_um,
    }


def _pair(values) -> tuple[float, float]:
    return float(values[0]), float(values[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phantom.export", description="Write one phantom eye as a volume file and its truth."
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("seed", type=int)
    parser.add_argument("out", type=Path, help="volume file to write: .dcm (DICOM) or .npz")
    parser.add_argument("--laterality", default="OD", choices=("OD", "OS"))
    parser.add_argument("--protocol", default="wide", choices=tuple(PROTOCOL_EXTENT_MM))
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("NB", "DEPTH", "NA"),
        default=DEFAULT_SHAPE,
        help="samples (n_bscans, depth, n_ascans), default %(default)s",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    if args.out.suffix.lower() not in _WRITERS:
        parser.error(f"{args.out}: write a .dcm (DICOM) or .npz file")
    try:
        eye = make_eye(args.kind, args.seed, args.laterality, args.protocol, args.shape)
        for path in save_eye(eye, args.out, overwrite=args.overwrite):
            print(path)
    except OCTError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
