"""Test-side writer of Heidelberg .e2e files (the SDK reads E2E, never writes it).

The layout is the one eyepy and OCT-Converter read (uocte's description; OCT-Converter's
e2e_binary for the B-scan header fields), written here with struct so that it is independent of
eyepy's own format definitions: a version header ("CMDb"), a main directory ("MDbMDir"), one
directory chunk ("MDbDir") of folder headers, then a data container ("MDbData") per folder. Each
B-scan is a slice with a B-scan header (type 10004) and an image (type 1073741824, ind 1) of
Heidelberg 16-bit floats; the series has a laterality item (type 11, the eye at byte 14).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

VERSION = struct.Struct("<12sI20s")
DIRECTORY = struct.Struct("<12sI20s4I")  # magic, version, unknown, num_entries, current, prev, unknown
FOLDER = struct.Struct("<4I4iHHII")  # pos, start, size, 0, patient, study, series, slice, ind, 0, type, 0
CONTAINER = struct.Struct("<12s5I4iHHII")  # magic, 0, header pos, pos, size, 0, ids, ind, 0, type, 0
BSCAN_HEADER = struct.Struct("<3I4fI3fI2fI4I2fIQIf")  # OCT-Converter's bscan_metadata (LibE2E)
BSCAN_HEADER_BYTES = 428
PATIENT, STUDY, SERIES = 7, 8, 9
LATERALITY, BSCANMETA, IMAGE, BSCAN_IMAGE = 11, 10004, 1073741824, 35652097


def ufloat16(codes: np.ndarray) -> np.ndarray:
    """Heidelberg's unsigned 16-bit floats as float32: 10-bit mantissa m (low bits), 6-bit exponent
    e (high bits), value (1 + m / 1024) * 2 ** (e - 63)."""
    codes = codes.astype(np.int64)
    mantissa, exponent = codes & 0x3FF, codes >> 10
    return ((1 + mantissa / 1024) * np.exp2(exponent - 63)).astype(np.float32)


def raster_positions_deg(n_bscans: int, *, top_first=True, left_first=True) -> np.ndarray:
    """(n_bscans, 4) start x, start y, end x, end y in degrees of a horizontal raster 0.25 deg apart."""
    rows = []
    for i in range(n_bscans):
        y = -5.0 + 0.25 * (i if top_first else n_bscans - 1 - i)
        rows.append((-10.0, y, 10.0, y) if left_first else (10.0, y, -10.0, y))
    return np.array(rows)


def bscan_header(shape, index: int, n_bscans: int, position, scan_pattern: int, scale_y_mm: float) -> bytes:
    height, width = shape
    start_x, start_y, end_x, end_y = position
    fields = (
        0,
        height,
        width,
        start_x,
        start_y,
        end_x,
        end_y,
        0,
        0.0,
        scale_y_mm,
        0.0,
        0,
        0.0,
        0.0,
        0,
        width,
    )
    fields += (n_bscans, index, scan_pattern, (start_x + end_x) / 2, (start_y + end_y) / 2, 0, 0, 1, 0.9)
    return BSCAN_HEADER.pack(*fields).ljust(BSCAN_HEADER_BYTES, b"\0")


def laterality_item(eye: bytes) -> bytes:
    return bytes(14) + eye + bytes(12)


def write_e2e(
    path: Path,
    codes: np.ndarray,
    *,
    eye: bytes = b"R",
    scan_pattern: int = 3,
    positions=None,
    scale_y_mm: float = 0.0039,
    series=(SERIES,),
) -> Path:
    """Write ``codes`` (n_bscans, height, width) uint16 as the B-scans of each series in ``series``."""
    n_bscans, height, width = codes.shape
    positions = raster_positions_deg(n_bscans) if positions is None else positions
    items = []  # (series, slice, ind, type, payload)
    for series_id in series:
        items.append((series_id, -1, 0, LATERALITY, laterality_item(eye)))
        for i, (bscan, position) in enumerate(zip(codes, positions, strict=True)):
            image = struct.pack("<5I", 20 + bscan.size * 2, BSCAN_IMAGE, bscan.size, height, width)
            header = bscan_header((height, width), i, n_bscans, position, scan_pattern, scale_y_mm)
            items.append((series_id, 2 * i, 0, BSCANMETA, header))
            items.append((series_id, 2 * i, 1, IMAGE, image + bscan.astype("<u2").tobytes()))
    chunk_at = VERSION.size + DIRECTORY.size
    table_at = chunk_at + DIRECTORY.size
    start = table_at + len(items) * FOLDER.size
    folders, containers = [], []
    for k, (series_id, slice_id, ind, kind, payload) in enumerate(items):
        ids = (PATIENT, STUDY, series_id, slice_id)
        pos = table_at + k * FOLDER.size
        folders.append(FOLDER.pack(pos, start, len(payload), 0, *ids, ind, 0, kind, 0))
        containers.append(
            CONTAINER.pack(b"MDbData", 0, pos, start, len(payload), 0, *ids, ind, 0, kind, 0) + payload
        )
        start += CONTAINER.size + len(payload)
    head = VERSION.pack(b"CMDb", 100, b"\xff" * 20)
    head += DIRECTORY.pack(b"MDbMDir", 100, b"\xff" * 20, 512, chunk_at, 0, 0)
    head += DIRECTORY.pack(b"MDbDir", 100, b"\xff" * 20, len(items), chunk_at, 0, 0)
    Path(path).write_bytes(head + b"".join(folders) + b"".join(containers))
    return Path(path)
