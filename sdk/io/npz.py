"""NumPy volume files: ``.npz`` with voxels and metadata, ``.npy`` with voxels only.

An OCT ``.npz`` holds four plain arrays (no pickled objects):

* ``data``: (n_bscans, depth, n_ascans) voxels, uint8, uint16, float32 or float64;
* ``spacing_mm``: float64 (3,), (bscan, axial, ascan) sample spacing in mm;
* ``laterality``: 0-d string, "OD" or "OS";
* ``protocol``: 0-d string, "wide", "disc" or "macula".

A ``.npy`` file holds the ``data`` array alone, so spacing and laterality must be passed to
:func:`sdk.read_volume`.

The reader does not use ``np.load``: it parses each array's ``.npy`` header itself (a dict literal
of descr, fortran_order and shape, at most ``NPY_MAX_HEADER_BYTES`` as numpy allows), checks the
declared size against the cap and against the bytes the file or zip member holds, and only then
allocates the array and reads into it. Archives must have one member per name, stored or deflated,
not encrypted; zip checks each member's CRC as it is read.
"""

from __future__ import annotations

import ast
import struct
import zipfile
from pathlib import Path

import numpy as np

from sdk.errors import OCTError, UnsupportedFormat
from sdk.files import write_atomically
from sdk.io.source import VolumeFile, describe_bytes
from sdk.volume import OCTVolume

METADATA_KEYS = ("spacing_mm", "laterality", "protocol")
NPY_MAGIC = b"\x93NUMPY"
NPY_MAX_HEADER_BYTES = 10_000  # numpy's own limit on a header it parses (np.lib.format)
METADATA_MAX_BYTES = 64 * 2**10  # a metadata member is a few hundred bytes
_LENGTH_FORMATS = {1: "<H", 2: "<I", 3: "<I"}  # header length field of .npy format versions 1-3
_COMPRESSION_NAMES = {
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "LZMA",
    getattr(zipfile, "ZIP_ZSTANDARD", 93): "Zstandard",
}
_CHUNK_BYTES = 1 << 16  # read and inflated per step: a small, fixed addition to the peak


def read_npz(source: VolumeFile) -> tuple[np.ndarray, dict]:
    """Read an OCT ``.npz``: returns (data (n_bscans, depth, n_ascans), metadata found in the file).

    A metadata key missing from the file is left out of the dict (the caller may supply it); a
    missing ``data`` array, a pickled object, a repeated member name, an encrypted or
    bzip2/LZMA-compressed member or a damaged archive raises UnsupportedFormat.
    """
    path = source.path
    try:
        archive = zipfile.ZipFile(source.file)
    except Exception as error:  # noqa: BLE001 - zipfile fails in many ways on damaged files
        raise _damaged(path, error) from error
    with archive:
        members = _members(archive, path)
        if "data" not in members:
            raise UnsupportedFormat(
                f"{path} has no 'data' array (it holds {', '.join(sorted(members)) or 'nothing'}): "
                "an OCT .npz holds data, spacing_mm, laterality and protocol"
            )
        data = _read_member(archive, members["data"], source, source.max_voxel_bytes)
        metadata = {
            key: _read_member(archive, members[key], source, METADATA_MAX_BYTES).tolist()
            for key in METADATA_KEYS
            if key in members
        }
    provenance = {key: f"'{key}' array" for key in metadata}
    return data, {**metadata, "provenance": {**provenance, "compression": _compression(members)}}


def read_npy(source: VolumeFile) -> tuple[np.ndarray, dict]:
    """Read a ``.npy`` array (n_bscans, depth, n_ascans); it records no metadata, so the dict is empty."""
    file = source.file
    file.seek(0)
    dtype, shape, fortran_order, header_bytes = _parse_header(file.read, source, "the .npy header")
    n_bytes = source.check_voxels(shape, dtype.itemsize, "its .npy header")
    if header_bytes + n_bytes != source.size_bytes:
        raise UnsupportedFormat(
            f"{source.path}: its .npy header declares {_declared(shape, dtype)} = {n_bytes} bytes of data "
            f"but the file holds {source.size_bytes - header_bytes}: it is truncated or damaged"
        )
    return _read_array(file.readinto, dtype, shape, fortran_order, source, "the .npy data"), {
        "provenance": {"compression": "none"}
    }


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
    # allow_pickle=True is numpy's default, named so that **arrays cannot be taken for it
    return write_atomically(
        path, lambda file: np.savez(file, allow_pickle=True, **arrays), overwrite=overwrite
    )


def _members(archive: zipfile.ZipFile, path) -> dict[str, zipfile.ZipInfo]:
    """{array name: member}; UnsupportedFormat for a repeated name or a member the SDK will not open."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        if key in members:
            raise UnsupportedFormat(
                f"{path} holds the array '{key}' twice (zip members {members[key].filename!r} and "
                f"{info.filename!r}): the archive is damaged or was tampered with, so which one is the "
                "scan cannot be known"
            )
        members[key] = info
    for key in ("data", *METADATA_KEYS):
        member = members.get(key)
        if member is None:
            continue
        if member.flag_bits & 0x1:
            raise UnsupportedFormat(
                f"{path}: its member {member.filename!r} is encrypted; write it unencrypted"
            )
        if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            method = _COMPRESSION_NAMES.get(member.compress_type, f"method {member.compress_type}")
            raise UnsupportedFormat(
                f"{path}: its member {member.filename!r} is compressed with {method}; an OCT .npz is "
                "stored or deflated (np.savez or np.savez_compressed)"
            )
    return members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: VolumeFile, max_bytes: int):
    """The array in one archive member; its header's size is checked against ``max_bytes`` and the zip
    directory before anything past the header is inflated (zip never inflates past the member's size)."""
    what = f"member {info.filename!r}"
    try:
        with archive.open(info) as member:
            dtype, shape, fortran_order, header_bytes = _parse_header(
                member.read, source, f"the {what} header"
            )
            n_bytes = source.check_voxels(shape, dtype.itemsize, f"its {what}")
            if n_bytes > max_bytes:
                raise UnsupportedFormat(
                    f"{source.path}: its {what} declares {_declared(shape, dtype)} = "
                    f"{describe_bytes(n_bytes)}; "
                    f"a metadata array is at most {describe_bytes(max_bytes)}"
                )
            if header_bytes + n_bytes != info.file_size:
                raise UnsupportedFormat(
                    f"{source.path}: its {what} declares {_declared(shape, dtype)} = {n_bytes} bytes but "
                    f"the zip directory says {info.file_size - header_bytes}: the archive is damaged"
                )
            # typeshed types ZipFile.open as IO[bytes]; reading, it returns a ZipExtFile, which has readinto
            readinto = member.readinto  # type: ignore[attr-defined]
            array = _read_array(readinto, dtype, shape, fortran_order, source, f"the {what} data")
            if member.read(1):  # also makes zipfile check the member's CRC
                raise UnsupportedFormat(
                    f"{source.path}: its {what} holds more bytes than its header declares"
                )
    except OCTError:
        raise
    except Exception as error:  # noqa: BLE001 - bad CRC, bad deflate stream, truncated member
        raise _damaged(source.path, error) from error
    return array


def _parse_header(read, source: VolumeFile, what: str) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """(dtype, shape, fortran_order, header length in bytes) of a ``.npy`` stream at its start."""
    path = source.path
    prefix = read(len(NPY_MAGIC) + 2)
    if len(prefix) < len(NPY_MAGIC) + 2 or not prefix.startswith(NPY_MAGIC):
        raise UnsupportedFormat(f"{path}: {what} does not start with the .npy magic: not a NumPy array")
    major = prefix[len(NPY_MAGIC)]
    if major not in _LENGTH_FORMATS:
        raise UnsupportedFormat(f"{path}: {what} is .npy format version {major}; versions 1 to 3 are read")
    length_format = _LENGTH_FORMATS[major]
    length_bytes = read(struct.calcsize(length_format))
    if len(length_bytes) < struct.calcsize(length_format):
        raise UnsupportedFormat(f"{path}: {what} is truncated")
    (header_length,) = struct.unpack(length_format, length_bytes)
    if header_length > NPY_MAX_HEADER_BYTES:
        raise UnsupportedFormat(
            f"{path}: {what} is {header_length} bytes long; a .npy header is at most {NPY_MAX_HEADER_BYTES}"
        )
    text = read(header_length)
    if len(text) < header_length:
        raise UnsupportedFormat(f"{path}: {what} is truncated")
    try:
        header = ast.literal_eval(text.decode("utf-8" if major == 3 else "latin-1"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise UnsupportedFormat(
            f"{path}: {what} is not a dict of descr, fortran_order and shape: the file is damaged"
        )
    dtype, shape, fortran_order = (
        _dtype(header["descr"], path, what),
        header["shape"],
        header["fortran_order"],
    )
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise UnsupportedFormat(f"{path}: {what} gives the shape {shape!r}, not a tuple of sizes")
    if not isinstance(fortran_order, bool):
        raise UnsupportedFormat(f"{path}: {what} gives fortran_order {fortran_order!r}, not True or False")
    return dtype, shape, fortran_order, len(prefix) + len(length_bytes) + header_length


def _dtype(descr, path, what: str) -> np.dtype:
    """The dtype a header's descr names: plain numbers or strings only (no objects, no records)."""
    try:
        dtype = np.dtype(descr) if isinstance(descr, str) else None
    except (TypeError, ValueError):
        dtype = None
    if (
        dtype is None
        or dtype.hasobject
        or dtype.fields is not None
        or dtype.subdtype is not None
        or (dtype.kind not in "biufUS" or dtype.itemsize == 0)
    ):
        raise UnsupportedFormat(
            f"{path}: {what} declares the type {descr!r}; an OCT .npz holds plain arrays of numbers or "
            "strings (no pickled objects, no records)"
        )
    return dtype


def _read_array(readinto, dtype: np.dtype, shape, fortran_order: bool, source: VolumeFile, what: str):
    """Allocate the declared array (already checked against the cap) and fill it from ``readinto``."""
    array = np.empty(shape[::-1] if fortran_order else shape, dtype=dtype)
    buffer = array.reshape(-1).view(np.uint8).data  # a memoryview of its bytes
    filled = 0
    while filled < len(buffer):
        n_read = readinto(buffer[filled : filled + _CHUNK_BYTES])
        if not n_read:
            raise UnsupportedFormat(
                f"{source.path}: {what} is truncated: {filled} of {len(buffer)} bytes are present"
            )
        filled += n_read
    array = array.T if fortran_order else array
    if dtype.isnative:
        return array
    if dtype.kind == "U":  # a metadata string
        return array.astype(dtype.newbyteorder("="))
    return array.byteswap(inplace=True).view(dtype.newbyteorder("="))  # in place: no second copy


def _compression(members: dict[str, zipfile.ZipInfo]) -> str:
    info = members["data"]
    return "lossless (deflate)" if info.compress_type == zipfile.ZIP_DEFLATED else "none"


def _declared(shape, dtype: np.dtype) -> str:
    return f"{' x '.join(map(str, shape)) or 'a scalar'} {dtype}"


def _damaged(path, error: Exception) -> UnsupportedFormat:
    return UnsupportedFormat(
        f"{path} is not a readable .npz archive of plain arrays: it is damaged or truncated "
        f"({type(error).__name__}: {error})"
    )
