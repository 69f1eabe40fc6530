"""sdk.maps and sdk.retina behaviour: orientation, exams, quality verdicts, normative database,
network input, and a specific error for each bad input."""

import json

import numpy as np
import pytest

import phantom
import sdk
from sdk.errors import BundleError, FileError, InvalidVolume
from sdk.maps import MAP_NAMES, MAP_SIZE_PX, Normative, to_network_input

SMALL = (48, 496, 256)  # B-scans x depth x A-scans over the protocol's field: quick, still accurate


def small_eye(kind="normal", seed=1, **kwargs):
    return phantom.make_eye(kind, seed, shape=SMALL, **kwargs)


@pytest.fixture(scope="module")
def normal_maps():
    return [sdk.maps.extract(small_eye("normal", seed).volume) for seed in range(6)]


@pytest.fixture(scope="module")
def normative(normal_maps):
    return Normative.fit([m.rnfl_thickness for m in normal_maps], [m.gcc_thickness for m in normal_maps])


def test_maps_shapes_units_and_disc_mask(normal_maps):
    m = normal_maps[0]
    for name in ("rnfl_thickness", "gcc_thickness"):
        values = getattr(m, name)
        assert values.shape == (MAP_SIZE_PX, MAP_SIZE_PX) and values.dtype == np.float32
        assert 20 < np.nanmedian(values) < 200  # micrometres
    assert np.isnan(m.rnfl_thickness[MAP_SIZE_PX // 2, MAP_SIZE_PX // 2])  # disc centre is masked
    assert np.isfinite(m.gcc_thickness).all()  # the GCC field is clear of the disc
    assert m.rnfl_deviation is None and m.quality.gradable


def test_left_eye_maps_are_mirrored_into_right_eye_orientation():
    """Same retina (same kind and seed) scanned as OD and as OS gives nearly the same maps."""
    od = sdk.maps.extract(small_eye("FI", 4, laterality="OD").volume)
    os_ = sdk.maps.extract(small_eye("FI", 4, laterality="OS").volume)
    for name in ("rnfl_thickness", "gcc_thickness"):
        a, b = getattr(od, name), getattr(os_, name)
        both = np.isfinite(a) & np.isfinite(b)
        same = np.abs(a - b)[both].mean()
        mirrored = np.nanmean(np.abs(a - np.fliplr(b)))
        assert same < 6.0 and mirrored > 2 * same


def test_two_cube_exam_matches_the_wide_field_maps():
    wide = sdk.maps.extract(small_eye("GE", 9).volume)
    exam = sdk.maps.extract_exam(
        disc=small_eye("GE", 9, protocol="disc").volume, macula=small_eye("GE", 9, protocol="macula").volume
    )
    assert exam.quality.gradable, exam.quality.reasons
    assert len(exam.segmentations) == 2
    for name in ("rnfl_thickness", "gcc_thickness"):
        a, b = getattr(wide, name), getattr(exam, name)
        both = np.isfinite(a) & np.isfinite(b)
        assert both.mean() > 0.7 and np.abs(a - b)[both].mean() < 8.0


def test_exam_rejects_cubes_of_different_eyes_or_protocols():
    disc = small_eye(protocol="disc").volume
    with pytest.raises(InvalidVolume, match="same eye"):
        sdk.maps.extract_exam(disc, small_eye(protocol="macula", laterality="OS").volume)
    with pytest.raises(InvalidVolume, match="'disc' and a 'macula' cube"):
        sdk.maps.extract_exam(disc, disc)


def test_extract_needs_a_wide_cube_that_can_hold_disc_and_macula():
    with pytest.raises(InvalidVolume, match="extract_exam"):
        sdk.maps.extract(small_eye(protocol="disc").volume)
    narrow = small_eye(spacing_mm=(0.07, 0.0039, 0.012))  # 3.4 x 3.1 mm: not a wide field
    with pytest.raises(InvalidVolume, match="cannot hold both the optic disc and the macula"):
        sdk.maps.extract(narrow.volume)


def test_weak_signal_is_ungradable_with_the_reason():
    maps = sdk.maps.extract(small_eye(signal_db=14).volume)
    assert not maps.quality.gradable
    assert any("signal too weak" in r for r in maps.quality.reasons)


def test_blink_is_ungradable_with_the_reason():
    maps = sdk.maps.extract(small_eye(blink_bscans=tuple(range(10, 18))).volume)
    assert not maps.quality.gradable
    assert any("8 of 48 B-scans have no retina" in r for r in maps.quality.reasons)


def test_noise_only_volume_is_ungradable_not_an_error():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 40, size=SMALL, dtype=np.uint8)
    seg = sdk.retina.segment(sdk.OCTVolume(noise, (9 / 48, 0.0039, 12 / 256), "OD"))
    assert not seg.quality.gradable and seg.disc is None and seg.fovea is None


def test_linear_float_volumes_are_log_compressed_first():
    eye = small_eye("normal", 3)
    linear = 10.0 ** (eye.volume.data.astype(np.float32) / 40.0)  # undo a log display
    log_result = sdk.retina.segment(eye.volume)
    lin_result = sdk.retina.segment(sdk.OCTVolume(linear, eye.volume.spacing_mm, "OD"))
    assert lin_result.quality.gradable
    diff = np.nanmean(np.abs(lin_result.surfaces["ILM"] - log_result.surfaces["ILM"]))
    assert diff < 0.5


def test_normative_deviation_separates_glaucoma_from_normal(normative):
    normals = [sdk.maps.extract(small_eye("normal", seed).volume, normative) for seed in (40, 42, 43)]
    fi = sdk.maps.extract(small_eye("FI", 41, severity=1.0).volume, normative)
    assert abs(np.mean([np.nanmedian(m.rnfl_deviation) for m in normals])) < 1.0  # normal eyes centre on 0
    below_1st = np.mean([np.nanmean(m.rnfl_deviation < sdk.maps.Z_PERCENTILE_1) for m in normals])
    assert np.nanmean(fi.rnfl_deviation < sdk.maps.Z_PERCENTILE_1) > 3 * below_1st
    assert fi.stack().shape == (4, MAP_SIZE_PX, MAP_SIZE_PX)


def test_normative_round_trip_and_bad_files(normative, tmp_path):
    path = tmp_path / "normative.npz"
    normative.save(path)
    loaded = Normative.load(path)
    np.testing.assert_array_equal(loaded.rnfl_mean_um, normative.rnfl_mean_um)
    assert loaded.n_eyes == 6
    with pytest.raises(FileError, match="exists"):
        normative.save(path)
    with pytest.raises(FileError, match="does not exist"):
        Normative.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "pickled.npz", rnfl_mean_um=np.array([object()], dtype=object))
    with pytest.raises(BundleError, match="not a readable .npz of plain arrays"):
        Normative.load(tmp_path / "pickled.npz")
    np.savez(tmp_path / "partial.npz", rnfl_mean_um=normative.rnfl_mean_um)
    with pytest.raises(BundleError, match="lacks"):
        Normative.load(tmp_path / "partial.npz")
    with pytest.raises(ValueError, match="at least 2 normal eyes"):
        Normative.fit([normative.rnfl_mean_um], [normative.gcc_mean_um])
    blank = np.full_like(normative.rnfl_mean_um, np.nan)
    with pytest.raises(ValueError, match=r"normal eyes \[1\] have no thickness values"):
        Normative.fit([normative.rnfl_mean_um, blank], [normative.gcc_mean_um, normative.gcc_mean_um])


def test_network_input_is_normalised_filled_and_three_channel(normal_maps, normative):
    maps = sdk.maps.extract(small_eye("SS", 5).volume, normative).stack()
    x = to_network_input(maps)
    assert x.shape == (4, 3, MAP_SIZE_PX, MAP_SIZE_PX) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert (x[:, 0] == x[:, 1]).all() and (x[:, 0] == x[:, 2]).all()
    assert x[0, 0, MAP_SIZE_PX // 2, MAP_SIZE_PX // 2] == 0.0  # masked disc -> fill value
    centre, scale = sdk.maps.NORMALISATION["gcc_thickness"]
    np.testing.assert_allclose(x[1, 0, 10, 10], (maps[1, 10, 10] - centre) / scale, rtol=1e-6)
    small = to_network_input(maps, (64, 64))
    assert small.shape == (4, 3, 64, 64)
    np.testing.assert_allclose(small[1, 0].mean(), x[1, 0].mean(), atol=0.05)
    with pytest.raises(ValueError, match="must be"):
        to_network_input(maps[:3])


def test_preprocessing_constants_are_json_ready():
    constants = sdk.maps.preprocessing_constants((64, 64))
    assert json.loads(json.dumps(constants))["map_names"] == list(MAP_NAMES)
    assert constants["input_hw"] == [64, 64]
