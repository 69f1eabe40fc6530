"""NumPy volume files: ``.npz`` with voxels and metadata, ``.npy`` with voxels only.

An OCT ``.npz`` holds four plain arrays (no pickled objects; read with ``allow_pickle=False``):

* ``data``: (n_bscans, depth, n_ascans) voxels, uint8, uint16, float32 or float64;
* ``spacing_mm``: float64 (3,), (bscan, axial, ascan) sample spacing in mm;
* ``laterality``: 0-d string, "OD" or "OS";
* ``protocol``: 0-d string, "wide", "disc" or "macula".

A ``.npy`` file holds the ``data`` array alone, so spacing and laterality must be passed to
:func:`sdk.read_volume`.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from sdk.errors import UnsupportedFormat
from sdk.files import write_atomically
from sdk.volume import OCTVolume

METADATA_KEYS = ("spacing_mm", "laterality", "protocol")
NPY_MAGIC = b"\x93NUMPY"
# What np.load raises on a damaged file: bad zip member, short read, bad header or compression,
# pickled objects refused. OSError is left to the caller, who reports it as a file error.
_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, ValueError)


def read_npz(path: Path) -> tuple[np.ndarray, dict]:
    """Read an OCT ``.npz``: returns (data (n_bscans, depth, n_ascans), metadata found in the file).

    A metadata key missing from the file is left out of the dict (the caller may supply it);
    a missing ``data`` array, a pickled object or a damaged archive raises UnsupportedFormat.
    """
    with open(path, "rb") as file:
        if not zipfile.is_zipfile(file):
            raise UnsupportedFormat(
                f"{path} is not an .npz archive: it is not a zip file, or it is truncated"
            )
        file.seek(0)
        try:
            with np.load(file, allow_pickle=False) as archive:
                if "data" not in archive.files:
                    raise UnsupportedFormat(
                        f"{path} has no 'data' array (it holds {', '.join(archive.files) or 'nothing'}): "
                        "an OCT .npz holds data, spacing_mm, laterality and protocol"
                    )
                data = archive["data"]
                metadata = {key: archive[key].tolist() for key in METADATA_KEYS if key in archive.files}
        except _DAMAGE as error:
            raise UnsupportedFormat(
                f"{path} is not a readable .npz archive of plain arrays: {error}"
            ) from error
    return data, metadata


def read_npy(path: Path) -> tuple[np.ndarray, dict]:
    """Read a ``.npy`` array (n_bscans, depth, n_ascans); it records no metadata, so the dict is empty."""
    with open(path, "rb") as file:
        try:
            return np.load(file, allow_pickle=False), {}
        except _DAMAGE as error:
            raise UnsupportedFormat(
                f"{path} is not a readable .npy array of plain numbers: {error}"
            ) from error


def write_npz(volume: OCTVolume, path, *, overwrite: bool = False) -> Path:
    """Write ``volume`` to an OCT ``.npz`` (layout in the module docstring), atomically.

    The archive is uncompressed, so the voxels round-trip exactly and read fast. An existing file is
    replaced only with ``overwrite=True`` (else FileError). Returns the path written.
    """
    arrays = {
        "data": volume.data,
        "spacing_mm": np.asarray(volume.spacing_mm, dtype=np.float64),
        "laterality": np.asarray(volume.laterality),
        "protocol": np.asarray(volume.protocol),
    }
    return write_atomically(path, lambda file: np.savez(file, **arrays), overwrite=overwrite)
