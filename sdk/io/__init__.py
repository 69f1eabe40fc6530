"""Read OCT volumes from files: :func:`read_volume`, a registry of readers, and the writers.

Formats read (``supported_formats()`` lists them):

* ``dicom``: DICOM Ophthalmic Tomography Image Storage, ``.dcm``/``.dicom`` or any file with the
  'DICM' marker at byte 128 (needs the ``dicom`` extra, pydicom); see :mod:`sdk.io.dicom`;
* ``npz``: ``.npz`` with data, spacing_mm, laterality and protocol; ``npy``: ``.npy`` voxels only;
  see :mod:`sdk.io.npz`.

A file is matched first by the sniffers of the registered formats (in registration order), which
look at its first ``SNIFF_BYTES`` bytes, then by its suffix. Vendor formats join through
:func:`register_reader`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sdk.errors import FileError, InvalidVolume, OCTError, UnsupportedFormat
from sdk.io.dicom import DICOM_SUFFIXES, is_dicom, read_dicom, write_dicom
from sdk.io.npz import NPY_MAGIC, read_npy, read_npz, write_npz
from sdk.volume import OCTVolume

SNIFF_BYTES = 132  # enough for the DICOM preamble (128 bytes) and its 'DICM' marker

Reader = Callable[[Path], tuple[np.ndarray, dict]]


class _Format(NamedTuple):
    name: str
    suffixes: tuple[str, ...]
    reader: Reader
    sniff: Callable[[bytes], bool] | None


_FORMATS: dict[str, _Format] = {}


def register_reader(
    name: str, suffixes, reader: Reader, sniff: Callable[[bytes], bool] | None = None
) -> None:
    """Add (or replace) a file format that :func:`read_volume` can read.

    Parameters
    ----------
    name : short format name shown in error messages, e.g. "dicom".
    suffixes : file suffixes with the dot, e.g. (".dcm",); matched case-insensitively.
    reader : ``reader(path) -> (data, metadata)`` with data (n_bscans, depth, n_ascans) and a dict
        holding whichever of "spacing_mm" ((bscan, axial, ascan) in mm), "laterality" and
        "protocol" the file records. It raises sdk.errors exceptions for files it cannot use.
    sniff : optional ``sniff(head) -> bool`` on the first ``SNIFF_BYTES`` bytes of a file; a
        match wins over suffixes, so files without (or with a wrong) suffix are recognised.
    """
    _FORMATS[name] = _Format(name, tuple(s.lower() for s in suffixes), reader, sniff)


def supported_formats() -> list[str]:
    """Names of the registered formats with their suffixes, e.g. ["dicom (.dcm, .dicom)", ...]."""
    return [f"{f.name} ({', '.join(f.suffixes)})" for f in _FORMATS.values()]


def read_volume(path, *, spacing_mm=None, laterality=None, protocol=None) -> OCTVolume:
    """Read one OCT volume file into an :class:`~sdk.OCTVolume`.

    Parameters
    ----------
    path : file to read; its format is found from its first bytes, then from its suffix.
    spacing_mm : (bscan, axial, ascan) sample spacing in mm; overrides the file's, or supplies it
        when the file has none (a .npy file).
    laterality : "OD" or "OS" (R/L accepted); overrides or supplies the file's.
    protocol : "wide", "disc" or "macula"; overrides the file's. A file that records none reads
        as "wide".

    Raises FileError (missing path, a folder, unreadable file), UnsupportedFormat (unknown or
    damaged format) or InvalidVolume (unusable voxels, metadata missing from file and arguments).
    """
    path = Path(path)
    if not path.exists():
        raise FileError(f"{path}: no such file")
    if path.is_dir():
        raise FileError(f"{path} is a folder: give the path of one volume file")
    try:
        with open(path, "rb") as file:
            head = file.read(SNIFF_BYTES)
        data, found = _format_of(path, head).reader(path)
    except OCTError:
        raise
    except OSError as error:
        raise FileError(f"cannot read {path}: {error.strerror or error}") from error

    given = {"spacing_mm": spacing_mm, "laterality": laterality, "protocol": protocol}
    metadata = {key: found.get(key) if value is None else value for key, value in given.items()}
    missing = [key for key in ("spacing_mm", "laterality") if metadata[key] is None]
    if missing:
        raise InvalidVolume(
            f"{path} does not record {' or '.join(missing)}: pass the missing values to read_volume, e.g. "
            "read_volume(path, spacing_mm=(bscan, axial, ascan) in mm, laterality='OD' or 'OS')"
        )
    return OCTVolume(data, metadata["spacing_mm"], metadata["laterality"], metadata["protocol"] or "wide")


def _format_of(path: Path, head: bytes) -> _Format:
    for fmt in _FORMATS.values():
        if fmt.sniff is not None and fmt.sniff(head):
            return fmt
    for fmt in _FORMATS.values():
        if path.suffix.lower() in fmt.suffixes:
            return fmt
    raise UnsupportedFormat(
        f"{path} is not in a format the SDK reads; supported: {'; '.join(supported_formats())}"
    )


register_reader("dicom", DICOM_SUFFIXES, read_dicom, sniff=is_dicom)
register_reader("npz", (".npz",), read_npz)
register_reader("npy", (".npy",), read_npy, sniff=lambda head: head.startswith(NPY_MAGIC))

__all__ = ["read_volume", "register_reader", "supported_formats", "write_dicom", "write_npz", "SNIFF_BYTES"]
