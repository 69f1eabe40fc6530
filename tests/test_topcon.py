"""sdk.io.topcon: the real Topcon files, cubes written in their layout, and every damage refused."""

import struct
import sys

import numpy as np
import pytest

from sdk.errors import InvalidVolume, UnsupportedFormat, UnsupportedScan
from sdk.io import read_volume
from tests import real_oct
from tests.topcon_writer import (
    capture_info_02,
    fda_chunks,
    img_jpeg,
    img_mot_comp_03,
    param_scan_04,
    topcon_chunks,
    write_topcon,
)

FDA = real_oct.REAL_OCT / "topcon-3doct1000-macula-OS-1bscan.fda"
FDS = real_oct.REAL_OCT / "topcon-headers-only.fds"
needs_real = pytest.mark.skipif(
    not FDA.is_file(), reason=f"real Topcon files not found in {real_oct.REAL_OCT}"
)
SHAPE = (6, 40, 24)  # n_slices, height (depth), width (A-scans)


def cube(dtype=np.uint8, shape=SHAPE, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


def write_cube(tmp_path, data=None, name="cube.fda", kind=b"FDA", **fields):
    data = cube() if data is None else data
    geometry = {"x_mm": 6.0, "y_mm": 6.0, "z_um": 3.5, "eye": 1, **fields}
    chunks = topcon_chunks(data, **geometry)
    return write_topcon(tmp_path / name, chunks, kind), data


def edit_chunk(path, name, edit):
    """Rewrite ``path`` with ``edit(payload) -> payload`` applied to its chunk ``name``."""
    chunks = [(n, edit(p) if n == name else p) for n, p in fda_chunks(path.read_bytes())]
    return write_topcon(path, chunks, path.read_bytes()[4:7])


# ---- the real files


@needs_real
def test_real_fda_is_refused_as_a_single_bscan_with_its_spacing_and_eye():
    with pytest.raises(
        UnsupportedScan, match=r"single B-scan.*650 x 512 samples.*left eye \(OS\)"
    ) as refused:
        read_volume(FDA)
    error = refused.value
    assert error.shape == (1, 650, 512) and error.laterality == "OS"
    assert error.spacing_mm == pytest.approx((None, 0.0035, 6.0 / 512), abs=1e-12)
    assert error.laterality == real_oct.load(FDA.name).laterality  # the lead's parser of the same bytes


@needs_real
def test_real_fds_holds_no_image_and_is_refused(tmp_path):
    with pytest.raises(
        InvalidVolume, match=r"topcon-headers-only.fds: .*3 samples along depth \(shape \(4, 3, 2\)\)"
    ):
        read_volume(FDS, protocol="macula")


@needs_real
def test_real_fds_voxels_are_read_in_the_layout_of_its_header(tmp_path):
    """The .fds's 4 x 3 x 2 @IMG_SCAN_03 voxels, tiled to a readable size in the same chunk layout."""
    raw = dict(fda_chunks(FDS.read_bytes()))["@IMG_SCAN_03"]
    assert struct.unpack_from("<B4IBI", raw) == (2, 2, 3, 16, 4, 0, 48) and len(raw) == 22 + 48
    tiny = np.frombuffer(raw, "<u2", offset=22).reshape(4, 3, 2)
    data = np.tile(tiny, (1, 11, 4))  # 4 x 33 x 8: each voxel where the header says it is
    path, _ = write_cube(tmp_path, data.astype(np.uint16), "tiled.fds", b"FDS", x_mm=0.4, y_mm=0.8, z_um=3.5)
    read = read_volume(path, protocol="disc")
    np.testing.assert_array_equal(read.data, data)
    assert read.spacing_mm == pytest.approx((0.2, 0.0035, 0.05))
    assert read.provenance["voxels"] == "@IMG_SCAN_03" and read.provenance["compression"] == "none"


@needs_real
def test_motion_corrected_voxels_are_read_in_the_layout_of_the_real_chunk(tmp_path):
    raw = dict(fda_chunks(FDS.read_bytes()))["@IMG_MOT_COMP_03"]
    assert struct.unpack_from("<B4IB16xI", raw) == (0, 2, 3, 16, 4, 0, 48) and len(raw) == 38 + 48
    assert img_mot_comp_03(np.frombuffer(raw, "<u2", offset=38).reshape(4, 3, 2)) == raw
    data = cube(np.uint16)
    chunks = topcon_chunks(data, x_mm=6.0, y_mm=0.6, z_um=3.5, eye=0)
    del chunks["@IMG_SCAN_03"]
    chunks["@IMG_MOT_COMP_03"] = img_mot_comp_03(data)
    read = read_volume(write_topcon(tmp_path / "motion.fds", chunks, b"FDS"), protocol="disc")
    np.testing.assert_array_equal(read.data, data)
    assert read.provenance["voxels"] == "@IMG_MOT_COMP_03"
    del chunks["@CAPTURE_INFO_02"]  # its chunk header has no scan mode: the file must say it elsewhere
    with pytest.raises(UnsupportedFormat, match="does not record its scan mode"):
        read_volume(write_topcon(tmp_path / "motion.fds", chunks, b"FDS"), protocol="disc")


@needs_real
def test_cube_of_real_codestreams_in_the_real_file_reads_each_bscan_as_the_reference_decoder(tmp_path):
    chunks = fda_chunks(FDA.read_bytes())
    jpeg = dict(chunks)["@IMG_JPEG"]
    (size,) = struct.unpack_from("<I", jpeg, 25)
    codestream = jpeg[29 : 29 + size]
    n = 8
    rebuilt = [
        (name, img_jpeg([codestream] * n, 650, 512) if name == "@IMG_JPEG" else p) for name, p in chunks
    ]
    read = read_volume(write_topcon(tmp_path / "three.fda", rebuilt), protocol="macula")
    reference = real_oct.load(FDA.name).bscan  # Pillow via the lead's own parser
    assert read.shape == (n, 650, 512)
    for bscan in read.data:
        np.testing.assert_array_equal(bscan, reference)
    assert read.spacing_mm == pytest.approx((6.0 / n, 0.0035, 6.0 / 512))
    assert read.laterality == "OS" and read.protocol == "macula"
    assert read.provenance["compression"] == "lossy (JPEG 2000, irreversible 9/7 wavelet)"
    assert read.provenance["laterality"] == "@CAPTURE_INFO_02 byte 0"
    assert (
        read.provenance["spacing_mm"] == "@PARAM_SCAN_04: x 6 mm / 512 A-scans, y 6 mm / 8 B-scans, z 3.5 um"
    )
    assert read.provenance["protocol"] == "caller"


# ---- cubes written in the real layout


@needs_real
@pytest.mark.parametrize("dtype, suffix", [(np.uint8, ".fda"), (np.uint16, ".fds")])
def test_cube_written_in_the_real_layout_round_trips_exactly(tmp_path, dtype, suffix):
    data = cube(dtype)
    chunks = topcon_chunks(data, x_mm=9.0, y_mm=6.0, z_um=2.6, eye=0, template=FDA)
    assert list(chunks)[:3] == [n for n, _ in fda_chunks(FDA.read_bytes())][:3]
    read = read_volume(write_topcon(tmp_path / f"cube{suffix}", chunks, suffix[1:].upper().encode()))
    assert read.data.dtype == dtype
    np.testing.assert_array_equal(read.data, data)
    assert read.spacing_mm == (6.0 / 6, 0.0026, 9.0 / 24)
    assert read.laterality == "OD" and read.protocol == "wide"
    assert read.provenance["protocol"].startswith("field of view 6.0 x 9.0 mm")
    assert read.provenance["compression"] in ("lossless (JPEG 2000, reversible 5/3 wavelet)", "none")


def test_lossy_codestreams_are_recorded_as_lossy(tmp_path):
    path, _ = write_cube(tmp_path, lossy=True)
    assert read_volume(path, protocol="macula").provenance["compression"].startswith("lossy")


def test_a_6_mm_cube_needs_its_protocol_from_the_caller(tmp_path):
    path, _ = write_cube(tmp_path)
    with pytest.raises(InvalidVolume, match=r"6.0 x 6.0 mm field could be a disc cube or a macular cube"):
        read_volume(path)
    assert read_volume(path, protocol="disc").provenance["protocol"] == "caller"


def test_format_is_chosen_by_the_chunks_not_the_suffix(tmp_path):
    path, data = write_cube(tmp_path, cube(np.uint16), "scan.fda")  # @IMG_SCAN_03 in an .fda
    np.testing.assert_array_equal(read_volume(path, protocol="disc").data, data)
    np.testing.assert_array_equal(read_volume(path.rename(tmp_path / "scan.bin"), protocol="disc").data, data)


# ---- scan patterns


@pytest.mark.parametrize(
    "mode, pattern", [(0, "line"), (3, "radial"), (7, "seven-line"), (11, "five-line cross")]
)
def test_other_scan_modes_are_refused_naming_the_pattern(tmp_path, mode, pattern):
    path, _ = write_cube(tmp_path, scan_mode=mode)
    with pytest.raises(UnsupportedScan, match=f"Topcon {pattern} scan \\(6 B-scans .*left eye") as refused:
        read_volume(path)
    assert refused.value.pattern == f"Topcon {pattern} scan"


def test_scan_modes_that_disagree_are_refused(tmp_path):
    path, _ = write_cube(tmp_path)
    edit_chunk(path, "@CAPTURE_INFO_02", lambda p: capture_info_02(eye=1, scan_mode=3))
    with pytest.raises(UnsupportedFormat, match="two scan modes"):
        read_volume(path)


# ---- damaged files


def test_both_eyes_recorded_are_refused(tmp_path):
    path, _ = write_cube(tmp_path)
    chunks = [*fda_chunks(path.read_bytes()), ("@CAPTURE_INFO", bytes([0]) + bytes(13))]
    with pytest.raises(UnsupportedFormat, match=r"both eyes \(@CAPTURE_INFO_02 OS, @CAPTURE_INFO OD\)"):
        read_volume(write_topcon(path, chunks), protocol="disc")


def test_unknown_eye_byte_is_refused(tmp_path):
    path, _ = write_cube(tmp_path, eye=2)
    with pytest.raises(UnsupportedFormat, match="byte 0 is 2, neither 0"):
        read_volume(path)


def test_scan_size_chunks_that_disagree_are_refused(tmp_path):
    path, _ = write_cube(tmp_path)
    scan_02 = bytes(21) + struct.pack("<3d", 6.0, 6.0, 3.9)
    with pytest.raises(UnsupportedFormat, match="different scan sizes"):
        read_volume(write_topcon(path, [*fda_chunks(path.read_bytes()), ("@PARAM_SCAN_02", scan_02)]))


def test_without_scan_size_the_spacing_comes_from_the_caller(tmp_path):
    path, data = write_cube(tmp_path)
    chunks = [(n, p) for n, p in fda_chunks(path.read_bytes()) if n != "@PARAM_SCAN_04"]
    write_topcon(path, chunks)
    with pytest.raises(InvalidVolume, match="does not record spacing_mm"):
        read_volume(path)
    read = read_volume(path, spacing_mm=(0.1, 0.004, 0.25), protocol="disc")
    assert (
        read.provenance["spacing_mm"] == "caller"
        and read.provenance["laterality"] == "@CAPTURE_INFO_02 byte 0"
    )


@pytest.mark.parametrize("x_mm", [float("nan"), 0.0, -6.0])
def test_impossible_scan_size_is_refused(tmp_path, x_mm):
    path, _ = write_cube(tmp_path)
    edit_chunk(path, "@PARAM_SCAN_04", lambda p: param_scan_04(x_mm, 6.0, 3.5))
    with pytest.raises(UnsupportedFormat, match="scan size"):
        read_volume(path)


def test_repeated_volume_chunk_is_refused(tmp_path):
    path, _ = write_cube(tmp_path)
    chunks = fda_chunks(path.read_bytes())
    with pytest.raises(UnsupportedFormat, match="holds the chunk @IMG_JPEG twice"):
        read_volume(write_topcon(path, [*chunks, *[c for c in chunks if c[0] == "@IMG_JPEG"]]))


def test_file_without_a_volume_chunk_lists_what_it_holds(tmp_path):
    path, _ = write_cube(tmp_path)
    write_topcon(path, [(n, p) for n, p in fda_chunks(path.read_bytes()) if n != "@IMG_JPEG"])
    with pytest.raises(
        UnsupportedFormat, match="without a volume .* it holds @CAPTURE_INFO_02, @PARAM_SCAN_04"
    ):
        read_volume(path)


@pytest.mark.parametrize("keep", [0.3, 0.7, 0.999])
def test_truncated_file_is_refused(tmp_path, keep):
    path, _ = write_cube(tmp_path)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    with pytest.raises(UnsupportedFormat, match="cube.fda.*(truncated|runs past)"):
        read_volume(path)


@pytest.mark.parametrize(
    "field, value, message",
    [
        (3, 25, r"B-scan 0 of @IMG_JPEG is a 40 x 24 L image but the file declares 40 x 25"),  # width
        (4, 41, "declares 41 x 24"),  # height
        (5, 5, "bytes after its 5 B-scans"),  # fewer slices than stored
        (5, 7, "runs past the end of its chunk|truncated"),  # more slices than stored
    ],
)
def test_jpeg_header_that_disagrees_with_its_bscans_is_refused(tmp_path, field, value, message):
    path, _ = write_cube(tmp_path)

    def edit(payload):
        fields = list(struct.unpack_from("<B6I", payload))
        fields[field] = value
        return struct.pack("<B6I", *fields) + payload[25:]

    with pytest.raises(UnsupportedFormat, match=message):
        read_volume(edit_chunk(path, "@IMG_JPEG", edit), protocol="macula")


def test_raw_voxels_that_disagree_with_their_header_are_refused(tmp_path):
    path, _ = write_cube(tmp_path, cube(np.uint16), "cube.fds", b"FDS")
    edit_chunk(path, "@IMG_SCAN_03", lambda p: p[:1] + struct.pack("<I", 25) + p[5:])  # width 24 -> 25
    with pytest.raises(UnsupportedFormat, match="declares 6 x 40 x 25 samples .* header disagrees"):
        read_volume(path)


def test_declared_size_over_the_cap_is_refused_before_decoding(tmp_path):
    path, _ = write_cube(tmp_path)

    def huge(payload):  # 1,000,000 B-scans of 1000 x 1000: 931 GiB of uint8
        return struct.pack("<B6I", 2, 0, 0, 1000, 1000, 1_000_000, 0) + payload[25:]

    with pytest.raises(InvalidVolume, match=r"931\.3 GiB, above the cap of 2\.0 GiB"):
        read_volume(edit_chunk(path, "@IMG_JPEG", huge))
    with pytest.raises(InvalidVolume, match="above the cap of 1.0 KiB"):
        read_volume(write_cube(tmp_path)[0], max_voxel_bytes=1024)


def test_damaged_codestream_is_refused(tmp_path):
    path, _ = write_cube(tmp_path)
    raw = bytearray(path.read_bytes())
    start = raw.find(b"\xff\x4f\xff\x51")
    raw[start + 60 : start + 400] = bytes(340)
    path.write_bytes(bytes(raw))
    with pytest.raises(UnsupportedFormat, match="B-scan 0 of @IMG_JPEG"):
        read_volume(path, protocol="macula")


def test_not_topcon_kind_is_refused(tmp_path):
    path, _ = write_cube(tmp_path, kind=b"FAA")
    with pytest.raises(UnsupportedFormat, match="not FOCT then FDA or FDS"):
        read_volume(path)


def test_without_pillow_the_message_names_the_extra(tmp_path, monkeypatch):
    path, _ = write_cube(tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(UnsupportedFormat, match=r"octclassify\[topcon\]"):
        read_volume(path, protocol="macula")
