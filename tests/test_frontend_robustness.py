"""The quality gate is total: every volume that passes OCTVolume validation gets a Segmentation and
maps (graded or ungradable with reasons), never an exception from inside the front end.

The front end's cost at extreme (but allowed) spacings is measured in
benchmarks/test_frontend_bench.py; here the answers are checked.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import phantom
import sdk
from sdk.errors import OCTError
from sdk.volume import SPACING_RANGE_MM

WIDE = (0.07, 0.0039, 0.0234)  # 9 x 12 mm over 128 x 512 A-scans


def segment(data, spacing=WIDE, protocol="wide"):
    return sdk.retina.segment(sdk.OCTVolume(data, spacing, "OD", protocol))


@pytest.mark.parametrize(
    "data, says",
    [
        (np.zeros((16, 496, 512), np.uint8), "every voxel is 0"),
        (np.full((16, 496, 512), 7, np.uint8), "every voxel is 7"),
        (np.full((16, 496, 512), 255, np.uint8), "every voxel is 255"),
        (np.full((8, 496, 256), 65535, np.uint16), "every voxel is 65535"),
        (np.full((8, 496, 256), 1e308), "every voxel is 1e+308"),
        (np.full((8, 496, 256), -3.5, np.float32), "every voxel is -3.5"),
        (np.zeros((2, 32, 8), np.uint8), "every voxel is 0"),
    ],
)
def test_blank_volumes_are_ungradable_and_say_so(data, says):
    seg = segment(data)
    assert not seg.quality.gradable and seg.disc is None and seg.fovea is None
    assert (
        len(seg.quality.reasons) == 1 and "blank" in seg.quality.reasons[0] and says in seg.quality.reasons[0]
    )
    assert all(np.isnan(s).all() for s in seg.surfaces.values())


def test_a_closed_shutter_with_a_few_hot_pixels_is_blank_too():
    data = np.zeros((16, 496, 512), np.uint8)
    data[0, 0, :3] = 255
    assert "99.8% of voxels have one value" in segment(data).quality.reasons[0]


@pytest.mark.parametrize(
    "data",
    [
        (np.indices((16, 496, 512)).sum(0) % 2 * 255).astype(np.uint8),  # checkerboard: a dead detector
        np.random.default_rng(0).integers(0, 256, (16, 496, 512)).astype(np.uint8),  # noise only
        np.random.default_rng(1).standard_exponential((8, 496, 256)) * 1e300,  # linear floats near the limit
        np.random.default_rng(2).normal(0, 1, (8, 496, 256)).astype(np.float32),  # signed floats
    ],
)
def test_volumes_without_a_retina_are_ungradable(data):
    quality = segment(data).quality
    assert not quality.gradable and quality.reasons


def test_a_tail_beyond_float_range_is_log_scaled_without_a_warning():
    """Linear intensities whose bright tail over the median overflows a float (1e300 over 1e-20) are
    log-scaled like any long tail, without a RuntimeWarning on the user's console."""
    data = np.where(np.random.default_rng(0).random((4, 64, 32)) > 0.99, 1e300, 1e-20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seg = segment(data)
    assert not seg.quality.gradable


def test_a_4096_sample_deep_volume_is_segmented():
    eye = phantom.make_eye("normal", 3, shape=(16, 496, 128))
    deep = np.zeros((16, 4096, 128), np.uint8)
    deep[:, 1000:1496] = eye.volume.data
    seg = segment(deep, eye.volume.spacing_mm)
    error = np.abs(seg.surfaces["ILM"] - (eye.truth.surfaces_px["ILM"] + 1000))
    assert np.nanmedian(error) < 1.0


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("end", [0, 1])
def test_every_spacing_at_the_limits_gives_an_answer(axis, end):
    spacing = list(WIDE)
    spacing[axis] = SPACING_RANGE_MM[axis][end]
    data = phantom.make_eye("GE", 1, shape=(32, 496, 128)).volume.data
    maps = (
        sdk.maps.extract(sdk.OCTVolume(data, spacing, "OD", "wide")) if _holds_maps(data, spacing) else None
    )
    seg = segment(data, spacing)
    assert isinstance(seg.quality.gradable, bool)
    if maps is not None:
        assert maps.rnfl_thickness.shape == (224, 224)


def _holds_maps(data, spacing):
    return data.shape[0] * spacing[0] >= 6.0 and data.shape[2] * spacing[2] >= 9.0


volumes = st.tuples(
    st.integers(2, 12),
    st.integers(32, 160),
    st.integers(8, 96),
    st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
    st.sampled_from(["constant", "noise", "steps", "spikes", "phantom-like"]),
    st.integers(0, 2**32 - 1),
)
spacings = st.tuples(*(st.floats(lo, hi) for lo, hi in SPACING_RANGE_MM))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volumes, spacings, st.sampled_from(["wide", "disc", "macula"]))
def test_fuzzed_volumes_get_an_answer_or_an_sdk_error(shape_kind, spacing, protocol):
    n_b, depth, n_a, dtype, kind, seed = shape_kind
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        top = float(np.iinfo(dtype).max)
    else:  # tiny, plain and huge magnitudes, as far as the dtype holds them
        top = float(rng.choice([1.0, 1e-30, 1e30, 1e300 if dtype == np.float64 else 1e37]))
    if kind == "constant":
        data = np.full((n_b, depth, n_a), rng.uniform(0, 1) * top)
    elif kind == "noise":
        data = rng.uniform(0, top, (n_b, depth, n_a))
    elif kind == "steps":
        data = np.repeat(rng.uniform(0, top, (1, depth, 1)), n_b, 0).repeat(n_a, 2)
    elif kind == "spikes":
        data = np.zeros((n_b, depth, n_a))
        data.flat[rng.integers(0, data.size, 5)] = top
    else:
        z = np.arange(depth)[None, :, None]
        data = np.where((z > depth // 3) & (z < 2 * depth // 3), 0.8, 0.05) * rng.exponential(
            1, (n_b, depth, n_a)
        )
        data = data * top
    volume = sdk.OCTVolume(data.astype(dtype), spacing, "OD", protocol)
    seg = sdk.retina.segment(volume)
    assert all(s.shape == (n_b, n_a) for s in seg.surfaces.values())
    try:
        maps = sdk.maps.extract(volume) if protocol == "wide" else None
    except OCTError:
        return  # a field of view too small for the maps is a user error with its message
    if maps is not None:
        assert isinstance(maps.quality.gradable, bool)


@pytest.fixture(scope="module")
def my_eye():
    return phantom.make_eye("MY", 4, shape=(24, 496, 192)).volume.data


# first B-scan, B-scans, first sample, samples, first A-scan (from the smallest valid volume up)
crops = st.tuples(
    st.integers(0, 23), st.integers(2, 24), st.integers(0, 495), st.integers(32, 496), st.integers(0, 191)
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(crops, st.integers(8, 192), spacings, st.sampled_from(["wide", "disc", "macula"]))
def test_cropped_retinas_get_an_answer_or_an_sdk_error(my_eye, crop, n_ascans, spacing, protocol):
    """Pieces of a phantom eye (a retina cut by the window's edges, down to 2 B-scans of 8 A-scans and a
    32-sample sliver of depth) at any allowed spacing: the path searches meet their windows' ends on
    real structure."""
    b0, n_bscans, z0, depth, a0 = crop
    b0, z0, a0 = (
        min(start, total - n)
        for start, total, n in zip((b0, z0, a0), my_eye.shape, (n_bscans, depth, n_ascans), strict=True)
    )
    data = np.ascontiguousarray(my_eye[b0 : b0 + n_bscans, z0 : z0 + depth, a0 : a0 + n_ascans])
    volume = sdk.OCTVolume(data, spacing, "OS", protocol)
    seg = sdk.retina.segment(volume)
    assert all(s.shape == (data.shape[0], data.shape[2]) for s in seg.surfaces.values())
    assert isinstance(seg.quality.gradable, bool) and (seg.quality.gradable or seg.quality.reasons)
    if protocol == "wide":
        try:
            maps = sdk.maps.extract(volume, segmentation=seg)
        except OCTError:
            return  # a field of view too small for the maps is a user error with its message
        assert maps.rnfl_thickness.shape == (224, 224)
