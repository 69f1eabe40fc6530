"""The voxels of a DICOM Ophthalmic Tomography file, checked against its header before they are used.

Every size the header declares (NumberOfFrames x Rows x Columns x BitsAllocated) is checked against
the cap before anything is decoded, and then against the pixel data: a native Pixel Data element
must hold exactly that many bytes (plus one pad byte when odd), an encapsulated one exactly
NumberOfFrames frames, each decoding to Rows x Columns; the per-frame functional groups must
number NumberOfFrames. Any disagreement is refused, never re-sliced into another shape.

Transfer syntaxes read: implicit and explicit VR little endian, explicit VR big endian, deflated
explicit VR little endian (inflated here, its size bounded first; :func:`read_data_set`), RLE Lossless
(pydicom's decoder), JPEG Baseline and JPEG 2000 (Pillow, see :mod:`sdk.io.jpeg`). Compression
is reported for the volume's provenance; a lossy codestream in a file whose
LossyImageCompression says "00" (never lossy) is refused.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from typing import Literal

import numpy as np

from sdk.errors import InvalidVolume, UnsupportedFormat
from sdk.io.jpeg import decode_image, j2k_is_lossy
from sdk.io.source import VolumeFile, describe_bytes

DEFLATED = "1.2.840.10008.1.2.1.99"
NATIVE: dict[str, tuple[str, Literal["<", ">"]]] = {  # transfer syntax UID: (name, numpy byte order)
    "1.2.840.10008.1.2": ("Implicit VR Little Endian", "<"),
    "1.2.840.10008.1.2.1": ("Explicit VR Little Endian", "<"),
    DEFLATED: ("Deflated Explicit VR Little Endian", "<"),
    "1.2.840.10008.1.2.2": ("Explicit VR Big Endian", ">"),
}
RLE = "1.2.840.10008.1.2.5"
IMAGE_CODECS = {  # transfer syntax UID: (name, kind for sdk.io.jpeg, always lossy)
    "1.2.840.10008.1.2.4.50": ("JPEG Baseline", "jpeg", True),
    "1.2.840.10008.1.2.4.90": ("JPEG 2000 Lossless", "jpeg2000", False),
    "1.2.840.10008.1.2.4.91": ("JPEG 2000", "jpeg2000", False),
}
METADATA_ALLOWANCE_BYTES = 64 * 2**20  # the most a file may hold besides the voxels (or the cap, if less)
_INFLATE_CHUNK_BYTES = 1 << 16
_PIXEL_DATA_TAG = 0x7FE00010


def read_data_set(source: VolumeFile):
    """The DICOM data set of ``source`` with its file meta, read by pydicom.

    A deflated data set is inflated here, not by pydicom (which would hold the deflated bytes,
    the inflated ones and their copies at once): its size is counted first, bounded by the cap
    plus METADATA_ALLOWANCE_BYTES, then it is inflated into one buffer of that size and parsed
    from it, the pixel data a view of the buffer, so reading holds the inflated bytes once.
    """
    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble

    check_file_size(source)
    source.file.seek(0)
    read_preamble(source.file, False)
    meta = _read_file_meta_info(source.file)
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
        source.file.seek(0)
        return pydicom.dcmread(source.file)
    buffer = _inflate(source, source.file.tell())
    reader = _MemoryReader(buffer)
    # pydicom annotates fp as typing.BinaryIO; it only reads, seeks and tells, as this RawIOBase does
    ds = read_dataset(
        reader,  # type: ignore[arg-type]
        False,
        True,
        stop_when=lambda tag, vr, length: tag == _PIXEL_DATA_TAG,
    )
    ds.file_meta = meta
    at = reader.tell()  # the Pixel Data element, taken as a view of the buffer: no copy
    if at + 12 <= len(buffer):
        group, element, vr, length = struct.unpack_from("<HH2s2xI", buffer, at)
        if (group << 16 | element, vr) in ((_PIXEL_DATA_TAG, b"OB"), (_PIXEL_DATA_TAG, b"OW")):
            ds.PixelData = memoryview(buffer)[at + 12 : at + 12 + length]
    return ds


def check_file_size(source: VolumeFile) -> None:
    """Refuse a file larger than the cap plus METADATA_ALLOWANCE_BYTES (or twice the cap, if less)
    before pydicom reads it whole."""
    allowance = _allowance(source)
    if source.size_bytes > source.max_voxel_bytes + allowance:
        raise InvalidVolume(
            f"{source.path} is {describe_bytes(source.size_bytes)}, more than the cap of "
            f"{describe_bytes(source.max_voxel_bytes)} of voxels plus {describe_bytes(allowance)} of "
            "attributes: if the file is genuine, pass a larger max_voxel_bytes to read_volume"
        )


def _allowance(source: VolumeFile) -> int:
    return min(METADATA_ALLOWANCE_BYTES, source.max_voxel_bytes)


def _inflate(source: VolumeFile, offset: int) -> bytearray:
    """The deflated data set from ``offset``: counted (keeping nothing), refused past the cap plus
    the allowance, then inflated into a buffer of exactly its size."""
    limit = source.max_voxel_bytes + _allowance(source)
    n_bytes = _inflate_chunks(source, offset, limit, None)
    buffer = bytearray(n_bytes)
    _inflate_chunks(source, offset, limit, memoryview(buffer))
    return buffer


def _inflate_chunks(source: VolumeFile, offset: int, limit: int, out: memoryview | None) -> int:
    """Inflate from ``offset`` one chunk at a time into ``out`` (or nowhere); returns the size."""
    inflater, n_bytes = zlib.decompressobj(-zlib.MAX_WBITS), 0
    source.file.seek(offset)
    try:
        while (chunk := source.file.read(_INFLATE_CHUNK_BYTES)) and not inflater.eof:
            while chunk and n_bytes <= limit:
                piece = inflater.decompress(chunk, _INFLATE_CHUNK_BYTES)
                if out is not None:
                    out[n_bytes : n_bytes + len(piece)] = piece
                n_bytes += len(piece)
                chunk = inflater.unconsumed_tail
            if n_bytes > limit:
                raise InvalidVolume(
                    f"{source.path}: its deflated data set inflates to more than {describe_bytes(limit)} "
                    f"(the cap of {describe_bytes(source.max_voxel_bytes)} of voxels plus attributes): "
                    "if the file is genuine, pass a larger max_voxel_bytes to read_volume"
                )
    except zlib.error as error:
        raise UnsupportedFormat(f"{source.path}: its deflated data set is damaged ({error})") from error
    return n_bytes


class _MemoryReader(io.RawIOBase):
    """A seekable reader over a buffer whose ``read`` copies only what it returns."""

    def __init__(self, buffer: bytearray):
        super().__init__()
        self._view, self._at = memoryview(buffer), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(self._at + size, len(self._view))
        piece, self._at = bytes(self._view[self._at : end]), max(end, self._at)
        return piece

    def readinto(self, buffer) -> int:
        piece = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(piece)] = piece
        return len(piece)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._view)}[whence]
        self._at = max(base + offset, 0)
        return self._at

    def tell(self) -> int:
        return self._at


def voxels(ds, source: VolumeFile, geometry: tuple[int, int, int, np.dtype]) -> tuple[np.ndarray, str]:
    """(data (n_bscans, depth, n_ascans), compression for the provenance) of an OPT data set of
    ``geometry`` (from :func:`geometry`), decoded only after the cap check; UnsupportedFormat when
    the pixel data disagrees with the header."""
    path = source.path
    n_frames, rows, columns, dtype = geometry
    source.check_voxels((n_frames, rows, columns), dtype.itemsize, "its NumberOfFrames x Rows x Columns")
    uid = str(ds.file_meta.get("TransferSyntaxUID", ""))
    declared_lossy = str(ds.get("LossyImageCompression", "")).strip()
    if uid in NATIVE:
        name, byte_order = NATIVE[uid]
        data = _native(ds.PixelData, (n_frames, rows, columns), dtype.newbyteorder(byte_order), path)
        lossy_codec = False
    elif uid == RLE:
        name, lossy_codec = "RLE Lossless", False
        data = _rle(ds, (n_frames, rows, columns), dtype, path)
    elif uid in IMAGE_CODECS:
        name, kind, always_lossy = IMAGE_CODECS[uid]
        data, lossy_codec = _codec_frames(ds, kind, (n_frames, rows, columns), dtype, path)
        lossy_codec = lossy_codec or always_lossy
        if lossy_codec and uid == "1.2.840.10008.1.2.4.90":
            raise UnsupportedFormat(
                f"{path} claims JPEG 2000 Lossless but its frames use the lossy 9/7 wavelet"
            )
    else:
        raise UnsupportedFormat(
            f"{path} uses the transfer syntax {uid or 'none'} ({_uid_name(uid)}); the SDK reads "
            "uncompressed, deflated, RLE, JPEG Baseline and JPEG 2000 pixel data"
        )
    if lossy_codec and declared_lossy == "00":
        raise UnsupportedFormat(
            f"{path} says LossyImageCompression 00 (never lossily compressed) but its pixel data is "
            f"{name}, a lossy compression: the header contradicts the pixels"
        )
    _check_bits_stored(ds, data, path)
    return data, _compression(name, lossy_codec, declared_lossy, ds)


def geometry(ds, path) -> tuple[int, int, int, np.dtype]:
    """(NumberOfFrames, Rows, Columns, voxel dtype) after every cross-check of the header."""
    if "PixelData" not in ds:
        raise UnsupportedFormat(f"{path} has no pixel data: the file is incomplete or truncated")
    if ds.get("SamplesPerPixel", 1) != 1 or ds.get("PhotometricInterpretation") != "MONOCHROME2":
        raise UnsupportedFormat(
            f"{path} has {ds.get('PhotometricInterpretation')} pixels with {ds.get('SamplesPerPixel')} "
            "samples; an OCT volume is MONOCHROME2 with 1 sample per pixel"
        )
    n_frames = _positive_int(ds, "NumberOfFrames", path)
    rows, columns = _positive_int(ds, "Rows", path), _positive_int(ds, "Columns", path)
    bits = ds.get("BitsAllocated")
    if bits not in (8, 16) or ds.get("PixelRepresentation", 0) != 0:
        raise UnsupportedFormat(
            f"{path} has BitsAllocated {bits} and PixelRepresentation {ds.get('PixelRepresentation')}; "
            "an OCT volume is unsigned 8 or 16 bits"
        )
    stored, high = ds.get("BitsStored"), ds.get("HighBit")
    if not (isinstance(stored, int) and 1 <= stored <= bits and high == stored - 1):
        raise UnsupportedFormat(f"{path} has BitsStored {stored} and HighBit {high} for BitsAllocated {bits}")
    for name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        expected = n_frames if name.startswith("PerFrame") else 1
        if name in ds and len(ds[name].value) != expected:
            raise UnsupportedFormat(
                f"{path} has {len(ds[name].value)} items in its {name} but NumberOfFrames "
                f"{n_frames} needs {expected}: the header disagrees with itself"
            )
    return n_frames, rows, columns, np.dtype(np.uint8 if bits == 8 else np.uint16)


def _positive_int(ds, keyword: str, path) -> int:
    value = ds.get(keyword)
    try:
        number = int(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        number = None
    if number is None or number < 1 or number != float(value):
        raise UnsupportedFormat(
            f"{path} has {keyword} {value!r}: an OCT volume needs a positive whole number there"
            + (" (a multi-frame image says how many B-scans it holds)" if keyword == "NumberOfFrames" else "")
        )
    return number


def _native(pixel_data: bytes, shape, dtype: np.dtype, path) -> np.ndarray:
    n_bytes = math.prod(shape) * dtype.itemsize
    if len(pixel_data) not in (n_bytes, n_bytes + (n_bytes % 2)):
        raise UnsupportedFormat(
            f"{path} holds {len(pixel_data)} bytes of pixel data but NumberOfFrames x Rows x Columns = "
            f"{' x '.join(map(str, shape))} samples of {dtype.itemsize} bytes need {n_bytes}: the header "
            "disagrees with the pixels"
        )
    return np.frombuffer(pixel_data, dtype=dtype, count=math.prod(shape)).reshape(shape)


def _frames(ds, n_frames: int, path):
    """The encapsulated frames (an iterator, so that only one frame's bytes are copied at a time),
    after checking that there are NumberOfFrames of them."""
    from pydicom.encaps import generate_frames

    found = sum(1 for _ in generate_frames(ds.PixelData, number_of_frames=n_frames))
    if found != n_frames:
        raise UnsupportedFormat(
            f"{path} holds {found} encapsulated frames but NumberOfFrames is {n_frames}: the header "
            "disagrees with the pixels"
        )
    return generate_frames(ds.PixelData, number_of_frames=n_frames)


def _rle(ds, shape, dtype: np.dtype, path) -> np.ndarray:
    _frames(ds, shape[0], path)
    data = ds.pixel_array
    data = data[np.newaxis] if data.ndim == 2 else data
    if data.shape != tuple(shape) or data.dtype.itemsize != dtype.itemsize:
        raise UnsupportedFormat(f"{path}: its RLE frames decode to {data.shape}, not {tuple(shape)}")
    return data.astype(dtype, copy=False)


def _codec_frames(ds, kind: str, shape, dtype: np.dtype, path) -> tuple[np.ndarray, bool]:
    n_frames, rows, columns = shape
    data, lossy = np.empty(shape, dtype=dtype), False
    for i, frame in enumerate(_frames(ds, n_frames, path)):
        data[i] = decode_image(frame, kind, (rows, columns), dtype, path, f"frame {i + 1}")
        lossy = lossy or (kind == "jpeg2000" and bool(j2k_is_lossy(frame)))
    return data, lossy


def _check_bits_stored(ds, data: np.ndarray, path) -> None:
    stored = int(ds.BitsStored)
    if stored < data.dtype.itemsize * 8 and data.size and int(data.max()) >= 1 << stored:
        raise UnsupportedFormat(
            f"{path} has voxels up to {int(data.max())} but BitsStored {stored} allows at most "
            f"{(1 << stored) - 1}: the header disagrees with the pixels"
        )


def _compression(name: str, lossy_codec: bool, declared_lossy: str, ds) -> str:
    if lossy_codec:
        return f"lossy ({name})"
    if declared_lossy == "01":
        ratio = ds.get("LossyImageCompressionRatio")
        return (
            f"lossy before this file (LossyImageCompression 01{f', ratio {ratio}' if ratio else ''}); {name}"
        )
    return f"none ({name})" if name in (n for n, _ in NATIVE.values()) else f"lossless ({name})"


def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name if uid else "no transfer syntax"
