"""JPEG and JPEG 2000 images inside volume files (Topcon B-scans, encapsulated DICOM frames), via Pillow.

Pillow is imported inside the functions (the ``topcon`` extra); each image's size is read from its
header and checked against what the file declares before it is decoded, so a damaged codestream
cannot make the decoder allocate more than one declared B-scan.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from sdk.errors import OCTError, UnsupportedFormat

J2K_START = b"\xff\x4f\xff\x51"  # SOC then SIZ: the start of a JPEG 2000 codestream
_J2K_COD, _J2K_SOT = 0xFF52, 0xFF90
_J2K_IRREVERSIBLE = 0  # COD wavelet transformation: 0 = 9/7 irreversible (lossy), 1 = 5/3 reversible
_MODES = {"L": np.uint8, "I;16": np.uint16, "I;16L": np.uint16}
PILLOW_FORMATS = {"jpeg2000": "JPEG2000", "jpeg": "JPEG"}


def j2k_is_lossy(codestream: bytes) -> bool | None:
    """True for a JPEG 2000 codestream coded with the irreversible 9/7 wavelet (lossy), False for the
    reversible 5/3 one, None when its main header has no readable COD segment."""
    start = codestream.find(J2K_START, 0, 4096)
    offset = start + 2 if start >= 0 else len(codestream)
    while offset + 4 <= len(codestream):
        marker, length = struct.unpack_from(">HH", codestream, offset)
        if marker == _J2K_SOT or length < 2:
            return None
        if marker == _J2K_COD and length >= 12 and offset + 14 <= len(codestream):
            return codestream[offset + 13] == _J2K_IRREVERSIBLE
        offset += 2 + length
    return None


def decode_image(data: bytes, kind: str, shape_px: tuple[int, int], dtype, path, what: str) -> np.ndarray:
    """Decode one ``kind`` ("jpeg2000" or "jpeg") image of ``shape_px`` = (rows, columns) and ``dtype``.

    Raises UnsupportedFormat naming ``what`` when the image is damaged or its header disagrees with
    the declared shape or sample type; the header is checked before the pixels are decoded.
    """
    image_module = import_pillow()
    rows, columns = shape_px
    try:
        with image_module.open(io.BytesIO(data), formats=[PILLOW_FORMATS[kind]]) as image:
            if image.size != (columns, rows) or _MODES.get(image.mode) != dtype:
                found = f"{image.size[1]} x {image.size[0]} {image.mode}"
                raise UnsupportedFormat(
                    f"{path}: {what} is a {found} image but the file declares {rows} x {columns} "
                    f"{np.dtype(dtype)}: the file is damaged"
                )
            pixels = np.asarray(image)
    except OCTError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged codestream fails inside Pillow in many ways
        raise UnsupportedFormat(
            f"{path}: {what} cannot be decoded ({type(error).__name__}: {error})"
        ) from error
    if pixels.shape != (rows, columns):
        raise UnsupportedFormat(f"{path}: {what} decodes to {pixels.shape}, not {(rows, columns)}")
    return pixels.astype(dtype, copy=False)


def import_pillow():
    """PIL.Image, or UnsupportedFormat saying which extra installs it."""
    try:
        from PIL import Image
    except ImportError as error:
        raise UnsupportedFormat(
            "JPEG and JPEG 2000 images in volume files need Pillow, which is not installed: "
            "pip install 'octclassify[topcon]'"
        ) from error
    return Image
