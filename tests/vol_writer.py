"""Test-side writer of Heidelberg .vol files in the real layout (the SDK reads .vol, never writes it).

A real .vol from ../shared/real-oct/ is the template: its 2048-byte header, SLO image and first
B-scan header are kept byte for byte, and only the fields a raster volume changes are set (SizeX,
NumBScans, SizeZ, ScaleX, Distance, ScaleZ, ScanPosition, ScanPattern; per B-scan StartX, StartY,
EndX, EndY). Offsets are the HEYEX export specification's, as in tests/real_oct.py.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

VOL_INVALID_SAMPLE = np.float32(3.4028235e38)  # what HEYEX writes for a sample not acquired


def raster_positions_mm(
    n_bscans: int, n_ascans: int, scale_x: float, distance: float, *, top_first=True, left_first=True
):
    """(n_bscans, 4) StartX, StartY, EndX, EndY in mm on the SLO image of a horizontal raster."""
    x0, y0 = 1.0, 1.0
    rows = []
    for i in range(n_bscans):
        y = y0 + (i if top_first else n_bscans - 1 - i) * distance
        start, end = (x0, x0 + n_ascans * scale_x) if left_first else (x0 + n_ascans * scale_x, x0)
        rows.append((start, y, end, y))
    return np.array(rows)


def write_vol(
    path: Path,
    data: np.ndarray,
    *,
    template: Path,
    scale_x: float,
    distance: float,
    scale_z: float,
    laterality: str = "OD",
    pattern: int = 3,
    positions=None,
) -> Path:
    """Write ``data`` (n_bscans, depth, n_ascans) float32 as a .vol made from ``template``."""
    raw = template.read_bytes()
    n_bscans, size_z, size_x = data.shape
    header = bytearray(raw[:2048])
    struct.pack_into("<3i3d", header, 12, size_x, n_bscans, size_z, scale_x, distance, scale_z)
    header[84:88] = laterality.encode().ljust(4, b"\0")
    struct.pack_into("<i", header, 96, pattern)
    slo_x, slo_y = struct.unpack_from("<2i", header, 48)
    (bscan_header_bytes,) = struct.unpack_from("<i", header, 100)
    slo = raw[2048 : 2048 + slo_x * slo_y]
    template_bscan = bytearray(raw[2048 + slo_x * slo_y : 2048 + slo_x * slo_y + bscan_header_bytes])
    if positions is None:
        positions = raster_positions_mm(n_bscans, size_x, scale_x, distance)
    parts = [bytes(header), slo]
    for bscan, position in zip(data, positions, strict=True):
        struct.pack_into("<4d", template_bscan, 16, *position)
        parts += [bytes(template_bscan), np.ascontiguousarray(bscan, dtype="<f4").tobytes()]
    Path(path).write_bytes(b"".join(parts))
    return Path(path)
