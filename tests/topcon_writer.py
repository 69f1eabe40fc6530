"""Test-side writer of Topcon .fda / .fds files in the real layout (the SDK reads Topcon, never writes it).

The chunks are laid out as in ../shared/real-oct/topcon-3doct1000-macula-OS-1bscan.fda (verified
by tests/test_topcon.py against that file): "FOCT", kind, two u32, then ``u8 name length | name |
u32 size | payload`` chunks and a zero end byte. When a real file is given as ``template`` its
other chunks (hardware, patient, fundus, contours, ...) are kept byte for byte.

    chunks = topcon_chunks(data, x_mm=6.0, y_mm=6.0, z_um=3.5, eye=1)   # {name: payload}
    write_topcon(path, chunks)
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np

from tests.real_oct import _fda_chunks as fda_chunks  # [(name, payload)] of a Topcon file

CAPTURE_INFO_BYTES = 118  # @CAPTURE_INFO_02 of the real file
PARAM_SCAN_04_BYTES = 61
# the two unknown u32 and the trailing u32 of the real file's @IMG_JPEG header
JPEG_UNKNOWN = (829, 3071, 2562)


def j2k_codestream(bscan: np.ndarray, *, lossy: bool = False) -> bytes:
    """A raw JPEG 2000 codestream (no JP2 boxes) of one (depth, n_ascans) B-scan, as Topcon stores them:
    reversible 5/3 wavelet (lossless) unless ``lossy``."""
    from PIL import Image

    buffer = io.BytesIO()
    options = {"irreversible": True, "quality_layers": [20]} if lossy else {"irreversible": False}
    Image.fromarray(bscan).save(buffer, format="JPEG2000", no_jp2=True, **options)
    return buffer.getvalue()


def img_jpeg(codestreams: list[bytes], height: int, width: int, scan_mode: int = 2) -> bytes:
    """An @IMG_JPEG payload: scan mode u8, two u32, width, height, n_slices, u32, then per B-scan
    u32 size and its codestream."""
    unknown1, unknown2, unknown3 = JPEG_UNKNOWN
    header = struct.pack("<B6I", scan_mode, unknown1, unknown2, width, height, len(codestreams), unknown3)
    return header + b"".join(struct.pack("<I", len(c)) + c for c in codestreams)


def img_scan_03(data: np.ndarray, scan_mode: int = 2) -> bytes:
    """An @IMG_SCAN_03 payload: scan mode u8, width, height, bits per pixel, n_slices u32, format u8,
    size u32, then uint16 (n_slices, height, width)."""
    n_slices, height, width = data.shape
    voxels = np.ascontiguousarray(data, dtype="<u2").tobytes()
    return struct.pack("<B4IBI", scan_mode, width, height, 16, n_slices, 0, len(voxels)) + voxels


def img_mot_comp_03(data: np.ndarray) -> bytes:
    """An @IMG_MOT_COMP_03 payload as in the real .fds: u8 (0 there), width, height, bits per pixel,
    n_slices u32, format u8, four u32 (0 there), size u32, then uint16 (n_slices, height, width)."""
    n_slices, height, width = data.shape
    voxels = np.ascontiguousarray(data, dtype="<u2").tobytes()
    return struct.pack("<B4IB16xI", 0, width, height, 16, n_slices, 0, len(voxels)) + voxels


def capture_info_02(eye: int, scan_mode: int = 2) -> bytes:
    """@CAPTURE_INFO_02: eye u8 (0 right, 1 left), scan mode u8, zeros, as in the real file."""
    return bytes([eye, scan_mode]) + bytes(CAPTURE_INFO_BYTES - 2)


def param_scan_04(x_mm: float, y_mm: float, z_um: float) -> bytes:
    """@PARAM_SCAN_04: 12 bytes (the real file's), then x_mm, y_mm, z_um as f64, then zeros."""
    head = bytes.fromhex("031a0a02f40600001b000000")
    return head + struct.pack("<3d", x_mm, y_mm, z_um) + bytes(PARAM_SCAN_04_BYTES - 36)


def topcon_chunks(
    data: np.ndarray,
    *,
    x_mm: float,
    y_mm: float,
    z_um: float,
    eye: int,
    scan_mode: int = 2,
    lossy: bool = False,
    template: Path | None = None,
) -> dict[str, bytes]:
    """The chunks of a file holding ``data`` (n_slices, height, width): uint8 -> @IMG_JPEG (an .fda),
    uint16 -> @IMG_SCAN_03 (an .fds). A ``template`` file's other chunks are kept in their order."""
    n_slices, height, width = data.shape
    if data.dtype == np.uint8:
        volume = (
            "@IMG_JPEG",
            img_jpeg([j2k_codestream(b, lossy=lossy) for b in data], height, width, scan_mode),
        )
    else:
        volume = ("@IMG_SCAN_03", img_scan_03(data, scan_mode))
    ours = {"@CAPTURE_INFO_02": capture_info_02(eye, scan_mode), volume[0]: volume[1]}
    ours["@PARAM_SCAN_04"] = param_scan_04(x_mm, y_mm, z_um)
    if template is None:
        return ours
    chunks = {}
    for name, payload in fda_chunks(template.read_bytes()):
        if name in ("@IMG_JPEG", "@IMG_SCAN_03", "@IMG_MOT_COMP_03"):
            chunks[volume[0]] = volume[1]
        elif name in ours:
            chunks[name] = ours[name]
        elif name != "@CONTOUR_INFO":  # contours of another cube's B-scans would not fit this one
            chunks[name] = payload
    return chunks


def write_topcon(path: Path, chunks, kind: bytes = b"FDA") -> Path:
    """Write chunks ({name: payload} or [(name, payload)]) as a Topcon file with a zero end byte."""
    items = chunks.items() if isinstance(chunks, dict) else chunks
    body = b"".join(bytes([len(n)]) + n.encode() + struct.pack("<I", len(p)) + p for n, p in items)
    Path(path).write_bytes(b"FOCT" + kind + struct.pack("<2I", 1, 1001) + body + b"\0")
    return Path(path)
