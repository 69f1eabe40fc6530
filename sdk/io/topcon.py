"""Topcon ``.fda`` / ``.fds`` files (3D OCT-1000/2000, Maestro, Triton): our own reader.

The open reader (OCT-Converter) fails on numpy >= 2.3, so this one is written from the layouts in
../shared/real-oct/README.md and checked against the real files there (docs/READERS.md lists
every fact and where it was verified). All integers are little endian.

* Header: "FOCT", a 3-letter kind ("FDA" or "FDS"), two u32; then chunks
  ``u8 name length | name | u32 size | payload`` until a zero name length or the end of the file.
  Every chunk must lie inside the file; the chunks read below may appear only once.
* Voxels, from the chunks present (never from the suffix), in this order of preference:
  ``@IMG_SCAN_03`` (scan mode u8, width, height, bits per pixel, n_slices u32, format u8, size
  u32, then uint16 (n_slices, height, width)); ``@IMG_JPEG`` (scan mode u8, two u32, width,
  height, n_slices, u32, then per B-scan u32 size and a JPEG 2000 codestream, height x width
  8-bit, rows = depth from the top); ``@IMG_MOT_COMP_03`` (u8, width, height, bits per pixel,
  n_slices u32, format u8, four u32, size u32, then uint16 (n_slices, height, width)).
* Scan mode (per uocte): 0 line, 2 3-D raster cube, 3 radial, 7 seven-line, 11 five-line cross;
  only 2 is read. ``@CAPTURE_INFO_02`` byte 1 repeats it and must agree.
* Spacing: ``@PARAM_SCAN_04`` x_mm, y_mm, z_um as f64 from byte 12 (``@PARAM_SCAN_02``: from byte
  21); spacing_mm = (y_mm / n_slices, z_um / 1000, x_mm / width): the SDK's field of view is
  n * spacing (eyepy and OCT-Converter divide the field by n - 1 instead).
* Laterality: ``@CAPTURE_INFO_02`` (or ``@CAPTURE_INFO``) byte 0, 0 = right (OD), 1 = left (OS).
* Protocol, and which way the B-scans and A-scans run over the fundus: no open reader decodes
  them, so the protocol comes from the field of view or the caller, and the voxels keep the
  file's order (B-scan 0 first, A-scan 0 left).
"""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

import numpy as np

from sdk.errors import UnsupportedFormat
from sdk.io.jpeg import decode_image, j2k_is_lossy
from sdk.io.scans import unsupported_scan
from sdk.io.source import VolumeFile

TOPCON_SUFFIXES = (".fda", ".fds")
TOPCON_MAGIC = b"FOCT"
TOPCON_KINDS = (b"FDA", b"FDS")
HEADER_BYTES = 15  # FOCT, kind, two u32
SCAN_MODES = {0: "line", 2: "3-D raster", 3: "radial", 7: "seven-line", 11: "five-line cross"}
RASTER_MODE = 2
VOLUME_CHUNKS = ("@IMG_SCAN_03", "@IMG_JPEG", "@IMG_MOT_COMP_03")  # in order of preference
_SINGLE_CHUNKS = (*VOLUME_CHUNKS, "@PARAM_SCAN_04", "@PARAM_SCAN_02", "@CAPTURE_INFO_02", "@CAPTURE_INFO")
# struct layout and size of the raw voxel chunks' headers: mode, width, height, bits, n_slices, format,
# (@IMG_MOT_COMP_03: four u32 skipped), size
_RAW_HEADERS = {"@IMG_SCAN_03": ("<B4IBI", 22), "@IMG_MOT_COMP_03": ("<B4IB16xI", 38)}
_JPEG_HEADER = ("<B6I", 25)
_PARAM_OFFSETS = {"@PARAM_SCAN_04": 12, "@PARAM_SCAN_02": 21}
_LATERALITY_BYTES = {0: "OD", 1: "OS"}


class _Chunk(NamedTuple):
    offset: int  # of the payload in the file
    size: int


class _Volume(NamedTuple):
    chunk: str
    mode: int | None  # the scan mode the voxel chunk records, None for @IMG_MOT_COMP_03
    shape: tuple[int, int, int]  # (n_slices, height, width)


def is_topcon(head: bytes) -> bool:
    """True when a file starts with the Topcon "FOCT" magic."""
    return head.startswith(TOPCON_MAGIC)


def read_topcon(source: VolumeFile) -> tuple[np.ndarray, dict]:
    """Read a Topcon file: (data (n_bscans, depth, n_ascans), metadata found in the file).

    Raises UnsupportedFormat (damaged, truncated, no volume chunk, a header that disagrees with its
    payload), UnsupportedScan (not a 3-D raster cube, or a cube of one B-scan, with the spacing
    and eye it records) or InvalidVolume (more voxels than the cap).
    """
    path = source.path
    chunks = _chunks(source)
    name = next((name for name in VOLUME_CHUNKS if name in chunks), None)
    if name is None:
        raise UnsupportedFormat(
            f"{path} is a Topcon file without a volume (none of {', '.join(VOLUME_CHUNKS)}): "
            f"it holds {', '.join(chunks) or 'no chunks'}"
        )
    volume = _volume_header(source, name, chunks[name])
    mode = _scan_mode(source, chunks, volume)
    laterality, laterality_from = _laterality(source, chunks)
    spacing, spacing_from = _spacing_mm(source, chunks, volume.shape)
    if mode != RASTER_MODE or volume.shape[0] == 1:
        pattern = f"Topcon {SCAN_MODES.get(mode, f'scan mode {mode}')} scan"
        if mode == RASTER_MODE:
            pattern = "single B-scan (a Topcon 3-D raster cut to one B-scan)"
        single = None if spacing is None else (None, *spacing[1:])
        raise unsupported_scan(path, pattern, shape=volume.shape, spacing_mm=single, laterality=laterality)
    source.check_voxels(volume.shape, 1 if name == "@IMG_JPEG" else 2, f"its {name} chunk")
    if name == "@IMG_JPEG":
        data, compression = _jpeg_slices(source, chunks[name], volume.shape)
    else:
        data, compression = _raw_slices(source, name, chunks[name], volume.shape), "none"
    provenance = {"compression": compression, "voxels": name}
    if spacing_from is not None:  # None with the spacing only
        provenance["spacing_mm"] = spacing_from
    if laterality_from is not None:  # None with the laterality only
        provenance["laterality"] = laterality_from
    metadata = {"spacing_mm": spacing, "laterality": laterality, "provenance": provenance}
    return data, {key: value for key, value in metadata.items() if value is not None}


def _chunks(source: VolumeFile) -> dict[str, _Chunk]:
    """{name: chunk} of a Topcon file; the chunks read here may appear once, others are skipped."""
    path = source.path
    header = source.read_at(0, HEADER_BYTES, "the Topcon header")
    if not header.startswith(TOPCON_MAGIC) or header[4:7] not in TOPCON_KINDS:
        raise UnsupportedFormat(
            f"{path} is not a Topcon .fda/.fds file: it starts with {header[:7]!r}, not FOCT then FDA or FDS"
        )
    chunks: dict[str, _Chunk] = {}
    offset = HEADER_BYTES
    while offset < source.size_bytes:
        (name_bytes,) = source.read_at(offset, 1, "a chunk name length")
        if name_bytes == 0:
            break
        raw_name = source.read_at(offset + 1, name_bytes, "a chunk name")
        (size,) = struct.unpack(
            "<I", source.read_at(offset + 1 + name_bytes, 4, f"the size of chunk {raw_name!r}")
        )
        payload = offset + 5 + name_bytes
        if not (raw_name.isascii() and raw_name.startswith(b"@")) or payload + size > source.size_bytes:
            raise UnsupportedFormat(
                f"{path} is damaged or truncated: the chunk at byte {offset} "
                f"({raw_name[:40]!r}, {size} bytes) "
                f"does not fit in the file of {source.size_bytes} bytes"
            )
        name = raw_name.decode("ascii")
        if name in _SINGLE_CHUNKS and name in chunks:
            raise UnsupportedFormat(
                f"{path} holds the chunk {name} twice: the file is damaged, and which one is the scan "
                "cannot be known"
            )
        chunks.setdefault(name, _Chunk(payload, size))
        offset = payload + size
    return chunks


def _volume_header(source: VolumeFile, name: str, chunk: _Chunk) -> _Volume:
    """The voxel chunk's scan mode and (n_slices, height, width), checked against its size."""
    path = source.path
    layout, header_bytes = _JPEG_HEADER if name == "@IMG_JPEG" else _RAW_HEADERS[name]
    fields = struct.unpack(layout, source.read_at(chunk.offset, header_bytes, f"the {name} header"))
    if name == "@IMG_JPEG":
        mode, _, _, width, height, n_slices, _ = fields
    else:
        mode, width, height, bits, n_slices, _, size = fields
        expected = width * height * n_slices * 2
        if bits != 16 or size != expected or chunk.size != header_bytes + size:
            raise UnsupportedFormat(
                f"{path}: its {name} chunk declares {n_slices} x {height} x {width} samples of {bits} bits "
                f"({expected} bytes) but says {size} bytes and holds {chunk.size - header_bytes}: the "
                "header disagrees with the voxels"
            )
        mode = mode if name == "@IMG_SCAN_03" else None
    if min(width, height, n_slices) < 1:
        raise UnsupportedFormat(f"{path}: its {name} chunk declares {n_slices} x {height} x {width} samples")
    return _Volume(name, mode, (n_slices, height, width))


def _scan_mode(source: VolumeFile, chunks: dict[str, _Chunk], volume: _Volume) -> int:
    """The scan mode from the voxel chunk and @CAPTURE_INFO_02 byte 1, which must agree."""
    modes = {} if volume.mode is None else {volume.chunk: volume.mode}
    if "@CAPTURE_INFO_02" in chunks and chunks["@CAPTURE_INFO_02"].size >= 2:
        modes["@CAPTURE_INFO_02"] = source.read_at(chunks["@CAPTURE_INFO_02"].offset + 1, 1, "the scan mode")[
            0
        ]
    if len(set(modes.values())) > 1:
        told = ", ".join(f"{name} says {mode}" for name, mode in modes.items())
        raise UnsupportedFormat(f"{source.path} records two scan modes ({told}): the file is damaged")
    if not modes:
        raise UnsupportedFormat(f"{source.path} does not record its scan mode (no @CAPTURE_INFO_02)")
    return next(iter(modes.values()))


def _laterality(source: VolumeFile, chunks: dict[str, _Chunk]) -> tuple[str | None, str | None]:
    """("OD"/"OS", chunk) from @CAPTURE_INFO_02 and @CAPTURE_INFO byte 0, which must agree."""
    found: dict[str, str] = {}
    for name in ("@CAPTURE_INFO_02", "@CAPTURE_INFO"):
        if name in chunks and chunks[name].size >= 1:
            value = source.read_at(chunks[name].offset, 1, f"the eye in {name}")[0]
            if value not in _LATERALITY_BYTES:
                raise UnsupportedFormat(
                    f"{source.path}: {name} byte 0 is {value}, neither 0 (right eye) nor 1 (left eye)"
                )
            found[name] = _LATERALITY_BYTES[value]
    if len(set(found.values())) > 1:
        raise UnsupportedFormat(
            f"{source.path} records both eyes ({', '.join(f'{n} {v}' for n, v in found.items())}): "
            "the SDK will not guess which eye was scanned"
        )
    if not found:
        return None, None
    name, eye = next(iter(found.items()))
    return eye, f"{name} byte 0"


def _spacing_mm(source: VolumeFile, chunks: dict[str, _Chunk], shape) -> tuple[tuple | None, str | None]:
    """((bscan, axial, ascan) mm, where from) from @PARAM_SCAN_04 / @PARAM_SCAN_02, which must agree."""
    n_slices, _, width = shape
    found = {}
    for name, offset in _PARAM_OFFSETS.items():
        if name in chunks:
            values = struct.unpack(
                "<3d", source.read_at(chunks[name].offset + offset, 24, f"the {name} scan size")
            )
            if chunks[name].size < offset + 24 or not all(math.isfinite(v) and v > 0 for v in values):
                raise UnsupportedFormat(
                    f"{source.path}: {name} gives the scan size {values}: the file is damaged"
                )
            found[name] = values
    if len(set(found.values())) > 1:
        raise UnsupportedFormat(f"{source.path}: @PARAM_SCAN_04 and @PARAM_SCAN_02 give different scan sizes")
    if not found:
        return None, None
    name, (x_mm, y_mm, z_um) = next(iter(found.items()))
    told = f"{name}: x {x_mm:g} mm / {width} A-scans, y {y_mm:g} mm / {n_slices} B-scans, z {z_um:g} um"
    return (y_mm / n_slices, z_um / 1000.0, x_mm / width), told


def _raw_slices(source: VolumeFile, name: str, chunk: _Chunk, shape) -> np.ndarray:
    header_bytes = _RAW_HEADERS[name][1]
    data = np.empty(shape, dtype="<u2")
    source.file.seek(chunk.offset + header_bytes)
    if source.file.readinto(data.reshape(-1).view(np.uint8).data) != data.nbytes:
        raise UnsupportedFormat(f"{source.path}: its {name} voxels are truncated")
    return data.view(np.uint16) if np.little_endian else data


def _jpeg_slices(source: VolumeFile, chunk: _Chunk, shape) -> tuple[np.ndarray, str]:
    """The JPEG 2000 B-scans of @IMG_JPEG, each checked against the declared height x width."""
    n_slices, height, width = shape
    data = np.empty(shape, dtype=np.uint8)
    offset, end, lossy = chunk.offset + _JPEG_HEADER[1], chunk.offset + chunk.size, set()
    for i in range(n_slices):
        (size,) = struct.unpack("<I", source.read_at(offset, 4, f"the size of B-scan {i}"))
        if offset + 4 + size > end:
            raise UnsupportedFormat(f"{source.path}: B-scan {i} of @IMG_JPEG runs past the end of its chunk")
        codestream = source.read_at(offset + 4, size, f"B-scan {i}")
        data[i] = decode_image(
            codestream, "jpeg2000", (height, width), np.uint8, source.path, f"B-scan {i} of @IMG_JPEG"
        )
        lossy.add(j2k_is_lossy(codestream))
        offset += 4 + size
    if offset != end:
        raise UnsupportedFormat(
            f"{source.path}: @IMG_JPEG holds {end - offset} bytes after its {n_slices} B-scans: the header "
            "disagrees with the B-scans"
        )
    kind = (
        "lossy" if True in lossy else "lossless" if lossy == {False} else "JPEG 2000, transform not recorded"
    )
    wavelet = {
        "lossy": " (JPEG 2000, irreversible 9/7 wavelet)",
        "lossless": " (JPEG 2000, reversible 5/3 wavelet)",
    }
    return data, f"{kind}{wavelet.get(kind, '')}"
