"""Heidelberg Engineering (Spectralis, HEYEX) ``.vol`` and ``.e2e`` files.

Both are read here with struct and numpy, headers checked (sizes against the file and the cap,
scan pattern, eye) before any voxel is read, so line and circle scans are refused with the
spacing and eye they record. eyepy (MIT) is the reference the tests compare these readers with
(the ``heidelberg-reference`` extra); the SDK does not need it. Layouts and where each fact was
checked: docs/READERS.md.

``.vol`` (HEYEX export, "HSF-OCT-1xx"): a 2048-byte header (SizeX, NumBScans, SizeZ i32 at byte
12; ScaleX, Distance, ScaleZ f64 at 24; SizeXSlo, SizeYSlo i32 at 48; ScanPosition "OD"/"OS" at
84; ScanPattern i32 at 96; BScanHdrSize i32 at 100), the SLO image, then per B-scan a header
(StartX, StartY, EndX, EndY f64 at byte 16, in mm on the SLO image; NumSeg u32 at 48) and
SizeZ x SizeX float32 reflectance (rows = depth from the top; 3.4e38 marks samples not acquired,
read as 0), read into the volume's array directly (eyepy, the reference the tests compare
against, holds the whole file as well: 2.3 x the voxels at the peak). Spacing is (Distance,
ScaleZ, ScaleX): each is the distance between neighbouring samples, so it needs no conversion
(eyepy calls them scale_z, scale_y, scale_x). The B-scan positions orient the cube: B-scans top
to bottom, A-scans left to right on the SLO image.

``.e2e`` (HEYEX database export, "CMDb"): a version header, a main directory header, then chunks
of folder headers pointing at data containers, walked as eyepy walks them. Only the items the
SDK needs (laterality, B-scan headers, B-scan images) are read, bounded by the directory: eyepy
reads lengths from the items without bounds, and its 0.21 decoder reverses the mantissa bits of
Heidelberg's 16-bit floats (:func:`ufloat16_to_float32`). The file records the axial
spacing (mm per sample) but the B-scan positions only in degrees, so spacing_mm must come from
the caller.
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
_E2E_CONTAINER = struct.Struct(
    "<12s5I4iHHII"
)  # 60 bytes: magic, ?, header pos, pos, size, ?, ids, ind, ?, type, ?
_E2E_MAX_FOLDERS = 512  # folders per directory chunk
_E2E_MAX_RECOVERED = 100_000  # containers indexed by scanning a file whose directory is lost
# folder data types (eyepy's TypesEnum): laterality, B-scan header, image
_E2E_LATERALITY, _E2E_BSCANMETA, _E2E_IMAGE = 11, 10004, 1073741824
_E2E_BSCAN_HEADER = struct.Struct("<3I4fI3fI2fI4I2fIQIf")  # the first 104 bytes of a type 10004 item
_E2E_FIXED_KINDS = {_E2E_LATERALITY: 15, _E2E_BSCANMETA: _E2E_BSCAN_HEADER.size}  # bytes read of these
_E2E_BSCAN_IMAGE = 35652097  # image kind of a B-scan (16-bit floats); 33620481 is an 8-bit fundus image
_E2E_BSCAN_IND = 1  # the folder "ind" of B-scan images (0: fundus)
_E2E_EYES = {b"R": "OD", b"L": "OS"}


class _VolHeader(NamedTuple):
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
    UnsupportedFormat for damaged files, InvalidVolume over the cap.
    """
    header = _vol_header(source)
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
    flips = _raster_orientation(source, _vol_positions(source, header), step=header.distance_mm)
    data = _vol_voxels(source, header)
    data = data[::-1] if flips[0] else data
    data = data[:, :, ::-1] if flips[1] else data
    spacing = (header.distance_mm, header.scale_z_mm, header.scale_x_mm)
    provenance = {
        "spacing_mm": "Distance, ScaleZ, ScaleX (file header)",
        "compression": "none",
        "orientation": _orientation(*flips),
    }
    if laterality_from:
        provenance["laterality"] = laterality_from
    metadata = {"spacing_mm": spacing, "laterality": header.laterality, "provenance": provenance}
    return data, {key: value for key, value in metadata.items() if value is not None}


def _vol_header(source: VolumeFile) -> _VolHeader:
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
    header = _VolHeader(
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


def _vol_positions(source: VolumeFile, header: _VolHeader) -> np.ndarray:
    """(n_bscans, 4) StartX, StartY, EndX, EndY in mm of each B-scan header, whose NumSeg x SizeX
    float32 segmentation lines must fit in it (else the file is damaged)."""
    positions = []
    for i in range(header.n_bscans):
        raw = source.read_at(header.bscan_offset(i) + 16, 36, f"the header of B-scan {i}")
        positions.append(_BSCAN_POSITIONS.unpack_from(raw))
        (n_lines,) = struct.unpack_from("<I", raw, 32)
        if 256 + n_lines * header.size_x * 4 > header.bscan_header_bytes:
            raise UnsupportedFormat(
                f"{source.path}: B-scan {i} declares {n_lines} segmentation lines, more than its "
                f"{header.bscan_header_bytes}-byte header holds: the file is damaged"
            )
    return np.array(positions)


def _raster_orientation(source: VolumeFile, positions: np.ndarray, step: float | None) -> tuple[bool, bool]:
    """(reverse the B-scans, reverse the A-scans) so that B-scans run top to bottom and A-scans left
    to right on the fundus image, from each B-scan's (start x, start y, end x, end y). Refuses
    positions that are not a raster of horizontal B-scans equally spaced (``step`` apart when given)."""
    start_x, start_y, end_x, end_y = positions.T
    length = np.hypot(end_x - start_x, end_y - start_y)
    steps = np.diff(start_y)
    expected = abs(step) if step is not None else abs(steps.mean()) if steps.size else 0.0
    if (
        not np.isfinite(positions).all()
        or (length <= 0).any()
        or (abs(end_y - start_y) > POSITION_TOLERANCE * length).any()
        or expected <= 0
        or (abs(abs(steps) - expected) > POSITION_TOLERANCE * expected).any()
        or not ((steps > 0).all() or (steps < 0).all())
    ):
        told = f" {step:g} mm (its Distance) apart" if step is not None else " equally spaced"
        raise UnsupportedFormat(
            f"{source.path}: its B-scan positions are not a raster of horizontal B-scans{told}: "
            "the SDK reads horizontal raster volumes"
        )
    return bool(steps[0] < 0), bool(np.median(end_x - start_x) < 0)


def _orientation(flip_bscans: bool, flip_ascans: bool) -> str:
    """The provenance of the cube's orientation."""
    flips = [name for name, flip in (("B-scan", flip_bscans), ("A-scan", flip_ascans)) if flip]
    return "B-scan positions (B-scan headers)" + "".join(f"; {name} order reversed" for name in flips)


def _vol_voxels(source: VolumeFile, header: _VolHeader) -> np.ndarray:
    """The B-scans of a checked raster ``.vol`` (SizeZ x SizeX little-endian float32 after each
    B-scan header), read straight into the volume's array; samples not acquired read as 0."""
    data = np.empty((header.n_bscans, header.size_z, header.size_x), dtype="<f4")
    for i, bscan in enumerate(data):
        source.file.seek(header.bscan_offset(i) + header.bscan_header_bytes)
        if source.file.readinto(bscan.reshape(-1).view(np.uint8).data) != bscan.nbytes:
            raise UnsupportedFormat(f"{source.path} is truncated: B-scan {i} is incomplete")
        bscan[bscan > VOL_INVALID] = 0.0
    return data.astype(np.float32, copy=False)


class _E2EFolder(NamedTuple):
    """One entry of an E2E directory: what it holds (``kind``) and where its data container is."""

    series_id: int
    slice_id: int
    ind: int
    kind: int
    start: int
    size: int


def read_e2e(source: VolumeFile) -> tuple[np.ndarray, dict]:
    """Read the one raster OCT series of an ``.e2e``: (data (n_bscans, depth, n_ascans) float32, metadata).

    Read here with struct and numpy, every container checked against the directory and the cap
    before it is read. Raises UnsupportedFormat for a damaged file (say, one cut down without
    updating its directory) or one holding other than one OCT series; UnsupportedScan for line,
    circle and radial scans and single B-scans (with the eye and axial spacing they record);
    InvalidVolume over the cap. Spacing is not returned: the file gives B-scan positions in
    degrees only.
    """
    folders = _e2e_folders(source)
    series = sorted({f.series_id for f in folders if f.kind == _E2E_IMAGE and f.ind == _E2E_BSCAN_IND})
    if len(series) != 1:
        raise UnsupportedFormat(
            f"{source.path} holds {len(series)} OCT series; the SDK reads an E2E file of one OCT series: "
            "export each scan to its own file"
        )
    ours = [f for f in folders if f.series_id == series[0]]
    for folder in ours:
        _check_e2e_container(source, folder)
    laterality = _e2e_laterality(source, ours)
    bscans = _e2e_bscans(source, ours)
    first = bscans[0][0]
    shape = (len(bscans), first.size_y, first.size_x)
    if first.scan_pattern not in RASTER_PATTERNS or len(bscans) == 1:
        name = (
            f"Heidelberg {SCAN_PATTERNS.get(first.scan_pattern, f'scan pattern {first.scan_pattern}')} scan"
        )
        if first.scan_pattern in RASTER_PATTERNS:
            name = f"single B-scan (a Heidelberg {SCAN_PATTERNS[first.scan_pattern]} of one B-scan)"
        spacing = (None, first.scale_y_mm, None)
        raise unsupported_scan(source.path, name, shape=shape, spacing_mm=spacing, laterality=laterality)
    source.check_voxels(shape, 4, "its B-scans")
    positions = np.array([(m.start_x, m.start_y, m.end_x, m.end_y) for m, _ in bscans], dtype=float)
    flips = _raster_orientation(source, positions, step=None)
    data = np.empty(shape, dtype=np.float32)
    for i, (_, image) in enumerate(bscans):
        data[i] = _e2e_bscan(source, image, shape[1:])
    data = data[::-1] if flips[0] else data
    data = data[:, :, ::-1] if flips[1] else data
    provenance = {"compression": "none (Heidelberg 16-bit floats)", "orientation": _orientation(*flips)}
    metadata: dict[str, object] = {"provenance": provenance}
    if laterality:
        metadata["laterality"], provenance["laterality"] = laterality, "laterality items (type 11, byte 14)"
    return data, metadata


class _E2EBscanHeader(NamedTuple):
    """The fields of an E2E B-scan header (type 10004) the reader uses; positions in degrees."""

    size_y: int
    size_x: int
    start_x: float
    start_y: float
    end_x: float
    end_y: float
    scale_y_mm: float
    n_bscans: int
    bscan_index: int  # not "index": that would hide tuple.index
    scan_pattern: int


def _e2e_bscans(source: VolumeFile, folders: list[_E2EFolder]) -> list[tuple[_E2EBscanHeader, _E2EFolder]]:
    """(B-scan header, image folder) per B-scan of the series, in acquisition order, checked to
    agree with each other: one header and one image per slice, the same size and pattern."""
    path = source.path
    slices: dict[int, dict[int, list[_E2EFolder]]] = {}
    for f in folders:
        if f.slice_id >= 0 and (
            f.kind == _E2E_BSCANMETA or (f.kind == _E2E_IMAGE and f.ind == _E2E_BSCAN_IND)
        ):
            slices.setdefault(f.slice_id, {}).setdefault(f.kind, []).append(f)
    bscans = []
    for slice_id, kinds in sorted(slices.items()):
        if [len(kinds.get(k, ())) for k in (_E2E_BSCANMETA, _E2E_IMAGE)] != [1, 1]:
            raise UnsupportedFormat(
                f"{path}: slice {slice_id} of its OCT series does not hold one B-scan header and one "
                "B-scan image: the file is damaged, or holds a B-scan twice"
            )
        raw = source.read_at(
            kinds[_E2E_BSCANMETA][0].start + _E2E_CONTAINER.size, _E2E_BSCAN_HEADER.size, "a B-scan header"
        )
        fields = _E2E_BSCAN_HEADER.unpack(raw)
        header = _E2EBscanHeader._make((*fields[1:7], float(fields[9]), *fields[16:19]))
        bscans.append((header, kinds[_E2E_IMAGE][0]))
    bscans.sort(key=lambda pair: pair[0].bscan_index)
    first = bscans[0][0]
    if (
        [h.bscan_index for h, _ in bscans] != list(range(len(bscans)))
        or any(
            (h.size_y, h.size_x, h.scan_pattern, h.n_bscans)
            != (first.size_y, first.size_x, first.scan_pattern, len(bscans))
            for h, _ in bscans
        )
        or min(first.size_y, first.size_x) < 1
        or not (np.isfinite(first.scale_y_mm) and first.scale_y_mm > 0)
    ):
        raise UnsupportedFormat(
            f"{path}: its {len(bscans)} B-scan headers disagree on the B-scan count, order, size or scan "
            "pattern: the file is damaged"
        )
    return bscans


def _e2e_bscan(source: VolumeFile, image: _E2EFolder, shape_px: tuple[int, int]) -> np.ndarray:
    """One B-scan image item, its header checked against the B-scan header's size, as float32."""
    item = image.start + _E2E_CONTAINER.size
    _, kind, n_values, height, width = struct.unpack("<5I", source.read_at(item, 20, "a B-scan image"))
    if kind != _E2E_BSCAN_IMAGE or (height, width) != tuple(shape_px):
        raise UnsupportedFormat(
            f"{source.path}: a B-scan image is {height} x {width} of kind {kind} but its B-scan header "
            f"declares {shape_px[0]} x {shape_px[1]} Heidelberg 16-bit floats: the file is damaged"
        )
    codes = np.frombuffer(source.read_at(item + 20, n_values * 2, "a B-scan image"), dtype="<u2")
    return ufloat16_to_float32(codes).reshape(shape_px)


def ufloat16_to_float32(codes: np.ndarray) -> np.ndarray:
    """Heidelberg's unsigned 16-bit floats as float32: exponent e = the high 6 bits, mantissa m = the
    low 10 bits, value (1 + m / 1024) * 2 ** (e - 63).

    eyepy 0.21 and OCT-Converter read the 10 mantissa bits in reverse order; this reads them in
    order (as the octio library does), which gives the smoother image on the real E2E B-scan
    (neighbouring-sample correlation 0.890 against 0.884; docs/READERS.md).
    """
    codes = codes.astype(np.uint32)
    mantissa, exponent = codes & 0x3FF, (codes >> 10).astype(np.int32)
    return np.ldexp((1.0 + mantissa / 1024.0).astype(np.float32), exponent - 63).astype(np.float32)


def _e2e_folders(source: VolumeFile) -> list[_E2EFolder]:
    """The folders of every E2E directory chunk, walked as eyepy walks them (chunks one after
    another from byte 88, each after the last container of the one before), each inside the file."""
    path = source.path
    version, _, _ = _E2E_VERSION.unpack(source.read_at(0, _E2E_VERSION.size, "the E2E version header"))
    if not version.startswith(E2E_MAGIC):
        raise UnsupportedFormat(f"{path} is not a Heidelberg E2E file: it starts with {version!r}")
    main = _E2E_DIRECTORY.unpack(
        source.read_at(_E2E_VERSION.size, _E2E_DIRECTORY.size, "the E2E main directory")
    )
    if not main[0].startswith(b"MDbMDir"):
        raise UnsupportedFormat(f"{path}: the E2E main directory header is {main[0]!r}, not MDbMDir")
    offset, folders = _E2E_VERSION.size + _E2E_DIRECTORY.size, []
    while offset + _E2E_DIRECTORY.size <= source.size_bytes:
        magic, _, _, n_entries, _, _, _ = _E2E_DIRECTORY.unpack(
            source.read_at(offset, _E2E_DIRECTORY.size, "a chunk")
        )
        if not magic.startswith(b"MDbDir") or not 1 <= n_entries <= _E2E_MAX_FOLDERS:
            break
        table = source.read_at(offset + _E2E_DIRECTORY.size, n_entries * _E2E_FOLDER.size, "a folder table")
        end = offset
        for _, start, size, _, _, _, series_id, slice_id, ind, _, kind, _ in _E2E_FOLDER.iter_unpack(table):
            if kind == 0:  # the empty folders that fill a chunk
                continue
            if start + _E2E_CONTAINER.size + size > source.size_bytes:
                raise UnsupportedFormat(
                    f"{path} is truncated: an E2E folder's data runs past the end of the file"
                )
            folders.append(_E2EFolder(series_id, slice_id, ind, kind, start, size))
            end = max(end, start + _E2E_CONTAINER.size + size)
        if end <= offset:
            break
        offset = end
    if not folders:
        damaged = (
            f"{path}: its E2E directory is missing or damaged (no directory chunk follows the main header, "
            f"which points to byte {main[4]} of a {source.size_bytes}-byte file), so its contents cannot be "
            "indexed; eyepy and OCT-Converter fail on it the same way"
        )
        _refuse_a_lone_bscan(source, _e2e_containers_by_scan(source), damaged)
        raise UnsupportedFormat(damaged)
    return folders


def _e2e_containers_by_scan(source: VolumeFile) -> list[_E2EFolder]:
    """Every whole data container of the file, found by its ``MDbData`` magic (for a file whose
    directory is lost, as when a file is cut down without updating it), read in 8 MiB blocks."""
    block, offset = 8 << 20, 0
    found: list[_E2EFolder] = []
    while offset < source.size_bytes:
        data = source.read_at(offset, min(block + _E2E_CONTAINER.size, source.size_bytes - offset), "a block")
        at = data.find(b"MDbData")
        while 0 <= at < min(block, len(data)):
            start = offset + at
            if at + _E2E_CONTAINER.size <= len(data) and len(found) < _E2E_MAX_RECOVERED:
                header = _E2E_CONTAINER.unpack_from(data, at)  # the block holds the header's bytes too
                size, series_id, slice_id, ind, kind = header[4], header[8], header[9], header[10], header[12]
                if kind and start + _E2E_CONTAINER.size + size <= source.size_bytes:
                    found.append(_E2EFolder(series_id, slice_id, ind, kind, start, size))
            at = data.find(b"MDbData", at + 1)
        offset += block
    return found


def _refuse_a_lone_bscan(source: VolumeFile, containers: list[_E2EFolder], damaged: str) -> None:
    """Raise UnsupportedScan if the containers of a file whose directory is lost hold exactly one OCT
    B-scan image (the most such a file can be identified as); return otherwise."""
    images = [c for c in containers if c.kind == _E2E_IMAGE and c.ind == _E2E_BSCAN_IND]
    if len(images) != 1:
        return
    _check_e2e_container(source, images[0])
    _, kind, _, height, width = struct.unpack(
        "<5I", source.read_at(images[0].start + _E2E_CONTAINER.size, 20, "an E2E image")
    )
    if kind != _E2E_BSCAN_IMAGE:
        return
    series = [c for c in containers if c.series_id == images[0].series_id]
    for container in series:
        if container != images[0]:  # checked above
            _check_e2e_container(source, container)
    raise unsupported_scan(
        source.path,
        "single B-scan (its E2E directory is lost: scanning its data containers finds one OCT B-scan "
        "image and no other)",
        shape=(1, height, width),
        laterality=_e2e_laterality(source, series),
    ) from UnsupportedFormat(damaged)


def _check_e2e_container(source: VolumeFile, folder: _E2EFolder) -> None:
    """A folder's data container agrees with the folder (magic, type, size), and an image's header
    with its container, before either is read."""
    path = source.path
    header = _E2E_CONTAINER.unpack(source.read_at(folder.start, _E2E_CONTAINER.size, "an E2E data container"))
    magic, size, kind = header[0], header[4], header[12]
    if not magic.startswith(b"MDbData") or size != folder.size or kind != folder.kind:
        raise UnsupportedFormat(
            f"{path}: the E2E data container at byte {folder.start} does not match its directory entry "
            f"(type {kind} of {size} bytes, the directory says type {folder.kind} of {folder.size})"
        )
    if folder.kind == _E2E_IMAGE:
        _, image_kind, n_values, height, width = struct.unpack(
            "<5I", source.read_at(folder.start + _E2E_CONTAINER.size, 20, "an E2E image")
        )
        if (
            n_values != height * width
            or 20 + n_values * (2 if image_kind == _E2E_BSCAN_IMAGE else 1) > folder.size
        ):
            raise UnsupportedFormat(
                f"{path}: an E2E image declares {n_values} values of {height} x {width} but its container "
                f"holds {folder.size} bytes: the file is damaged"
            )
    elif folder.kind in _E2E_FIXED_KINDS and folder.size < _E2E_FIXED_KINDS[folder.kind]:
        raise UnsupportedFormat(
            f"{path}: an E2E item of type {folder.kind} is {folder.size} bytes, too short"
        )


def _e2e_laterality(source: VolumeFile, folders: list[_E2EFolder]) -> str | None:
    """The eye, "OD" or "OS", from byte 14 ('R' or 'L') of the series' laterality items; None when
    none says R or L; UnsupportedFormat when they disagree."""
    values = {
        source.read_at(f.start + _E2E_CONTAINER.size + 14, 1, "an E2E laterality")
        for f in folders
        if f.kind == _E2E_LATERALITY
    }
    eyes = {_E2E_EYES[v] for v in values if v in _E2E_EYES}
    if len(eyes) > 1:
        raise UnsupportedFormat(f"{source.path} records both eyes for its OCT series: the SDK will not guess")
    return eyes.pop() if eyes else None
