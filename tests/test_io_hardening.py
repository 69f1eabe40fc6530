"""Readers refuse every bad file cleanly: each case the 5,000-file mutation run of issue 13 found,
written as a real file and read by sdk.read_volume, which must raise an sdk.errors exception that
names the file and the problem, without allocating what a header declares."""

import io
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

import sdk
from sdk.errors import FileError, InvalidVolume, OCTError, UnsupportedFormat, UnsupportedScan
from sdk.io import read_volume, write_dicom, write_npz
from tests.test_io import edited

SPACING = (0.05, 0.0039, 0.02)
SHAPE = (16, 40, 12)  # 16 frames, as in the mutated DICOM files


def volume(shape=SHAPE, dtype=np.uint16, seed=0) -> sdk.OCTVolume:
    data = np.random.default_rng(seed).integers(0, 4000, shape).astype(dtype)
    return sdk.OCTVolume(data, SPACING, "OD", "disc")


def peak_bytes_of(read) -> int:
    """Python and numpy bytes allocated at the peak of ``read()`` (tracemalloc traces both)."""
    tracemalloc.start()
    try:
        read()
    except OCTError:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


# ---- .npy


def npy_bytes(header: str, data: bytes = b"") -> bytes:
    text = header.encode("latin-1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def test_npy_header_that_breaks_numpys_parser_is_refused(tmp_path):
    path = tmp_path / "bad.npy"
    path.write_bytes(npy_bytes("{'descr': '<u1', 'fortran_order': False, 'shape': (3, 32, 8"))
    with pytest.raises(Exception) as numpy_error:  # what the issue saw: a raw tokenize.TokenError
        np.load(path)
    assert not isinstance(numpy_error.value, OCTError)
    with pytest.raises(UnsupportedFormat, match="bad.npy: the .npy header is not a dict"):
        read_volume(path, spacing_mm=SPACING, laterality="OD")


def test_npy_declaring_931_gib_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_bytes("{'descr': '<u1', 'fortran_order': False, 'shape': (1000000, 1000, 1000), }"))
    with pytest.raises(
        InvalidVolume, match=r"huge.npy: its .npy header declares .* = 931\.3 GiB, above the cap"
    ):
        read_volume(path, spacing_mm=SPACING, laterality="OD")
    assert peak_bytes_of(lambda: read_volume(path, spacing_mm=SPACING, laterality="OD")) < 2**20


@pytest.mark.parametrize(
    "header, message",
    [
        ("{'descr': '|O', 'fortran_order': False, 'shape': (3, 32, 8), }", "plain arrays"),
        ("{'descr': [('a', '<u1')], 'fortran_order': False, 'shape': (3, 32, 8), }", "plain arrays"),
        ("{'descr': '<u1', 'fortran_order': 'no', 'shape': (3, 32, 8), }", "fortran_order"),
        ("{'descr': '<u1', 'fortran_order': False, 'shape': (3, -32, 8), }", "not a tuple of sizes"),
        ("{'descr': '<u1', 'fortran_order': False, 'shape': (3, 32, 8), 'x': 1}", "not a dict"),
        ("__import__('os').system('true')", "not a dict"),
    ],
)
def test_npy_header_that_is_not_plain_numbers_is_refused(tmp_path, header, message):
    path = tmp_path / "odd.npy"
    path.write_bytes(npy_bytes(header, bytes(3 * 32 * 8)))
    with pytest.raises(UnsupportedFormat, match=message):
        read_volume(path, spacing_mm=SPACING, laterality="OD")


def test_npy_whose_data_is_shorter_or_longer_than_its_header_is_refused(tmp_path):
    path = tmp_path / "short.npy"
    np.save(path, volume().data)
    content = path.read_bytes()
    for damaged in (content[:-1], content + b"\0"):
        path.write_bytes(damaged)
        with pytest.raises(UnsupportedFormat, match="truncated or damaged"):
            read_volume(path, spacing_mm=SPACING, laterality="OD")


def test_npy_big_endian_and_fortran_order_arrays_read_as_written(tmp_path):
    data = volume().data
    for variant in (data.astype(">u2"), np.asfortranarray(data), np.asfortranarray(data.astype(">f4"))):
        np.save(tmp_path / "v.npy", variant)
        read = read_volume(tmp_path / "v.npy", spacing_mm=SPACING, laterality="OD", protocol="disc")
        np.testing.assert_array_equal(read.data, variant)
        assert read.data.dtype.isnative


def test_single_bscan_says_it_is_a_line_or_circle_scan(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, data=volume((2, 40, 12)).data[:1], spacing_mm=np.array(SPACING), laterality="OS")
    with pytest.raises(
        UnsupportedScan, match=r"one.npz holds a single B-scan \(1 B-scan of 40 x 12 samples, left eye"
    ):
        read_volume(path)
    with pytest.raises(UnsupportedScan, match="a single B-scan .* is not a volume"):
        sdk.OCTVolume(np.zeros((1, 40, 12), np.uint8), SPACING, "OD")


# ---- .npz archives


def rewritten(path, edit):
    """Re-write the zip at ``path`` member by member through ``edit(archive, name, data)``."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            edit(archive, info, data)
    return path


def test_npz_with_two_data_members_is_refused(tmp_path):
    path = write_npz(volume(), tmp_path / "twice.npz")
    other = io.BytesIO()
    np.save(other, volume(seed=1).data)

    def duplicate(archive, info, data):
        archive.writestr(info, data)
        if info.filename == "data.npy":
            archive.writestr("data.npy", other.getvalue())

    with pytest.warns(UserWarning, match="Duplicate name"):
        rewritten(path, duplicate)
    with pytest.raises(UnsupportedFormat, match="twice.npz holds the array 'data' twice"):
        read_volume(path)


@pytest.mark.parametrize("method, name", [(zipfile.ZIP_LZMA, "LZMA"), (zipfile.ZIP_BZIP2, "bzip2")])
def test_npz_member_compressed_other_than_deflate_is_refused_before_decompressing(tmp_path, method, name):
    path = write_npz(volume(), tmp_path / "packed.npz")
    rewritten(path, lambda archive, info, data: archive.writestr(info.filename, data, compress_type=method))
    with pytest.raises(UnsupportedFormat, match=f"member 'data.npy' is compressed with {name}"):
        read_volume(path)


def test_encrypted_npz_member_is_refused(tmp_path):
    path = write_npz(volume(), tmp_path / "locked.npz")
    content = bytearray(path.read_bytes())
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        at = content.find(signature)
        while at >= 0:
            content[at + flag_at] |= 0x1
            at = content.find(signature, at + 1)
    path.write_bytes(bytes(content))
    with pytest.raises(UnsupportedFormat, match="member 'data.npy' is encrypted"):
        read_volume(path)


def test_npz_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, data=np.zeros((64, 1024, 1024), np.uint8), spacing_mm=np.array(SPACING))
    assert path.stat().st_size < 2**20  # 64 MiB of zeros in under 1 MiB
    with pytest.raises(
        InvalidVolume,
        match=r"bomb.npz: its member 'data.npy' declares .* 64\.0 MiB, above the cap of 16\.0 MiB",
    ):
        read_volume(path, laterality="OD", max_voxel_bytes=16 * 2**20)
    assert peak_bytes_of(lambda: read_volume(path, laterality="OD", max_voxel_bytes=16 * 2**20)) < 2**20


def test_compressed_npz_round_trips_and_records_its_compression(tmp_path):
    written = volume()
    path = tmp_path / "small.npz"
    arrays = {"spacing_mm": np.array(SPACING), "laterality": np.array("OD"), "protocol": np.array("disc")}
    np.savez_compressed(path, data=written.data, **arrays)
    read = read_volume(path)
    np.testing.assert_array_equal(read.data, written.data)
    assert read.provenance["compression"] == "lossless (deflate)"
    assert read.provenance["spacing_mm"] == "'spacing_mm' array" and read.provenance["format"] == "npz"


def test_npz_member_whose_header_disagrees_with_the_zip_directory_is_refused(tmp_path):
    path = write_npz(volume(), tmp_path / "grown.npz")
    header = io.BytesIO()
    np.save(header, np.zeros((17, 40, 12), np.uint16))  # a header of 17 frames
    prefix = header.getvalue()[: -17 * 40 * 12 * 2]

    def edit(archive, info, data):
        archive.writestr(info, prefix + data[len(prefix) :] if info.filename == "data.npy" else data)

    rewritten(path, edit)
    with pytest.raises(
        UnsupportedFormat, match="grown.npz: its member 'data.npy' declares 17 x 40 x 12 uint16"
    ):
        read_volume(path)


def test_npz_member_with_a_bad_crc_is_refused(tmp_path):
    path = write_npz(volume(), tmp_path / "flipped.npz")
    content = bytearray(path.read_bytes())
    content[content.find(b"data.npy") + 300] ^= 0xFF  # a voxel byte of the stored member
    path.write_bytes(bytes(content))
    with pytest.raises(UnsupportedFormat, match="flipped.npz is not a readable .npz archive .*CRC"):
        read_volume(path)


# ---- what is opened


def test_fifo_named_dcm_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "scan.dcm"
    os.mkfifo(fifo)
    code = f"import sdk\ntry:\n    sdk.read_volume({str(fifo)!r})\nexcept sdk.FileError as e:\n    print(e)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "scan.dcm is a FIFO (named pipe), not a regular file" in result.stdout


def test_link_to_dev_zero_named_npz_is_refused(tmp_path):
    link = tmp_path / "scan.npz"
    link.symlink_to("/dev/zero")
    with pytest.raises(FileError, match="scan.npz is a character device, not a regular file"):
        read_volume(link)


def test_cap_must_be_a_positive_number_of_bytes(tmp_path):
    path = write_npz(volume(), tmp_path / "v.npz")
    with pytest.raises(InvalidVolume, match="max_voxel_bytes"):
        read_volume(path, max_voxel_bytes=0)


# ---- DICOM


@pytest.fixture
def opt(tmp_path):
    """A 16-frame OPT file written by the SDK and its volume."""
    written = volume()
    return write_dicom(written, tmp_path / "scan.dcm"), written


def set_frames(n):
    def edit(ds):
        ds.NumberOfFrames = n

    return edit


def test_the_fixture_reads(opt):
    path, written = opt
    read = read_volume(path)
    np.testing.assert_array_equal(read.data, written.data)
    assert read.provenance["compression"] == "none (Explicit VR Little Endian)"
    assert read.provenance["laterality"] == "ImageLaterality"
    assert read.provenance["spacing_mm"] == (
        "PixelSpacing (shared functional groups) and SpacingBetweenSlices (shared functional groups)"
    )


@pytest.mark.parametrize("frames", [0, 8, 15, 17, -16])
def test_number_of_frames_that_disagrees_with_the_pixels_is_refused(opt, frames):
    path, _ = opt
    with pytest.raises(UnsupportedFormat, match="scan.dcm (has|holds) .*(NumberOfFrames|pixel data)"):
        read_volume(edited(path, set_frames(frames)))


def test_missing_number_of_frames_is_refused(opt):
    path, _ = opt

    def drop(ds):
        del ds.NumberOfFrames

    with pytest.raises(UnsupportedFormat, match="NumberOfFrames None: .* says how many B-scans"):
        read_volume(edited(path, drop))


def test_one_frame_is_refused_as_a_single_bscan(opt):
    path, _ = opt

    def one_frame(ds):
        ds.NumberOfFrames = 1
        ds.PerFrameFunctionalGroupsSequence = ds.PerFrameFunctionalGroupsSequence[:1]
        ds.PixelData = ds.PixelData[: 40 * 12 * 2]

    with pytest.raises(
        UnsupportedScan, match=r"single B-scan \(1 B-scan of 40 x 12 samples, axial samples 0.0039 mm"
    ) as refused:
        read_volume(edited(path, one_frame))
    assert refused.value.spacing_mm == (None, 0.0039, 0.02) and refused.value.laterality == "OD"


@pytest.mark.parametrize(
    "keyword, value", [("Rows", 127), ("Rows", 39), ("Columns", 13), ("BitsAllocated", 8)]
)
def test_rows_columns_or_bits_that_disagree_with_the_pixels_are_refused(opt, keyword, value):
    path, _ = opt

    def edit(ds):
        setattr(ds, keyword, value)
        if keyword == "BitsAllocated":
            ds.BitsStored, ds.HighBit = 8, 7

    with pytest.raises(
        UnsupportedFormat, match="holds 15360 bytes of pixel data but .* disagrees with the pixels"
    ):
        read_volume(edited(path, edit))


def test_extra_frame_of_pixels_is_refused(opt):
    path, _ = opt

    def extra(ds):
        ds.PixelData = ds.PixelData + ds.PixelData[: 40 * 12 * 2]

    with pytest.raises(UnsupportedFormat, match="holds 16320 bytes of pixel data"):
        read_volume(edited(path, extra))


@pytest.mark.parametrize("items", [15, 17])
def test_per_frame_groups_that_disagree_with_the_frames_are_refused(opt, items):
    path, _ = opt

    def edit(ds):
        frames = list(ds.PerFrameFunctionalGroupsSequence)
        ds.PerFrameFunctionalGroupsSequence = (frames + frames)[:items]

    with pytest.raises(UnsupportedFormat, match=f"has {items} items in its PerFrameFunctionalGroupsSequence"):
        read_volume(edited(path, edit))


@pytest.mark.parametrize(
    "keyword, value", [("BitsAllocated", 12), ("PixelRepresentation", 1), ("HighBit", 14)]
)
def test_unusable_sample_formats_are_refused(opt, keyword, value):
    path, _ = opt
    with pytest.raises(UnsupportedFormat, match="scan.dcm has Bits"):
        read_volume(edited(path, lambda ds: setattr(ds, keyword, value)))


def test_voxels_above_bits_stored_are_refused(opt):
    path, _ = opt

    def twelve_bits(ds):
        ds.BitsStored, ds.HighBit = 11, 10  # the volume holds values up to 3999

    with pytest.raises(UnsupportedFormat, match="BitsStored 11 allows at most 2047"):
        read_volume(edited(path, twelve_bits))


def test_conflicting_laterality_is_refused(opt):
    path, _ = opt

    def conflict(ds):
        ds.ImageLaterality = "R"
        ds.SharedFunctionalGroupsSequence[0].FrameAnatomySequence[0].FrameLaterality = "L"

    with pytest.raises(
        UnsupportedFormat,
        match=r"both eyes: ImageLaterality is R .* FrameLaterality \(shared functional groups\) is L",
    ):
        read_volume(edited(path, conflict))


def test_one_frame_of_the_other_eye_is_refused(opt):
    path, _ = opt

    def per_frame(ds):
        anatomy = ds.SharedFunctionalGroupsSequence[0].FrameAnatomySequence
        for frame in ds.PerFrameFunctionalGroupsSequence:
            frame.FrameAnatomySequence = pydicom.Sequence([pydicom.Dataset()])
            frame.FrameAnatomySequence[0].FrameLaterality = anatomy[0].FrameLaterality
        ds.PerFrameFunctionalGroupsSequence[9].FrameAnatomySequence[0].FrameLaterality = "L"

    with pytest.raises(UnsupportedFormat, match=r"FrameLaterality \(per-frame functional groups\) is L"):
        read_volume(edited(path, per_frame))


def test_spacing_that_disagrees_with_the_frame_positions_is_refused(opt):
    path, _ = opt

    def edit(ds):
        ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices = 0.06

    with pytest.raises(
        UnsupportedFormat, match="SpacingBetweenSlices is 0.06 mm but the frame positions are 0.05 mm apart"
    ):
        read_volume(edited(path, edit))


def test_frames_with_different_pixel_spacing_are_refused(opt):
    path, _ = opt

    def edit(ds):
        shared = ds.SharedFunctionalGroupsSequence[0]
        for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
            frame.PixelMeasuresSequence = pydicom.Sequence([pydicom.Dataset()])
            frame.PixelMeasuresSequence[0].PixelSpacing = [0.0039, 0.02 if i else 0.03]
        del shared.PixelMeasuresSequence

    with pytest.raises(UnsupportedFormat, match="its frames give 2 different values of PixelSpacing"):
        read_volume(edited(path, edit))


def test_file_larger_than_the_cap_is_refused_before_parsing(opt):
    path, _ = opt
    with pytest.raises(
        InvalidVolume, match=r"scan.dcm is 18\.6 KiB, more than the cap of 1\.0 KiB of voxels"
    ):
        read_volume(path, max_voxel_bytes=1024)


# ---- compressed DICOM


def encapsulated(uid, codec_options=None, frames=None):
    """An edit that puts the volume's frames into ``uid``'s codestreams, encoded by Pillow."""
    from PIL import Image

    def edit(ds):
        data = ds.pixel_array
        if uid == JPEGBaseline8Bit:
            data = (data >> 4).astype(np.uint8)
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        streams = []
        for frame in data[:frames]:
            buffer = io.BytesIO()
            kind = "JPEG" if uid == JPEGBaseline8Bit else "JPEG2000"
            extra = {"no_jp2": True} if kind == "JPEG2000" else {"quality": 90}
            Image.fromarray(frame).save(buffer, format=kind, **extra, **(codec_options or {}))
            streams.append(buffer.getvalue())
        ds.PixelData = encapsulate(streams)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = uid

    return edit


LOSSY_J2K = {"irreversible": True, "quality_layers": [30]}


def test_jpeg2000_lossless_frames_round_trip(opt):
    path, written = opt
    read = read_volume(edited(path, encapsulated(JPEG2000Lossless, {"irreversible": False})))
    np.testing.assert_array_equal(read.data, written.data)
    assert read.provenance["compression"] == "lossless (JPEG 2000 Lossless)"


def test_lossy_jpeg2000_is_recorded_in_the_provenance(opt):
    path, written = opt

    def lossy(ds):
        encapsulated(JPEG2000, LOSSY_J2K)(ds)
        ds.LossyImageCompression = "01"

    read = read_volume(edited(path, lossy))
    assert read.provenance["compression"] == "lossy (JPEG 2000)"
    assert read.shape == written.shape and not np.array_equal(read.data, written.data)


@pytest.mark.parametrize(
    "uid, options, message",
    [
        (JPEG2000, LOSSY_J2K, "LossyImageCompression 00 .* JPEG 2000, a lossy compression"),
        (JPEGBaseline8Bit, None, "LossyImageCompression 00 .* JPEG Baseline, a lossy compression"),
        (JPEG2000Lossless, LOSSY_J2K, "claims JPEG 2000 Lossless but its frames use the lossy 9/7 wavelet"),
    ],
)
def test_lossy_pixels_claiming_to_be_lossless_are_refused(opt, uid, options, message):
    path, _ = opt
    with pytest.raises(UnsupportedFormat, match=message):
        read_volume(edited(path, encapsulated(uid, options)))


def test_encapsulated_frames_that_disagree_with_number_of_frames_are_refused(opt):
    path, _ = opt
    with pytest.raises(UnsupportedFormat, match="holds 15 encapsulated frames but NumberOfFrames is 16"):
        read_volume(edited(path, encapsulated(JPEG2000Lossless, {"irreversible": False}, frames=15)))


def test_encapsulated_frame_of_another_size_is_refused(opt):
    path, _ = opt

    def wider(ds):
        encapsulated(JPEG2000Lossless, {"irreversible": False})(ds)
        ds.Columns = 11

    with pytest.raises(
        UnsupportedFormat, match="frame 1 is a 40 x 12 I;16 image but the file declares 40 x 11"
    ):
        read_volume(edited(path, wider))


def test_rle_frames_round_trip(opt):
    path, written = opt
    read = read_volume(edited(path, lambda ds: ds.compress(RLELossless)))
    np.testing.assert_array_equal(read.data, written.data)
    assert read.provenance["compression"] == "lossless (RLE Lossless)"


def test_transfer_syntax_the_sdk_does_not_decode_is_named(opt):
    path, _ = opt

    def jpeg_ls(ds):
        encapsulated(JPEG2000Lossless, {"irreversible": False})(ds)
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless

    with pytest.raises(UnsupportedFormat, match=r"transfer syntax 1.2.840.10008.1.2.4.80 \(JPEG-LS Lossless"):
        read_volume(edited(path, jpeg_ls))


def test_deflated_dicom_round_trips(opt):
    path, written = opt
    read = read_volume(
        edited(path, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", DeflatedExplicitVRLittleEndian))
    )
    np.testing.assert_array_equal(read.data, written.data)
    assert read.provenance["compression"] == "none (Deflated Explicit VR Little Endian)"


def test_deflate_bomb_is_refused_before_pydicom_inflates_it(tmp_path):
    big = sdk.OCTVolume(np.zeros((64, 256, 256), np.uint16), SPACING, "OD", "disc")  # 8 MiB of zeros
    path = write_dicom(big, tmp_path / "bomb.dcm")
    edited(path, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", DeflatedExplicitVRLittleEndian))
    assert path.stat().st_size < 100_000

    def read():
        read_volume(path, max_voxel_bytes=2**20)

    with pytest.raises(
        InvalidVolume, match=r"bomb.dcm: its deflated data set inflates to more than 2\.0 MiB"
    ):
        read()
    assert peak_bytes_of(read) < 2**20
