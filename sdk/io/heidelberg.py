"""Heidelberg Engineering (Spectralis, HEYEX) ``.vol`` and ``.e2e`` files.

The headers are read here, with numpy and struct, and checked (sizes against the file and the
cap, scan pattern, eye) before any voxel is read, so line and circle scans are refused, with the
spacing and eye they record, without eyepy. The voxels of raster volumes are read through eyepy
(MIT; the ``heidelberg`` extra), imported only then. Layouts: docs/READERS.md.

``.vol`` (HEYEX export, "HSF-OCT-1xx"): a 2048-byte header (SizeX, NumBScans, SizeZ i32 at byte
12; ScaleX, Distance, ScaleZ f64 at 24; SizeXSlo, SizeYSlo i32 at 48; ScanPosition "OD"/"OS" at
84; ScanPattern i32 at 96; BScanHdrSize i32 at 100), the SLO image, then per B-scan a header
(StartX, StartY, EndX, EndY f64 at byte 16, in mm on the SLO image) and SizeZ x SizeX float32
reflectance (rows = depth from the top; 3.4e38 marks samples not acquired, read as 0). Spacing is
(Distance, ScaleZ, ScaleX): each is the distance between neighbouring samples, so it needs no
conversion (eyepy calls them scale_z, scale_y, scale_x). The B-scan positions orient the cube:
B-scans are put in top-to-bottom order of the SLO image and A-scans left to right.

``.e2e`` (HEYEX database export, "CMDb"): a version header, a main directory header, then chunks
of folder headers pointing at data containers. The directory is checked here; eyepy then indexes
it. B-scans are Heidelberg's unsigned 16-bit floats (6-bit exponent, 10-bit mantissa), converted
to float32 by eyepy. The file records axial spacing (mm per sample) but the B-scan positions only
in degrees, so spacing_mm must come from the caller.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from sdk.errors import UnsupportedFormat
from sdk.io.scans import unsupported_scan
from sdk.io.source import VolumeFile, describe_bytes

VOL_SUFFIXES = (".vol",)
E2E_SUFFIXES = (".e2e",)
VOL_MAGIC = b"HSF-OCT-"
E2E_MAGIC = b"CMDb"
VOL_HEADER_BYTES = 2048
VOL_INVALID = 3.0e38  # samples not acquired hold 3.4028235e38 (the largest float32)
# HEYEX export specification (and eyepy's vol_reader): ScanPattern values
SCAN_PATTERNS = {
    0: "unknown",
    1: "single line",
    2: "circle",
    3: "raster volume",
    4: "fast raster volume",
    5: "radial",
}
RASTER_PATTERNS = (3, 4)
POSITION_TOLERANCE = 0.05  # B-scan step from the positions vs Distance; B-scan tilt vs its length
_VOL_FIELDS = struct.Struct("<12s3i3d2i")  # version, SizeX, NumBScans, SizeZ, ScaleX, Distance, ScaleZ, SLO
_BSCAN_POSITIONS = struct.Struct("<4d")  # StartX, StartY, EndX, EndY at byte 16 of a B-scan header
_E2E_VERSION = struct.Struct("<12sI20s")  # 36 bytes
_E2E_DIRECTORY = struct.Struct("<12sI20s4I")  # 52 bytes: magic, version, ..., num_entries, current, prev, ?
_E2E_FOLDER = struct.Struct("<4I4iHHII")  # 44 bytes: pos, start, size, ?, ids, ind, ?, type, ?
_E2E_CONTAINER_BYTES = 60
_E2E_MAX_FOLDERS = 512  # folders per directory chunk


class VolHeader(NamedTuple):
    size_x: int
    n_bscans: int
    size_z: int
    scale_x_mm: float
    distance_mm: float
    scale_z_mm: float
    slo_bytes: int
    laterality: str | None
    pattern: int
    bscan_header_bytes: int

    @property
    def bscan_bytes(self) -> int:
        return self.bscan_header_bytes + self.size_x * self.size_z * 4

    def bscan_offset(self, i: int) -> int:
        return VOL_HEADER_BYTES + self.slo_bytes + i * self.bscan_bytes


def is_vol(head: bytes) -> bool:
    return head.startswith(VOL_MAGIC)


def is_e2e(head: bytes) -> bool:
    return head.startswith(E2E_MAGIC)


def read_vol(source: VolumeFile) -> tuple[np.ndarray, dict]:
    """Read a raster ``.vol``: (data (n_bscans, depth, n_ascans) float32, metadata found in the file).

    Raises UnsupportedScan for line, circle and radial scans (with their spacing and eye),
    UnsupportedFormat for damaged files or a file without eyepy, InvalidVolume over the cap.
    """
    header = vol_header(source)
    laterality_from = "ScanPosition" if header.laterality else None
    if header.pattern not in RASTER_PATTERNS or header.n_bscans == 1:
        bscan_mm = header.distance_mm if header.n_bscans > 1 and header.distance_mm > 0 else None
        pattern = f"Heidelberg {SCAN_PATTERNS.get(header.pattern, f'ScanPattern {header.pattern}')} scan"
        if header.pattern in RASTER_PATTERNS:
            pattern = f"single B-scan (a Heidelberg {SCAN_PATTERNS[header.pattern]} of one B-scan)"
        raise unsupported_scan(
            source.path,
            pattern,
            shape=(header.n_bscans, header.size_z, header.size_x),
            spacing_mm=(bscan_mm, header.scale_z_mm, header.scale_x_mm),
            laterality=header.laterality,
        )
    flip_bscans, flip_ascans = _vol_orientation(source, header)
    data = _vol_voxels(source, header)
    data = data[::-1] if flip_bscans else data
    data = data[:, :, ::-1] if flip_ascans else data
    spacing = (header.distance_mm, header.scale_z_mm, header.scale_x_mm)
    provenance = {
        "spacing_mm": "Distance, ScaleZ, ScaleX (file header)",
        "compression": "none",
        "orientation": "B-scan positions (B-scan headers)"
        + (": B-scan order reversed" if flip_bscans else "")
        + (": A-scan order reversed" if flip_ascans else ""),
    }
    if laterality_from:
        provenance["laterality"] = laterality_from
    metadata = {"spacing_mm": spacing, "laterality": header.laterality, "provenance": provenance}
    return data, {key: value for key, value in metadata.items() if value is not None}


def vol_header(source: VolumeFile) -> VolHeader:
    """The checked file header of a ``.vol``: sizes positive, voxels under the cap, file long enough."""
    path = source.path
    raw = source.read_at(0, VOL_HEADER_BYTES, "the .vol file header")
    version, size_x, n_bscans, size_z, scale_x, distance, scale_z, slo_x, slo_y = _VOL_FIELDS.unpack_from(raw)
    if not version.startswith(VOL_MAGIC):
        raise UnsupportedFormat(f"{path} is not a Heidelberg .vol file: it starts with {version!r}")
    position = raw[84:88].split(b"\0")[0]
    pattern, bscan_header_bytes = struct.unpack_from("<2i", raw, 96)
    if min(size_x, n_bscans, size_z, slo_x, slo_y) < 1 or bscan_header_bytes < 256:
        raise UnsupportedFormat(
            f"{path}: its header declares {n_bscans} B-scans of {size_z} x {size_x} samples, an SLO image "
            f"of {slo_y} x {slo_x} and {bscan_header_bytes}-byte B-scan headers: the file is damaged"
        )
    if position not in (b"OD", b"OS", b""):
        raise UnsupportedFormat(f"{path}: its ScanPosition is {position!r}, neither OD nor OS")
    scales = (scale_x, scale_z) + ((distance,) if n_bscans > 1 and pattern in RASTER_PATTERNS else ())
    if not all(np.isfinite(scales)) or min(scales) <= 0:
        raise UnsupportedFormat(
            f"{path}: its header gives ScaleX {scale_x}, Distance {distance}, ScaleZ {scale_z}"
        )
    source.check_voxels((slo_y, slo_x), 1, "its SLO image")
    source.check_voxels((n_bscans, size_z, size_x), 4, "its NumBScans x SizeZ x SizeX")
    header = VolHeader(
        size_x,
        n_bscans,
        size_z,
        scale_x,
        distance,
        scale_z,
        slo_x * slo_y,
        position.decode() or None,
        pattern,
        bscan_header_bytes,
    )
    needed = header.bscan_offset(n_bscans)
    if source.size_bytes < needed:  # a thickness grid may follow the B-scans, so longer is fine
        raise UnsupportedFormat(
            f"{path} is truncated: its header declares {describe_bytes(needed)} of SLO image and B-scans "
            f"but the file has {describe_bytes(source.size_bytes)}"
        )
    return header


def _vol_orientation(source: VolumeFile, header: VolHeader) -> tuple[bool, bool]:
    """(reverse the B-scans, reverse the A-scans) so that B-scans run top to bottom and A-scans left
    to right on the SLO image, from the B-scan headers' start and end points; UnsupportedFormat
    for positions that are not a horizontal raster of B-scans Distance apart."""
    positions = np.array(
        [
            _BSCAN_POSITIONS.unpack(source.read_at(header.bscan_offset(i) + 16, 32, f"B-scan {i} position"))
            for i in range(header.n_bscans)
        ]
    )
    start_x, start_y, end_x, end_y = positions.T
    length_mm = np.hypot(end_x - start_x, end_y - start_y)
    step_mm = abs(start_y[-1] - start_y[0]) / (header.n_bscans - 1)
    if (
        not np.isfinite(positions).all()
        or (length_mm <= 0).any()
        or (abs(end_y - start_y) > POSITION_TOLERANCE * length_mm).any()
        or abs(step_mm - header.distance_mm) > POSITION_TOLERANCE * header.distance_mm
    ):
        raise UnsupportedFormat(
            f"{source.path}: its B-scan positions are not a raster of horizontal B-scans "
            f"{header.distance_mm:g} mm (its Distance) apart: the SDK reads horizontal raster volumes"
        )
    return bool(start_y[-1] < start_y[0]), bool(np.median(end_x - start_x) < 0)


def _vol_voxels(source: VolumeFile, header: VolHeader) -> np.ndarray:
    """The B-scans of a checked raster ``.vol``, read by eyepy; samples not acquired read as 0."""
    reader_class = _import_eyepy_vol_reader(source)
    try:
        parsed = reader_class(source.path).parsed_file
        shape = (parsed.n_bscans, parsed.size_y, parsed.size_x)
        if shape != (header.n_bscans, header.size_z, header.size_x):
            raise UnsupportedFormat(
                f"{source.path}: eyepy reads {shape} B-scans, the header declares otherwise"
            )
        data = np.empty(shape, dtype=np.float32)
        for i, bscan in enumerate(parsed.bscans):
            data[i] = bscan.data
            data[i][data[i] > VOL_INVALID] = 0.0
    except UnsupportedFormat:
        raise
    except Exception as error:  # noqa: BLE001 - eyepy's parser fails in many ways on damaged files
        raise UnsupportedFormat(
            f"{source.path}: eyepy cannot read it ({type(error).__name__}: {error})"
        ) from error
    return data


def read_e2e(source: VolumeFile) -> tuple[np.ndarray, dict]:
    """Read an ``.e2e`` file: its directory is checked here, then eyepy indexes it.

    Raises UnsupportedFormat for a damaged directory (say, one cut down without updating it),
    a file without eyepy, or a file holding other than one OCT series; UnsupportedScan for line,
    circle and radial scans; InvalidVolume over the cap.
    """
    _check_e2e_directory(source)
    raise UnsupportedFormat(f"{source.path}: reading E2E volumes is not built yet")


def _check_e2e_directory(source: VolumeFile) -> int:
    """Walk the E2E directory chunks as eyepy will, checking that every folder's data container lies
    inside the file; returns the number of folders."""
    path = source.path
    version, _, _ = _E2E_VERSION.unpack(source.read_at(0, _E2E_VERSION.size, "the E2E version header"))
    if not version.startswith(E2E_MAGIC):
        raise UnsupportedFormat(f"{path} is not a Heidelberg E2E file: it starts with {version!r}")
    main = _E2E_DIRECTORY.unpack(
        source.read_at(_E2E_VERSION.size, _E2E_DIRECTORY.size, "the E2E main directory")
    )
    if not main[0].startswith(b"MDbMDir"):
        raise UnsupportedFormat(f"{path}: the E2E main directory header is {main[0]!r}, not MDbMDir")
    offset, n_folders = _E2E_VERSION.size + _E2E_DIRECTORY.size, 0
    while offset + _E2E_DIRECTORY.size <= source.size_bytes:
        magic, _, _, n_entries, _, _, _ = _E2E_DIRECTORY.unpack(
            source.read_at(offset, _E2E_DIRECTORY.size, "a chunk")
        )
        if not magic.startswith(b"MDbDir"):
            break
        if not 1 <= n_entries <= _E2E_MAX_FOLDERS:
            raise UnsupportedFormat(
                f"{path}: the E2E directory chunk at byte {offset} lists {n_entries} folders"
            )
        table = source.read_at(offset + _E2E_DIRECTORY.size, n_entries * _E2E_FOLDER.size, "a folder table")
        end = offset
        for folder in _E2E_FOLDER.iter_unpack(table):
            start, size = folder[1], folder[2]
            if folder[10] and start + _E2E_CONTAINER_BYTES + size > source.size_bytes:
                raise UnsupportedFormat(
                    f"{path} is truncated: an E2E folder's data runs past the end of the file"
                )
            end = max(end, start + _E2E_CONTAINER_BYTES + size)
        n_folders += n_entries
        if end <= offset:
            break
        offset = end
    if n_folders == 0:
        current = main[4]
        raise UnsupportedFormat(
            f"{path}: its E2E directory is missing or damaged (no directory chunk follows the main header; "
            f"the main header points to byte {current} of a {source.size_bytes}-byte file), so its contents "
            "cannot be indexed (eyepy and OCT-Converter fail on it the same way)"
        )
    return n_folders


def _import_eyepy_vol_reader(source: VolumeFile):
    try:
        from eyepy.io.he import HeVolReader
    except ImportError as error:
        raise UnsupportedFormat(
            f"{source.path}: Heidelberg raster volumes are read with eyepy, which is not installed: "
            "pip install 'octclassify[heidelberg]'"
        ) from error
    return HeVolReader
