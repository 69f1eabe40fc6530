"""Read OCT volumes from files: :func:`read_volume`, a registry of readers, and the writers.

Formats read (``supported_formats()`` lists them; docs/READERS.md says what is read from each):

* ``dicom``: DICOM Ophthalmic Tomography Image Storage, ``.dcm``/``.dicom`` or any file with the
  'DICM' marker at byte 128 (needs the ``dicom`` extra, pydicom); see :mod:`sdk.io.dicom`;
* ``topcon``: Topcon ``.fda``/``.fds`` (FOCT magic; JPEG 2000 B-scans need the ``topcon`` extra,
  Pillow); see :mod:`sdk.io.topcon`;
* ``heidelberg-vol`` and ``heidelberg-e2e``: Heidelberg ``.vol`` (HSF-OCT magic) and ``.e2e``
  (CMDb magic); raster volumes need the ``heidelberg`` extra, eyepy; see :mod:`sdk.io.heidelberg`;
* ``npz``: ``.npz`` with data, spacing_mm, laterality and protocol; ``npy``: ``.npy`` voxels only;
  see :mod:`sdk.io.npz`.

A file is matched first by the sniffers of the registered formats (in registration order), which
look at its first ``SNIFF_BYTES`` bytes, then by its suffix. Vendor formats join through
:func:`register_reader`. Every file is opened through :func:`sdk.io.source.open_volume_file`
(regular files only) and every reader checks declared sizes against ``max_voxel_bytes`` before
allocating; every failure is an ``sdk.errors`` exception that names the file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from sdk.errors import FileError, InvalidVolume, OCTError, UnsupportedFormat
from sdk.io.dicom import DICOM_SUFFIXES, is_dicom, read_dicom, write_dicom
from sdk.io.heidelberg import E2E_SUFFIXES, VOL_SUFFIXES, is_e2e, is_vol, read_e2e, read_vol
from sdk.io.npz import NPY_MAGIC, read_npy, read_npz, write_npz
from sdk.io.scans import protocol_from_field, unsupported_scan
from sdk.io.source import DEFAULT_MAX_VOXEL_BYTES, VolumeFile, open_volume_file
from sdk.io.topcon import TOPCON_SUFFIXES, is_topcon, read_topcon
from sdk.volume import CALLER, PROVENANCE_KEYS, OCTVolume

SNIFF_BYTES = 132  # enough for the DICOM preamble (128 bytes) and its 'DICM' marker
FROM_FILE = "the file"  # provenance of a value a reader found without saying where

Reader = Callable[[VolumeFile], tuple[np.ndarray, dict]]


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
    reader : ``reader(source) -> (data, metadata)``. ``source`` is an
        :class:`~sdk.io.source.VolumeFile`: a path-like object (so a reader written for a path
        works) with ``.file`` (reads bounded by the file's size), ``.size_bytes`` and
        ``.check_voxels(shape, itemsize, what)`` for the cap. ``data`` is (n_bscans, depth,
        n_ascans); the dict holds whichever of "spacing_mm" ((bscan, axial, ascan) in mm),
        "laterality" and "protocol" the file records, and optionally "provenance": {name: where in
        the file it came from, "compression": ...}. It raises sdk.errors exceptions for files it
        cannot use.
    sniff : optional ``sniff(head) -> bool`` on the first ``SNIFF_BYTES`` bytes of a file; a
        match wins over suffixes, so files without (or with a wrong) suffix are recognised.
    """
    _FORMATS[name] = _Format(name, tuple(s.lower() for s in suffixes), reader, sniff)


def supported_formats() -> list[str]:
    """Names of the registered formats with their suffixes, e.g. ["dicom (.dcm, .dicom)", ...]."""
    return [f"{f.name} ({', '.join(f.suffixes)})" for f in _FORMATS.values()]


def read_volume(
    path, *, spacing_mm=None, laterality=None, protocol=None, max_voxel_bytes: int = DEFAULT_MAX_VOXEL_BYTES
) -> OCTVolume:
    """Read one OCT volume file into an :class:`~sdk.OCTVolume`.

    Parameters
    ----------
    path : file to read; its format is found from its first bytes, then from its suffix.
    spacing_mm : (bscan, axial, ascan) sample spacing in mm; overrides the file's, or supplies it
        when the file has none (a .npy file).
    laterality : "OD" or "OS" (R/L accepted); overrides or supplies the file's.
    protocol : "wide", "disc" or "macula"; overrides the file's. A file that records none is
        "wide" when its field of view holds both the disc and the macula maps; a smaller cube
        needs the argument (its field cannot tell a disc cube from a macular one).
    max_voxel_bytes : the most decoded voxel bytes a file may declare (default 2 GiB); a file
        declaring more is refused before anything is allocated or decompressed.

    The volume's ``provenance`` says where each value came from (a tag or chunk, the field of
    view, or "caller"), the file, its format and its compression. Raises FileError (missing
    path, a folder, a FIFO or device, unreadable file), UnsupportedFormat (unknown or damaged
    format), UnsupportedScan (a line, circle, radial or cross scan, or one B-scan) or
    InvalidVolume (unusable voxels, over the cap, metadata missing from file and arguments).
    """
    with open_volume_file(path, max_voxel_bytes) as source:
        fmt = _format_of(source)
        try:
            data, found = fmt.reader(source)
        except OCTError:
            raise
        except OSError as error:
            raise FileError(f"cannot read {source.path}: {error.strerror or error}") from error
    path = source.path
    if np.ndim(data) == 3 and np.shape(data)[0] == 1:
        raise unsupported_scan(
            path, "single B-scan", shape=np.shape(data), laterality=found.get("laterality")
        )
    given = {"spacing_mm": spacing_mm, "laterality": laterality, "protocol": protocol}
    provenance = {"file": str(path), "format": fmt.name, **found.get("provenance", {})}
    metadata: dict[str, Any] = {}  # spacing_mm, laterality, protocol: as given, else as read
    for key, value in given.items():
        metadata[key] = found.get(key) if value is None else value
        if value is not None:
            provenance[key] = CALLER
        elif found.get(key) is not None:
            provenance.setdefault(key, FROM_FILE)
    missing = [key for key in ("spacing_mm", "laterality") if metadata[key] is None]
    if missing:
        raise InvalidVolume(
            f"{path} does not record {' or '.join(missing)}: pass the missing values to read_volume, e.g. "
            "read_volume(path, spacing_mm=(bscan, axial, ascan) in mm, laterality='OD' or 'OS')"
        )
    provenance = {key: provenance.get(key, CALLER) for key in PROVENANCE_KEYS} | provenance
    try:
        if metadata["protocol"] is None:
            metadata["protocol"], provenance["protocol"] = _protocol_from_field(data, metadata["spacing_mm"])
        return OCTVolume(
            data, metadata["spacing_mm"], metadata["laterality"], metadata["protocol"], provenance=provenance
        )
    except InvalidVolume as error:
        raise InvalidVolume(f"{path}: {error}") from None


def _protocol_from_field(data, spacing_mm) -> tuple[str, str]:
    """("wide", its provenance) from the field of view, or InvalidVolume asking for the protocol."""
    volume = OCTVolume(data, spacing_mm, "OD")  # validates shape and spacing before the field is used
    field_y_mm, _, field_x_mm = volume.extent_mm
    if protocol_from_field(volume.shape, volume.spacing_mm) is None:
        raise InvalidVolume(
            "the file does not record its scan protocol and its "
            f"{field_y_mm:.1f} x {field_x_mm:.1f} mm field "
            "could be a disc cube or a macular cube: pass protocol='disc' or protocol='macula' to read_volume"
        )
    return "wide", f"field of view {field_y_mm:.1f} x {field_x_mm:.1f} mm (B-scan x A-scan axis)"


def _format_of(source: VolumeFile) -> _Format:
    source.file.seek(0)
    head = source.file.read(SNIFF_BYTES)
    for fmt in _FORMATS.values():
        if fmt.sniff is not None and fmt.sniff(head):
            return fmt
    for fmt in _FORMATS.values():
        if source.path.suffix.lower() in fmt.suffixes:
            return fmt
    raise UnsupportedFormat(
        f"{source.path} is not in a format the SDK reads; supported: {'; '.join(supported_formats())}"
    )


register_reader("dicom", DICOM_SUFFIXES, read_dicom, sniff=is_dicom)
register_reader("topcon", TOPCON_SUFFIXES, read_topcon, sniff=is_topcon)
register_reader("heidelberg-vol", VOL_SUFFIXES, read_vol, sniff=is_vol)
register_reader("heidelberg-e2e", E2E_SUFFIXES, read_e2e, sniff=is_e2e)
register_reader("npz", (".npz",), read_npz)
register_reader("npy", (".npy",), read_npy, sniff=lambda head: head.startswith(NPY_MAGIC))

__all__ = [
    "read_volume",
    "register_reader",
    "supported_formats",
    "write_dicom",
    "write_npz",
    "SNIFF_BYTES",
    "DEFAULT_MAX_VOXEL_BYTES",
]
