"""sdk.read_volume, the reader registry, and the .npz / DICOM Ophthalmic Tomography writers."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

import sdk
import sdk.io
from sdk.errors import FileError, InvalidVolume, UnsupportedFormat
from sdk.io import read_volume, register_reader, write_dicom, write_npz
from sdk.io.dicom import OPT_SOP_CLASS_UID

CASES = [  # dtype, shape (n_bscans, depth, n_ascans), spacing_mm (bscan, axial, ascan), laterality, protocol
    (np.uint8, (5, 40, 9), (0.0471234567891, 0.0038765432101, 0.0117654321987), "OD", "wide"),
    (np.uint16, (3, 33, 17), (0.1183333333333, 0.0019531250000, 0.0058593750000), "OS", "disc"),
    (np.uint16, (8, 64, 11), (0.03, 0.0045, 0.025), "OS", "macula"),
    (np.uint8, (3, 33, 9), (0.24, 0.0039, 0.006), "OD", "disc"),  # odd byte count,
]


def make_volume(dtype, shape, spacing_mm, laterality, protocol, seed=0):
    """Random voxels over the dtype's full range with brighter layer-like bands, like a phantom."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    data = rng.integers(0, info.max // 2, shape, dtype=dtype, endpoint=True)
    data[:, shape[1] // 3 : shape[1] // 2] += info.max // 2
    return sdk.OCTVolume(data, spacing_mm, laterality, protocol)


def assert_same(read, written):
    assert read.data.dtype == written.data.dtype
    np.testing.assert_array_equal(read.data, written.data)
    np.testing.assert_allclose(read.spacing_mm, written.spacing_mm, rtol=0, atol=1e-9)
    assert read.laterality == written.laterality
    assert read.protocol == written.protocol


@pytest.fixture
def opt_file(tmp_path):
    """An OPT file written by the SDK: (path, volume)."""
    volume = make_volume(*CASES[1])
    return write_dicom(volume, tmp_path / "scan.dcm"), volume


def edited(path: Path, edit) -> Path:
    """Re-save a DICOM file after edit(ds) changed it with plain pydicom."""
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path, enforce_file_format=True)
    return path


# ---- round trips


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].__name__}-{c[3]}-{c[4]}")
def test_dicom_round_trip(tmp_path, case):
    volume = make_volume(*case)
    path = write_dicom(volume, tmp_path / "scan.dcm")
    assert_same(read_volume(path), volume)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0].__name__}-{c[3]}-{c[4]}")
def test_npz_round_trip(tmp_path, case):
    volume = make_volume(*case)
    path = write_npz(volume, tmp_path / "scan.npz")
    assert_same(read_volume(path), volume)


def test_float_volume_round_trips_through_npz(tmp_path):
    data = np.random.default_rng(1).random((4, 40, 10)).astype(np.float32)
    volume = sdk.OCTVolume(data, (0.05, 0.004, 0.01), "OD", "macula")
    assert_same(read_volume(write_npz(volume, tmp_path / "v.npz")), volume)


def test_dicom_file_is_a_genuine_opt_instance(opt_file):
    path, volume = opt_file
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == OPT_SOP_CLASS_UID == pydicom.uid.OphthalmicTomographyImageStorage
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.Modality == "OPT"
    assert ds.NumberOfFrames == volume.shape[0] == len(ds.PerFrameFunctionalGroupsSequence)
    assert (ds.Rows, ds.Columns) == volume.shape[1:]
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.BitsAllocated == ds.BitsStored == 16
    assert ds.ImageLaterality == "L"
    assert ds.ProtocolName == "disc"
    assert ds.OphthalmicVolumetricPropertiesFlag == "YES"
    shared = ds.SharedFunctionalGroupsSequence[0]
    assert shared.FrameAnatomySequence[0].FrameLaterality == "L"
    measures = shared.PixelMeasuresSequence[0]
    bscan, axial, ascan = volume.spacing_mm
    np.testing.assert_allclose([float(v) for v in measures.PixelSpacing], [axial, ascan], atol=1e-9)
    assert float(measures.SliceThickness) == pytest.approx(bscan, abs=1e-9)
    np.testing.assert_array_equal(ds.pixel_array, volume.data)


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) not installed"
)
def test_dicom_file_passes_the_dicom3tools_iod_validator(opt_file):
    result = subprocess.run(["dciodvfy", str(opt_file[0])], capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    # OPT forbids concatenations by fixing ConcatenationFrameOffsetNumber = 0 and In-concatenation
    # Number/Total Number = 1 (PS3.3 C.8.17.7); dciodvfy's generic multi-frame rule flags those values.
    assert [e for e in errors if "oncatenation" not in e] == []


def test_each_dicom_file_gets_new_uids(tmp_path):
    volume = make_volume(*CASES[0])
    first = pydicom.dcmread(write_dicom(volume, tmp_path / "a.dcm"))
    second = pydicom.dcmread(
        write_dicom(volume, tmp_path / "b.dcm", study_instance_uid=first.StudyInstanceUID)
    )
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.SeriesInstanceUID != second.SeriesInstanceUID
    assert first.StudyInstanceUID == second.StudyInstanceUID


def test_dicom_without_suffix_is_found_by_its_marker(opt_file, tmp_path):
    path, volume = opt_file
    bare = path.rename(tmp_path / "IM000001")
    assert_same(read_volume(bare), volume)


def test_keywords_override_file_metadata(opt_file):
    path, volume = opt_file
    read = read_volume(path, spacing_mm=(0.1, 0.002, 0.02), laterality="R", protocol="wide")
    assert read.spacing_mm == (0.1, 0.002, 0.02)
    assert (read.laterality, read.protocol) == ("OD", "wide")
    np.testing.assert_array_equal(read.data, volume.data)


def _vendor_style(ds):
    """Spacing only in each frame's Pixel Measures and positions, laterality only per frame,
    a vendor protocol name, the region imaged coded as the optic nerve head."""
    shared = ds.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    del measures.SliceThickness, measures.SpacingBetweenSlices
    for frame in ds.PerFrameFunctionalGroupsSequence:
        frame.PixelMeasuresSequence = shared.PixelMeasuresSequence
        frame.FrameAnatomySequence = shared.FrameAnatomySequence
    del shared.PixelMeasuresSequence, shared.FrameAnatomySequence, ds.ImageLaterality
    ds.ProtocolName = "Optic Disc Cube 200x200"


def test_dicom_reader_falls_back_to_per_frame_groups_positions_and_region(opt_file):
    path, volume = opt_file
    assert_same(read_volume(edited(path, _vendor_style)), volume)


def test_dicom_top_level_spacing_and_series_laterality_are_read(opt_file):
    path, volume = opt_file

    def top_level(ds):
        measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        ds.PixelSpacing, ds.SliceThickness = measures.PixelSpacing, measures.SliceThickness
        del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence, ds.ImageLaterality
        del ds.SharedFunctionalGroupsSequence[0].FrameAnatomySequence
        ds.Laterality = "L"

    assert_same(read_volume(edited(path, top_level)), volume)


def test_dicom_without_protocol_takes_it_from_a_wide_field_or_the_caller(tmp_path):
    def no_protocol(ds):
        del ds.ProtocolName, ds.AnatomicRegionSequence

    small = edited(write_dicom(make_volume(*CASES[1]), tmp_path / "disc.dcm"), no_protocol)
    with pytest.raises(InvalidVolume, match=r"disc.dcm: .* 0\.4 x 0\.1 mm field .* protocol='disc'"):
        read_volume(small)
    read = read_volume(small, protocol="disc")
    assert (read.protocol, read.provenance["protocol"]) == ("disc", "caller")
    # 6.0 x 9.0 mm (B-scan x A-scan axis) holds the disc and the macula maps: the field says "wide"
    wide = make_volume(np.uint8, (40, 32, 90), (0.15, 0.004, 0.1), "OD", "wide")
    read = read_volume(edited(write_dicom(wide, tmp_path / "wide.dcm"), no_protocol))
    assert (read.protocol, read.provenance["protocol"]) == (
        "wide",
        "field of view 6.0 x 9.0 mm (B-scan x A-scan axis)",
    )
    narrower = make_volume(np.uint8, (40, 32, 89), (0.15, 0.004, 0.1), "OD", "wide")
    with pytest.raises(InvalidVolume, match="protocol"):
        read_volume(edited(write_dicom(narrower, tmp_path / "narrow.dcm"), no_protocol))


def test_dicom_without_spacing_needs_it_as_argument(opt_file):
    path, volume = opt_file

    def no_spacing(ds):
        del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
        for frame in ds.PerFrameFunctionalGroupsSequence:
            del frame.PlanePositionSequence

    edited(path, no_spacing)
    with pytest.raises(InvalidVolume, match="spacing_mm"):
        read_volume(path)
    assert read_volume(path, spacing_mm=volume.spacing_mm).spacing_mm == volume.spacing_mm


def test_registered_reader_is_used_by_sniff_then_suffix(tmp_path, monkeypatch):
    monkeypatch.setattr(sdk.io, "_FORMATS", dict(sdk.io._FORMATS))
    volume = make_volume(*CASES[0])

    def reader(path):
        return np.asarray(volume.data), {"spacing_mm": volume.spacing_mm, "laterality": "OD"}

    register_reader("vendor", (".vnd",), reader, sniff=lambda head: head.startswith(b"VENDOR"))
    (tmp_path / "a.vnd").write_bytes(b"anything")
    (tmp_path / "b.bin").write_bytes(b"VENDOR data")
    assert read_volume(tmp_path / "a.vnd", protocol="disc").laterality == "OD"
    assert read_volume(tmp_path / "b.bin", protocol="macula").provenance["spacing_mm"] == "the file"
    assert any(name.startswith("vendor") for name in sdk.io.supported_formats())


# ---- bad inputs


def test_missing_file(tmp_path):
    with pytest.raises(FileError, match="nothing.dcm"):
        read_volume(tmp_path / "nothing.dcm")


def test_folder(tmp_path):
    with pytest.raises(FileError, match="folder"):
        read_volume(tmp_path)


def test_unknown_format_lists_supported_ones(tmp_path):
    path = tmp_path / "scan.xyz"
    path.write_bytes(b"\x00" * 300)
    with pytest.raises(UnsupportedFormat, match=r"dicom \(\.dcm.*npz \(\.npz\).*npy \(\.npy\)"):
        read_volume(path)


def test_non_oct_dicom(tmp_path):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 4, 4, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(16)
    path = tmp_path / "capture.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(UnsupportedFormat, match="Secondary Capture Image Storage.*modality OT"):
        read_volume(path)


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.1], ids=["half", "last-byte-cut", "header-only"])
def test_truncated_dicom(opt_file, keep):
    path, _ = opt_file
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(UnsupportedFormat, match="truncated"):
        read_volume(path)


def test_dicom_without_pixel_data(opt_file):
    path, _ = opt_file

    def no_pixels(ds):
        del ds.PixelData

    with pytest.raises(UnsupportedFormat, match="no pixel data"):
        read_volume(edited(path, no_pixels))


def test_text_file_renamed_dcm(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("not an image\n" * 20)
    with pytest.raises(UnsupportedFormat, match="not a readable DICOM file"):
        read_volume(path)


def test_npy_needs_spacing_and_laterality(tmp_path):
    volume = make_volume(*CASES[0])
    path = tmp_path / "voxels.npy"
    np.save(path, volume.data)
    with pytest.raises(InvalidVolume, match="spacing_mm or laterality"):
        read_volume(path)
    with pytest.raises(InvalidVolume, match="laterality"):
        read_volume(path, spacing_mm=volume.spacing_mm)
    read = read_volume(path, spacing_mm=volume.spacing_mm, laterality="OD", protocol="wide")
    assert_same(read, volume)


def test_npz_missing_metadata_key(tmp_path):
    volume = make_volume(*CASES[0])
    path = tmp_path / "partial.npz"
    np.savez(path, data=volume.data, spacing_mm=np.asarray(volume.spacing_mm), protocol="wide")
    with pytest.raises(InvalidVolume, match="laterality"):
        read_volume(path)
    assert read_volume(path, laterality="OD").laterality == "OD"


def test_npz_missing_data(tmp_path):
    path = tmp_path / "nodata.npz"
    np.savez(path, spacing_mm=np.ones(3), laterality="OD", protocol="wide")
    with pytest.raises(UnsupportedFormat, match="no 'data' array"):
        read_volume(path)


def test_npz_with_pickle_inside(tmp_path):
    path = tmp_path / "pickled.npz"
    data = make_volume(*CASES[0]).data
    np.savez(path, data=data, spacing_mm=np.array([0.05, 0.004, 0.01], dtype=object), laterality="OD")
    with pytest.raises(UnsupportedFormat, match="plain arrays"):
        read_volume(path)


def test_truncated_npz(tmp_path):
    path = write_npz(make_volume(*CASES[0]), tmp_path / "scan.npz")
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UnsupportedFormat, match="scan.npz"):
        read_volume(path)


def test_unreadable_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sdk.io, "_FORMATS", dict(sdk.io._FORMATS))

    def reader(path):
        raise PermissionError(13, "Permission denied", str(path))

    register_reader("npy", (".npy",), reader)
    path = tmp_path / "locked.npy"
    path.write_bytes(b"x")
    with pytest.raises(FileError, match="cannot read .*locked.npy: Permission denied"):
        read_volume(path)


# ---- writers


@pytest.mark.parametrize("write, name", [(write_npz, "out.npz"), (write_dicom, "out.dcm")])
def test_existing_output_is_kept_without_overwrite(tmp_path, write, name):
    path = tmp_path / name
    path.write_bytes(b"precious")
    volume = make_volume(*CASES[0])
    with pytest.raises(FileError, match="overwrite=True"):
        write(volume, path)
    assert path.read_bytes() == b"precious"
    write(volume, path, overwrite=True)
    assert_same(read_volume(path), volume)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


@pytest.mark.parametrize("write", [write_npz, write_dicom])
def test_write_into_missing_folder(tmp_path, write):
    with pytest.raises(FileError, match="cannot write"):
        write(make_volume(*CASES[0]), tmp_path / "no" / "such" / "scan")


def test_float_volume_is_not_written_as_dicom(tmp_path):
    volume = sdk.OCTVolume(np.zeros((2, 32, 8), np.float32), (0.05, 0.004, 0.01), "OD")
    with pytest.raises(InvalidVolume, match="quantise"):
        write_dicom(volume, tmp_path / "float.dcm")
    assert not list(tmp_path.iterdir())


# ---- without pydicom


def test_dicom_without_pydicom_says_which_extra(opt_file, monkeypatch):
    path, _ = opt_file
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(UnsupportedFormat, match=r"octclassify\[dicom\]"):
        read_volume(path)
    with pytest.raises(UnsupportedFormat, match=r"octclassify\[dicom\]"):
        write_dicom(make_volume(*CASES[0]), path.with_name("new.dcm"))


def test_sdk_io_imports_and_reads_npz_without_pydicom(tmp_path):
    path = write_npz(make_volume(*CASES[0]), tmp_path / "scan.npz")
    code = (
        "import sys; sys.modules['pydicom'] = None\n"
        "import sdk\n"
        f"print(sdk.read_volume({str(path)!r}).laterality)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "OD"
