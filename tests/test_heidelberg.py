"""sdk.io.heidelberg: the real .vol circle scans and E2E file; raster .vol and .e2e cubes in their layout."""

import struct

import numpy as np
import pytest

from sdk.errors import InvalidVolume, UnsupportedFormat, UnsupportedScan
from sdk.io import read_volume
from tests import real_oct
from tests.e2e_writer import raster_positions_deg, ufloat16, write_e2e
from tests.vol_writer import VOL_INVALID_SAMPLE, raster_positions_mm, write_vol

VOLS = ("heidelberg-circle-OD.vol", "heidelberg-circle-2-OD.vol", "heidelberg-circle-myopic-OD.vol")
E2E = real_oct.REAL_OCT / "heidelberg-1bscan.E2E"
TEMPLATE = real_oct.REAL_OCT / VOLS[0]
pytestmark = pytest.mark.skipif(
    not real_oct.available(), reason=f"real OCT files not found in {real_oct.REAL_OCT}"
)
SCALE_X, DISTANCE, SCALE_Z = 0.0117, 0.12, 0.0038716697599738836


def repeats(n_bscans: int, n_ascans: int, seed: int) -> np.ndarray:
    """``n_bscans`` noisy repeats of the first ``n_ascans`` A-scans of a real B-scan, float32 reflectance."""
    bscan = real_oct.load(VOLS[0]).bscan[:, :n_ascans]
    noise = np.random.default_rng(seed).normal(0.0, real_oct.background_sd(bscan), (n_bscans, *bscan.shape))
    return np.abs(bscan + noise).astype(np.float32)


def small_vol(path, data, positions=None):
    """A .vol of ``data`` with B-scans 0.1 mm apart and A-scans 0.03 mm apart."""
    return write_vol(
        path, data, template=TEMPLATE, scale_x=0.03, distance=0.1, scale_z=SCALE_Z, positions=positions
    )


def raster(tmp_path, n_bscans=8, name="cube.vol", **fields):
    """A raster .vol of ``n_bscans`` noisy repeats of a real B-scan, cropped to 128 A-scans."""
    data = repeats(n_bscans, 128, seed=1)
    geometry = {"scale_x": SCALE_X, "distance": DISTANCE, "scale_z": SCALE_Z, **fields}
    return write_vol(tmp_path / name, data, template=TEMPLATE, **geometry), data


# ---- the real files


@pytest.mark.parametrize("name", VOLS)
def test_real_circle_scans_are_refused_with_their_spacing_and_eye(name):
    reference = real_oct.load(name)  # the lead's own parser of the same file
    with pytest.raises(
        UnsupportedScan, match=rf"{name} holds a Heidelberg circle scan \(1 B-scan of 496 x 768 samples"
    ) as refused:
        read_volume(real_oct.REAL_OCT / name)
    error = refused.value
    assert error.pattern == "Heidelberg circle scan" and error.shape == (1, 496, 768)
    assert error.spacing_mm == (None, reference.axial_mm, reference.ascan_mm)
    assert error.laterality == reference.laterality == "OD"


def test_real_e2e_is_refused_as_the_single_bscan_its_containers_hold():
    """Its directory was lost when it was cut down; its data containers still say what it is."""
    with pytest.raises(
        UnsupportedScan, match=r"single B-scan .*finds one OCT B-scan image.* 496 x 512 samples, left eye"
    ) as refused:
        read_volume(E2E)
    assert refused.value.shape == (1, 496, 512) and refused.value.laterality == "OS"
    assert "points to byte 414829212 of a 508332-byte file" in str(refused.value.__cause__)


# ---- raster volumes in the real layout


def test_raster_volume_round_trips(tmp_path):
    path, data = raster(tmp_path)
    read = read_volume(path, protocol="disc")
    np.testing.assert_array_equal(read.data, data)
    assert read.data.dtype == np.float32
    assert read.spacing_mm == (DISTANCE, SCALE_Z, SCALE_X)  # per-sample distances: no n - 1 conversion
    assert read.laterality == "OD"
    assert read.provenance["spacing_mm"] == "Distance, ScaleZ, ScaleX (file header)"
    assert read.provenance["laterality"] == "ScanPosition"
    assert read.provenance["orientation"] == "B-scan positions (B-scan headers)"


def test_samples_not_acquired_read_as_zero(tmp_path):
    data = repeats(4, 64, seed=2)
    data[:, :, :5] = VOL_INVALID_SAMPLE
    path = small_vol(tmp_path / "edge.vol", data)
    read = read_volume(path, laterality="OS", protocol="macula")
    assert (read.data[:, :, :5] == 0).all()
    np.testing.assert_array_equal(read.data[:, :, 5:], data[:, :, 5:])


@pytest.mark.parametrize("top_first, left_first", [(False, True), (True, False), (False, False)])
def test_bscan_positions_orient_the_cube(tmp_path, top_first, left_first):
    data = repeats(6, 64, seed=3)
    positions = raster_positions_mm(6, 64, 0.03, 0.1, top_first=top_first, left_first=left_first)
    path = small_vol(tmp_path / "o.vol", data, positions)
    read = read_volume(path, protocol="macula")
    expected = data[::-1] if not top_first else data
    expected = expected[:, :, ::-1] if not left_first else expected
    np.testing.assert_array_equal(read.data, expected)
    assert "reversed" in read.provenance["orientation"]


def test_positions_that_are_not_a_raster_are_refused(tmp_path):
    data = repeats(4, 64, seed=4)
    positions = raster_positions_mm(4, 64, 0.03, 0.2)  # B-scans 0.2 mm apart, Distance says 0.1
    path = small_vol(tmp_path / "far.vol", data, positions)
    with pytest.raises(UnsupportedFormat, match="not a raster of horizontal B-scans 0.1 mm"):
        read_volume(path, protocol="macula")
    vertical = positions[:, [1, 0, 3, 2]]
    small_vol(path, data, vertical)
    with pytest.raises(UnsupportedFormat, match="horizontal raster volumes"):
        read_volume(path, protocol="macula")


@pytest.mark.parametrize("pattern, name", [(1, "single line"), (2, "circle"), (5, "radial"), (0, "unknown")])
def test_other_scan_patterns_are_refused_naming_them(tmp_path, pattern, name):
    path, _ = raster(tmp_path, pattern=pattern)
    with pytest.raises(
        UnsupportedScan, match=f"Heidelberg {name} scan \\(8 B-scans .* B-scans 0.12 mm apart"
    ):
        read_volume(path)


def test_raster_of_one_bscan_is_refused_as_a_single_bscan(tmp_path):
    path, _ = raster(tmp_path, n_bscans=1)
    with pytest.raises(UnsupportedScan, match=r"single B-scan \(a Heidelberg raster volume of one B-scan\)"):
        read_volume(path)


def test_raster_volume_reads_as_eyepy_reads_it(tmp_path):
    """eyepy 0.21's HeVolReader, the reference: the same voxels and the same header fields."""
    HeVolReader = pytest.importorskip("eyepy.io.he", reason="eyepy is not installed").HeVolReader

    path, data = raster(tmp_path)
    data[:, :, :3] = VOL_INVALID_SAMPLE
    path = write_vol(path, data, template=TEMPLATE, scale_x=SCALE_X, distance=DISTANCE, scale_z=SCALE_Z)
    parsed = HeVolReader(path).parsed_file
    theirs = np.stack([bscan.data for bscan in parsed.bscans])
    ours = read_volume(path, protocol="disc")
    np.testing.assert_array_equal(ours.data, np.where(theirs > 3e38, 0, theirs))
    assert ours.spacing_mm == (parsed.distance, parsed.scale_y, parsed.scale_x)
    assert ours.laterality == parsed.scan_position and parsed.scan_pattern == 3


# ---- damaged files


@pytest.mark.parametrize("keep", [100, 2048 + 1000, -1])
def test_truncated_vol_is_refused(tmp_path, keep):
    path, _ = raster(tmp_path)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(UnsupportedFormat, match="cube.vol is truncated"):
        read_volume(path, protocol="disc")


@pytest.mark.parametrize(
    "offset, fmt, value, error, message",
    [
        (12, "<i", 0, UnsupportedFormat, "declares 8 B-scans of 496 x 0 samples"),
        (16, "<i", 1_000_000, InvalidVolume, r"NumBScans x SizeZ x SizeX declares .* above the cap"),
        (24, "<d", float("nan"), UnsupportedFormat, "ScaleX nan"),
        (32, "<d", -0.1, UnsupportedFormat, "Distance -0.1"),
        (84, "4s", b"OU\0\0", UnsupportedFormat, "ScanPosition is b'OU'"),
        (100, "<i", 12, UnsupportedFormat, "12-byte B-scan headers"),
        (0, "12s", b"HSF-XYZ-103\0", UnsupportedFormat, "cube.vol is not a Heidelberg .vol file"),
    ],
)
def test_damaged_vol_header_is_refused(tmp_path, offset, fmt, value, error, message):
    path, _ = raster(tmp_path)
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    path.write_bytes(bytes(raw))
    with pytest.raises(error, match=message):
        read_volume(path, protocol="disc")


def test_longer_vol_is_read(tmp_path):
    """A thickness grid may follow the B-scans (heidelberg-circle-2-OD.vol has 132 bytes of one)."""
    path, data = raster(tmp_path)
    path.write_bytes(path.read_bytes() + bytes(132))
    np.testing.assert_array_equal(read_volume(path, protocol="disc").data, data)


# ---- E2E


def e2e_codes(n_bscans=6, shape=(40, 16), seed=0) -> np.ndarray:
    """Heidelberg 16-bit float codes of reflectances between 2 ** -51 and 2 ** -35."""
    return np.random.default_rng(seed).integers(12 << 10, 28 << 10, (n_bscans, *shape)).astype(np.uint16)


E2E_SPACING = (0.12, 0.0039, 0.011)


def test_e2e_raster_reads_its_bscans_eye_and_order(tmp_path):
    codes = e2e_codes()
    read = read_volume(
        write_e2e(tmp_path / "cube.e2e", codes, eye=b"L"), spacing_mm=E2E_SPACING, protocol="disc"
    )
    np.testing.assert_array_equal(read.data, ufloat16(codes))
    assert read.laterality == "OS" and read.spacing_mm == E2E_SPACING
    assert read.provenance["laterality"] == "laterality items (type 11, byte 14)"
    assert read.provenance["spacing_mm"] == "caller" and read.provenance["format"] == "heidelberg-e2e"


def test_e2e_needs_the_spacing_from_the_caller(tmp_path):
    with pytest.raises(InvalidVolume, match="does not record spacing_mm"):
        read_volume(write_e2e(tmp_path / "cube.e2e", e2e_codes()), protocol="disc")


@pytest.mark.parametrize("top_first, left_first", [(False, True), (True, False)])
def test_e2e_bscan_positions_orient_the_cube(tmp_path, top_first, left_first):
    codes = e2e_codes()
    positions = raster_positions_deg(6, top_first=top_first, left_first=left_first)
    path = write_e2e(tmp_path / "o.e2e", codes, positions=positions)
    read = read_volume(path, spacing_mm=E2E_SPACING, protocol="macula")
    expected = ufloat16(codes)[::-1] if not top_first else ufloat16(codes)
    np.testing.assert_array_equal(read.data, expected[:, :, ::-1] if not left_first else expected)


def test_e2e_bscan_headers_read_as_eyepy_reads_them_and_its_decoder_reverses_the_mantissa(tmp_path):
    """The same file through eyepy 0.21: the same B-scan header fields, and B-scans that differ from
    ours exactly by reading the 10 mantissa bits in reverse order."""
    HeE2eReader = pytest.importorskip("eyepy.io.he", reason="eyepy is not installed").HeE2eReader

    codes = e2e_codes(n_bscans=3)
    path = write_e2e(tmp_path / "cube.e2e", codes)
    with HeE2eReader(path) as reader:
        (series,) = reader.series
        slices = sorted(series.slices.values(), key=lambda s: s.get_meta()["aktImage"])
        metas = [s.get_meta() for s in slices]
        theirs = np.stack([s.get_bscan() for s in slices])
    assert [(m["size_y"], m["size_x"], m["scan_pattern"], m["aktImage"]) for m in metas] == [
        (40, 16, 3, i) for i in range(3)
    ]
    assert series.laterality() == str(ord("R"))  # eyepy 0.21 gives the eye's ASCII code
    mantissa = codes & 0x3FF
    reversed_bits = sum(((mantissa >> b) & 1) << (9 - b) for b in range(10))
    np.testing.assert_array_equal(
        theirs, ufloat16((codes & ~np.uint16(0x3FF)) | reversed_bits.astype(np.uint16))
    )
    ours = read_volume(path, spacing_mm=E2E_SPACING, protocol="disc").data
    np.testing.assert_array_equal(ours, ufloat16(codes))


def test_real_e2e_bscan_is_smoother_read_with_the_mantissa_in_order():
    """The one real E2E B-scan (496 x 512 codes from byte 428), shown as HEYEX shows reflectance
    (fourth root): neighbouring samples correlate more when the mantissa bits are read in order."""
    codes = np.frombuffer(E2E.read_bytes(), "<u2", 496 * 512, 428).reshape(496, 512)
    mantissa = codes & 0x3FF
    reversed_codes = (codes & ~np.uint16(0x3FF)) | sum(((mantissa >> b) & 1) << (9 - b) for b in range(10))

    def neighbour_correlation(values):
        shown = np.power(values.astype(np.float64), 0.25)
        return np.corrcoef(shown[:, :-1].ravel(), shown[:, 1:].ravel())[0, 1]

    ours, theirs = (
        neighbour_correlation(ufloat16(codes)),
        neighbour_correlation(ufloat16(reversed_codes.astype(np.uint16))),
    )
    assert ours == pytest.approx(0.890, abs=0.001) and theirs == pytest.approx(0.884, abs=0.001)


@pytest.mark.parametrize("pattern, name", [(1, "single line"), (2, "circle"), (5, "radial")])
def test_e2e_other_scan_patterns_are_refused(tmp_path, pattern, name):
    with pytest.raises(
        UnsupportedScan, match=f"Heidelberg {name} scan .*axial samples 0.0039 mm apart, right eye"
    ) as refused:
        read_volume(write_e2e(tmp_path / "p.e2e", e2e_codes(), scan_pattern=pattern))
    assert refused.value.spacing_mm == pytest.approx((None, 0.0039, None))


def test_e2e_single_bscan_is_refused(tmp_path):
    with pytest.raises(UnsupportedScan, match="single B-scan"):
        read_volume(write_e2e(tmp_path / "one.e2e", e2e_codes(n_bscans=1)))


@pytest.mark.parametrize("n_bscans", [1, 6])
def test_e2e_without_its_directory(tmp_path, n_bscans):
    """The directory chunks' magic gone: one B-scan image is still refused as a single B-scan, more
    are refused as a damaged file (never read from containers the directory does not vouch for)."""
    raw = write_e2e(tmp_path / "cube.e2e", e2e_codes(n_bscans=n_bscans)).read_bytes()
    cut = tmp_path / "cut.e2e"
    cut.write_bytes(raw[:88] + raw[88:].replace(b"MDbDir", b"XXXXXX"))
    if n_bscans == 1:
        with pytest.raises(UnsupportedScan, match=r"single B-scan .*1 B-scan of 40 x 16 samples, right eye"):
            read_volume(cut)
    else:
        with pytest.raises(UnsupportedFormat, match="E2E directory is missing or damaged"):
            read_volume(cut)


def test_e2e_of_two_series_is_refused(tmp_path):
    with pytest.raises(UnsupportedFormat, match="holds 2 OCT series"):
        read_volume(write_e2e(tmp_path / "two.e2e", e2e_codes(), series=(3, 4)), spacing_mm=E2E_SPACING)


def test_e2e_damage_is_refused(tmp_path):
    path = write_e2e(tmp_path / "cube.e2e", e2e_codes())
    raw = path.read_bytes()
    image_at = raw.find(struct.pack("<I", 35652097))  # the first B-scan image's kind
    for damaged, message in [
        (raw[: len(raw) - 100], "truncated"),
        (raw[:image_at] + struct.pack("<I", 33620481) + raw[image_at + 4 :], "of kind 33620481"),
        (
            raw[: image_at + 8] + struct.pack("<I", 41) + raw[image_at + 12 :],
            "declares 640 values of 41 x 16",
        ),
        (raw.replace(b"MDbData", b"MDbDat_", 1), "does not match its directory entry"),
    ]:
        path.write_bytes(damaged)
        with pytest.raises(UnsupportedFormat, match=message):
            read_volume(path, spacing_mm=E2E_SPACING, protocol="disc")


def test_e2e_bscans_over_the_cap_are_refused_before_reading(tmp_path):
    path = write_e2e(tmp_path / "cube.e2e", e2e_codes())
    with pytest.raises(InvalidVolume, match="its B-scans declares 6 x 40 x 16 samples of 4 bytes"):
        read_volume(path, spacing_mm=E2E_SPACING, protocol="disc", max_voxel_bytes=10_000)
