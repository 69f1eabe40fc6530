"""The segmentation's array kernels against plain reference implementations: the minimum-cost path
(against exhaustive Viterbi in Python; the compiled search against the numpy one, path for path),
the compiled band, banded path search, median filter and block means against their numpy and scipy
references (identical arrays, and a whole segmentation identical with the kernels and without),
parallel blocks with a halo (against the whole-array filter), A-scan binning (against
reshape-and-mean), percentiles (against numpy's)."""

import sys

import numpy as np
import pytest
from scipy import ndimage
from scipy.ndimage import gaussian_filter

import phantom
import sdk
from sdk.retina import intensity, layers, median, paths
from sdk.retina.chunks import for_blocks, in_parallel
from sdk.retina.intensity import bin_ascans, percentiles, sorted_median, sorted_percentile
from sdk.retina.paths import band_path, best_path, numpy_band_path, numpy_best_path

needs_kernels = pytest.mark.skipif(
    paths._paths is None or layers._band is None or median._median is None or intensity._binning is None,
    reason="the compiled kernels are not built (pip install -e .)",
)


@pytest.fixture
def without_kernels(monkeypatch):
    """Run the numpy references instead of the compiled kernels."""

    def switch_off():
        monkeypatch.setattr(paths, "_paths", None)
        monkeypatch.setattr(layers, "_band", None)
        monkeypatch.setattr(median, "_median", None)
        monkeypatch.setattr(intensity, "_binning", None)

    return switch_off


def reference_path_cost(cost, max_step, step_penalty):
    """Least total cost of one B-scan's path (cost (n_ascans, n_offsets)) by plain Python Viterbi."""
    n_a, n_o = cost.shape
    acc = list(cost[0].astype(np.float64))
    for a in range(1, n_a):
        acc = [
            min(
                acc[p] + step_penalty * abs(o - p)
                for p in range(max(0, o - max_step), min(n_o, o + max_step + 1))
            )
            + cost[a, o]
            for o in range(n_o)
        ]
    return min(acc)


def path_cost(cost, path, step_penalty):
    return float(cost[np.arange(len(path)), path].sum() + step_penalty * np.abs(np.diff(path)).sum())


@pytest.mark.parametrize("max_step, step_penalty", [(1, 0.0), (1, 0.3), (2, 0.1), (3, 1.0)])
def test_best_path_is_a_least_cost_path(max_step, step_penalty):
    rng = np.random.default_rng(max_step)
    cost = rng.random((40, 3, 12)).astype(np.float32)
    cost[:, 1] = np.round(cost[:, 1] * 3) / 3  # many equal costs: ties must still give a least-cost path
    paths = best_path(cost, max_step, step_penalty)
    assert paths.shape == (40, 3)
    for b in range(3):
        assert np.abs(np.diff(paths[:, b])).max() <= max_step
        expected = reference_path_cost(cost[:, b].astype(np.float64), max_step, step_penalty)
        assert path_cost(cost[:, b].astype(np.float64), paths[:, b], step_penalty) == pytest.approx(
            expected, abs=1e-4
        )


COSTS = {  # float32 costs (n_ascans, n_bscans, n_offsets) as the traces make them
    "noise": lambda rng, shape: rng.normal(size=shape),
    "ties": lambda rng, shape: rng.integers(0, 3, size=shape),  # equal costs everywhere
    "outside": lambda rng, shape: np.where(rng.random(shape) < 0.5, 100.0, rng.normal(size=shape)),
}


@pytest.mark.skipif(paths._paths is None, reason="the compiled path search is not built (pip install -e .)")
@pytest.mark.parametrize("kind", COSTS)
@pytest.mark.parametrize(
    "shape, max_step",
    [((256, 128, 30), 4), ((64, 17, 80), 8), ((9, 4, 3), 5), ((7, 2, 1), 3), ((1, 3, 5), 2)],
)
def test_the_compiled_search_gives_the_numpy_searchs_paths(kind, shape, max_step):
    """Same paths, ties included (the largest step from below), for steps wider than the band too."""
    rng = np.random.default_rng(sum(shape) + max_step)
    cost = COSTS[kind](rng, shape).astype(np.float32)
    for step_penalty in (0.0, 0.01, 0.05):
        np.testing.assert_array_equal(
            best_path(cost, max_step, step_penalty), numpy_best_path(cost, max_step, step_penalty)
        )


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_costs_that_are_not_finite_take_the_numpy_search(value):
    """The kernel assumes finite costs (its loops skip numpy's NaN rules and an all-infinite window
    would step outside the band): such costs go to the numpy search."""
    rng = np.random.default_rng(5)
    cost = np.where(rng.random((64, 17, 80)) < 0.02, value, rng.normal(size=(64, 17, 80))).astype(np.float32)
    np.testing.assert_array_equal(best_path(cost, 4, 0.01), numpy_best_path(cost, 4, 0.01))


@pytest.mark.skipif(paths._paths is None, reason="the compiled path search is not built (pip install -e .)")
def test_the_compiled_search_checks_its_buffers():
    cost = np.zeros((4, 2, 3), np.float32)
    with pytest.raises(TypeError, match="float32"):
        paths._paths.best_path(cost.astype(np.float64), 1, 0.0, np.empty((4, 2), np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        paths._paths.best_path(cost.transpose(1, 0, 2), 1, 0.0, np.empty((2, 4), np.int64))
    with pytest.raises(ValueError, match="shape"):
        paths._paths.best_path(cost, 1, 0.0, np.empty((4, 3), np.int64))
    with pytest.raises(ValueError, match="max_step"):
        paths._paths.best_path(cost, -1, 0.0, np.empty((4, 2), np.int64))


def test_best_path_follows_a_planted_boundary():
    rng = np.random.default_rng(5)
    n_a, n_o = 200, 30
    truth = np.clip(np.round(15 + 6 * np.sin(np.arange(n_a) / 15)), 0, n_o - 1).astype(int)
    cost = rng.random((n_a, 2, n_o)).astype(np.float32)
    cost[np.arange(n_a), :, truth] -= 2.0
    assert np.array_equal(best_path(cost, 1, 0.01), np.stack([truth, truth], axis=1))


@pytest.mark.parametrize("n", [1, 7, 64, 257])
def test_blocks_with_a_halo_match_the_whole_array_filter(n):
    data = np.random.default_rng(n).random((n, 5, 9)).astype(np.float32)
    sigma = (1.3, 0.7, 1.0)
    halo = int(4.0 * sigma[0] + 0.5)
    out = np.full_like(data, np.nan)

    def work(lo, hi, read_lo, read_hi):
        out[lo:hi] = gaussian_filter(data[read_lo:read_hi], sigma)[lo - read_lo : hi - read_lo]

    for_blocks(work, n, halo)
    assert np.array_equal(out, gaussian_filter(data, sigma))


def test_in_parallel_keeps_the_order_and_raises():
    assert in_parallel(lambda: 1, lambda: 2, lambda: 3) == [1, 2, 3]

    def fail():
        raise ValueError("call failed")

    with pytest.raises(ValueError, match="call failed"):
        in_parallel(lambda: 1, fail)


def test_a_failing_block_raises():
    def work(lo, *_):
        if lo > 0:
            raise ValueError("block failed")

    with pytest.raises(ValueError, match="block failed"):
        for_blocks(work, 400)


@pytest.mark.parametrize("shape", [(6, 20, 512), (6, 513), (3, 4, 10)])
def test_bin_ascans_averages_neighbours(shape):
    data = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    binned, factor = bin_ascans(data, (0.07, 0.0039, 0.0234))  # 23.4 um A-scans: pairs
    assert factor == 2 and binned.dtype == np.float32
    full = shape[-1] // 2 * 2
    expected = data[..., :full].reshape(*shape[:-1], -1, 2).mean(axis=-1)
    if full < shape[-1]:
        expected = np.concatenate([expected, data[..., full:].astype(np.float64)], axis=-1)
    np.testing.assert_allclose(binned, expected, rtol=1e-6)
    assert binned.shape == (*shape[:-1], -(-shape[-1] // 2))


@needs_kernels
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize(
    "shape, factor, axis",
    [((9, 40, 513), 2, 2), ((9, 40, 513), 3, 2), ((9, 41, 20), 4, 1), ((5, 7, 3), 5, 2), ((6, 513), 2, 1)],
)
def test_the_compiled_block_means_are_numpys(dtype, shape, factor, axis, without_kernels):
    """Block means along depth or A-scans, compiled, give the numpy reference's float32 arrays bit for
    bit (trailing samples that fill no group left out; a 2-D map; a factor with no full group)."""
    rng = np.random.default_rng(factor)
    data = (rng.random(shape) * (250 if dtype == np.uint8 else 4000)).astype(dtype)
    compiled = intensity._block_mean(data, factor, axis)
    without_kernels()
    expected = intensity._block_mean(data, factor, axis)
    assert compiled.dtype == np.float32 and compiled.shape == expected.shape
    np.testing.assert_array_equal(compiled, expected)


@needs_kernels
@pytest.mark.parametrize("shape", [(6, 124, 128), (3, 9, 5), (2, 1, 3), (4, 40, 1)])
@pytest.mark.parametrize("n_below, n_above", [(6, 10), (1, 1), (50, 70)])
def test_the_compiled_coarse_scores_are_numpys(shape, n_below, n_above, without_kernels):
    """The coarse ILM's four score arrays, compiled, equal numpy's bit for bit: levels around the
    threshold (ties), windows longer than the depth, a single sample, a single A-scan."""
    rng = np.random.default_rng(shape[1])
    data = np.round(rng.normal(100.0, 30.0, shape), 1).astype(np.float32)
    threshold, scale = 100.0, 37.3
    compiled = layers._coarse_scores(data, threshold, scale, n_below, n_above)
    without_kernels()
    for name, got, expected in zip(
        ("below", "above", "step", "cost"),
        compiled,
        layers._coarse_scores(data, threshold, scale, n_below, n_above),
        strict=True,
    ):
        assert got.shape == (shape[2], shape[0], shape[1]), name
        np.testing.assert_array_equal(got, expected, err_msg=name)


@needs_kernels
@pytest.mark.parametrize(
    "windows", [[(6, 38), (0, 7), (1, 3)], [(0, 0), (0, 0), (1, 1)], [(2, 1), (0, 3), (-2, 2)]]
)
def test_the_compiled_coarse_layers_are_numpys(windows):
    """The coarse photoreceptors' rise and Bruch's membrane, compiled, equal numpy's: ties, ILMs near
    both ends of the depth (windows partly and wholly outside), an empty window."""
    rng = np.random.default_rng(len(windows[0]))
    step = np.round(rng.normal(size=(20, 6, 40)), 1).astype(np.float32)
    ilm = rng.integers(-3, 45, size=(20, 6)).astype(np.int64)
    compiled, expected = (np.empty((2, 20, 6), np.int64) for _ in range(2))
    layers._band.coarse_layers(step, ilm, *windows, 0, 20, *compiled)
    layers._numpy_coarse_layers(step, ilm, windows, 0, 20, *expected)
    np.testing.assert_array_equal(compiled, expected)


@needs_kernels
def test_the_compiled_coarse_scores_check_their_buffers():
    data, weights = np.zeros((2, 8, 6), np.float32), layers.gaussian_weights(1.0)
    arrays = [np.empty((6, 2, 8), np.float32) for _ in range(4)]
    with pytest.raises(ValueError, match="shape"):
        layers._band.coarse_scores(
            data, weights, 1.0, 1.0, 2, 2, 100.0, 0, 6, *arrays[:3], np.empty((6, 2, 7), np.float32)
        )
    with pytest.raises(ValueError, match="odd weights"):
        layers._band.coarse_scores(data, np.ones(2), 1.0, 1.0, 2, 2, 100.0, 0, 6, *arrays)
    with pytest.raises(ValueError, match="lo <= hi"):
        layers._band.coarse_scores(data, weights, 1.0, 1.0, 2, 2, 100.0, 0, 7, *arrays)
    with pytest.raises(TypeError, match="float32"):
        layers._band.coarse_scores(data.astype(np.float64), weights, 1.0, 1.0, 2, 2, 100.0, 0, 6, *arrays)


@needs_kernels
@pytest.mark.parametrize("bscans", [None, [0, 3, 4, 9], [5]])
@pytest.mark.parametrize("r0, r1, length", [(0, 40, 5), (7, 29, 12), (30, 40, 12), (3, 3, 2)])
def test_the_compiled_onl_score_is_numpys(bscans, r0, r1, length, without_kernels):
    """The ONL score (fall onto dark tissue) of a band, compiled, equals numpy's bit for bit: all
    B-scans or some, windows reaching past the band's end, an empty row range."""
    rng = np.random.default_rng(r1)
    data = (rng.random((10, 60, 12)) * 200).astype(np.float32)
    reference = rng.uniform(5, 15, (10, 12))
    band = layers._Band(data, reference, -5, 35, (0.8, 0.6, 1.0), 2, 13, 150.0)
    traced = slice(None) if bscans is None else np.array(bscans)
    compiled = band.fall_onto_dark(length, 31.7, r0, r1, traced)
    without_kernels()
    np.testing.assert_array_equal(compiled, band.fall_onto_dark(length, 31.7, r0, r1, traced))


@needs_kernels
def test_the_compiled_onl_score_checks_its_buffers():
    band = layers._Band(
        np.ones((4, 30, 6), np.float32), np.full((4, 6), 10.0), -5, 15, (1.0, 1.0, 1.0), 2, 6, 1.0
    )
    bscans, out = np.arange(4), np.empty((6, 4, 10), np.float32)
    args = (band.cumulative, band.edge)
    with pytest.raises(ValueError, match="outside"):
        layers._band.fall_onto_dark(
            *args, np.array([0, 4]), 6, 0, 10, 3, 0.0, 0, 6, np.empty((6, 2, 10), np.float32)
        )
    with pytest.raises(ValueError, match="length <= pad"):
        layers._band.fall_onto_dark(*args, bscans, 6, 0, 10, 7, 0.0, 0, 6, out)
    with pytest.raises(ValueError, match="r1 - r0"):
        layers._band.fall_onto_dark(*args, bscans, 6, 0, 11, 3, 0.0, 0, 6, out)
    with pytest.raises(TypeError, match="int64"):
        layers._band.fall_onto_dark(*args, bscans.astype(np.int32), 6, 0, 10, 3, 0.0, 0, 6, out)


@needs_kernels
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize(
    "spacing", [(0.07, 0.0039, 0.047), (0.07, 0.0039, 0.0234), (0.07, 0.02, 0.2), (0.07, 0.005, 0.03)]
)
def test_the_compiled_coarse_copy_is_numpys(dtype, spacing, without_kernels):
    """The coarse copy (block means along A-scans, then depth, in one pass per B-scan) equals the two
    numpy passes bit for bit, trailing samples and A-scans that fill no block included."""
    rng = np.random.default_rng(int(spacing[2] * 1000))
    data = (rng.random((5, 61, 39)) * (250 if dtype == np.uint8 else 4000)).astype(dtype)
    compiled = intensity.coarse(data, spacing)
    without_kernels()
    expected = intensity.coarse(data, spacing)
    assert (compiled.axial_factor, compiled.lateral_factor) == (
        expected.axial_factor,
        expected.lateral_factor,
    )
    np.testing.assert_array_equal(compiled.data, expected.data)


@needs_kernels
def test_the_compiled_block_means_check_their_buffers():
    data = np.zeros((2, 8, 6), np.uint8)
    with pytest.raises(TypeError, match="uint8, uint16 or float32"):
        intensity._binning.block_mean(data.astype(np.float64), 2, 2, 0, 2, np.empty((2, 8, 3), np.float32))
    with pytest.raises(TypeError, match="float32"):
        intensity._binning.block_mean(data, 2, 2, 0, 2, np.empty((2, 8, 3), np.float64))
    with pytest.raises(ValueError, match="shape"):
        intensity._binning.block_mean(data, 2, 2, 0, 2, np.empty((2, 8, 4), np.float32))
    with pytest.raises(ValueError, match="axis 1 or 2"):
        intensity._binning.block_mean(data, 2, 0, 0, 2, np.empty((1, 8, 6), np.float32))
    with pytest.raises(ValueError, match="lo <= hi"):
        intensity._binning.block_mean(data, 2, 2, 0, 3, np.empty((2, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        intensity._binning.coarse_mean(data, 2, 4, 0, 2, np.empty((2, 2, 2), np.float32))
    with pytest.raises(TypeError, match="uint8, uint16 or float32"):
        intensity._binning.coarse_mean(data.astype(np.int16), 2, 4, 0, 2, np.empty((2, 2, 3), np.float32))


def _blocks_in_child(queue):
    out = np.zeros(400)

    def work(lo, hi, *_):
        out[lo:hi] = 1.0

    for_blocks(work, 400)
    queue.put(float(out.sum()))


def test_blocks_work_in_a_forked_child():
    """A child forked after the parent used the thread pool makes its own (the parent's threads do
    not exist in it), instead of waiting for ever."""
    import multiprocessing

    for_blocks(lambda *_: None, 400)  # the parent's pool exists now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_blocks_in_child, args=(queue,))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("for_blocks hung in a forked child")
    assert child.exitcode == 0 and queue.get(timeout=5) == 400.0


def bands(data, reference_px, sigma, without_kernels, first=-6, stop=30, k=2, pad=11):
    """The same band made by the compiled kernel and by numpy."""
    compiled = layers._Band(data, reference_px, first, stop, sigma, k, pad, 1.0)
    without_kernels()
    return compiled, layers._Band(data, reference_px, first, stop, sigma, k, pad, 1.0)


@needs_kernels
@pytest.mark.parametrize(
    "shape, sigma, dtype",
    [
        ((128, 200, 256), (0.85, 0.57, 1.03), np.float32),  # the default grid's smoothing
        ((20, 60, 30), (2.3, 0.3, 1.5), np.float64),
        ((5, 30, 64), (1e-16, 4.0, 2.5), np.uint8),  # an axis the Gaussian leaves alone
        ((2, 30, 3), (3.0, 2.0, 0.0), np.float32),  # kernels longer than the axis: reflected again
        ((1, 12, 1), (0.85, 0.57, 1.03), np.uint16),
    ],
)
def test_the_compiled_band_gives_the_numpy_bands_arrays(shape, sigma, dtype, without_kernels):
    """Gather (rows clipped at both ends of the A-scan), a Gaussian on three axes, cumulative sums and
    edges: identical to gather + scipy.ndimage.gaussian_filter + numpy, bit for bit."""
    rng = np.random.default_rng(sum(shape))
    data = (rng.random(shape) * 255).astype(dtype)
    reference = rng.uniform(-10, shape[1] + 10, size=(shape[0], shape[2]))  # some bands leave the A-scan
    reference.flat[0], reference.flat[-1] = -1e15, 1e15  # far outside: every row the first or last sample
    compiled, numpy = bands(data, reference, sigma, without_kernels)
    np.testing.assert_array_equal(compiled.cumulative, numpy.cumulative)
    np.testing.assert_array_equal(compiled.edge, numpy.edge)


@needs_kernels
def test_the_compiled_band_checks_its_buffers():
    data = np.zeros((2, 10, 3), np.float32)
    start = np.zeros((3, 2), np.int64)
    weights = [np.ones(1)] * 3
    cumulative, edge = np.zeros((3, 2, 4 + 2 * 2 + 1), np.float32), np.zeros((3, 2, 4), np.float32)
    fill = layers._band.fill
    fill(data, start, *weights, 1, 2, 0, 3, cumulative, edge)
    with pytest.raises(TypeError, match="float32"):
        fill(data.astype(np.float64), start, *weights, 1, 2, 0, 3, cumulative, edge)
    with pytest.raises(ValueError, match="odd length"):
        fill(data, start, np.ones(2), *weights[1:], 1, 2, 0, 3, cumulative, edge)
    with pytest.raises(ValueError, match="match"):
        fill(data, start[:2], *weights, 1, 2, 0, 3, cumulative, edge)
    with pytest.raises(ValueError, match="lo < hi"):
        fill(data, start, *weights, 1, 2, 0, 4, cumulative, edge)
    with pytest.raises(ValueError, match="k <= pad"):
        fill(data, start, *weights, 3, 2, 0, 3, cumulative, edge)


def banded_case(rng, shape):
    score = rng.normal(size=shape).astype(np.float32)
    score[:, :, ::7] = np.round(score[:, :, ::7])  # ties
    low = np.floor(rng.uniform(-3, shape[2] / 2, size=shape[:2]))
    high = low + np.floor(rng.uniform(-2, shape[2], size=shape[:2]))  # empty where below low
    return score, low, high


@needs_kernels
@pytest.mark.parametrize(
    "shape, max_step", [((256, 128, 40), 4), ((30, 7, 3), 2), ((9, 4, 2), 1), ((5, 3, 1), 3)]
)
def test_the_compiled_banded_search_gives_the_numpy_searchs_paths(shape, max_step):
    """Same paths and sub-pixel rows, with the soft limits, ties and narrow bands; also on a strided
    view of a larger score (the band's rows r0:r1)."""
    rng = np.random.default_rng(sum(shape))
    score, low, high = banded_case(rng, shape)
    wide = np.concatenate([score, rng.normal(size=shape).astype(np.float32)], axis=2)
    for scores in (score, wide[..., : shape[2]]):
        for step_penalty in (0.0, 0.01):
            rows, refined = band_path(scores, 0.7, low, high, max_step, step_penalty, 100.0)
            expected_rows, expected_refined = numpy_band_path(
                scores, 0.7, low, high, max_step, step_penalty, 100.0
            )
            np.testing.assert_array_equal(rows, expected_rows)
            np.testing.assert_array_equal(refined, expected_refined)


@needs_kernels
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_banded_scores_that_are_not_finite_take_the_numpy_search(value):
    rng = np.random.default_rng(3)
    score, low, high = banded_case(rng, (40, 40, 20))  # two blocks of B-scans
    score[rng.random(score.shape) < 0.05] = value
    rows, refined = band_path(score, 1.0, low, high, 2, 0.01, 100.0)
    expected_rows, expected_refined = numpy_band_path(score, 1.0, low, high, 2, 0.01, 100.0)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(refined, expected_refined)


@needs_kernels
def test_a_segmentation_is_identical_with_the_kernels_and_without(without_kernels):
    """The kernels change the time, not one boundary: a whole phantom eye, foveal second pass included."""
    volume = phantom.make_eye("FI", seed=11, shape=(32, 496, 256)).volume
    compiled = sdk.retina.segment(volume)
    without_kernels()
    numpy = sdk.retina.segment(volume)
    for name, surface in compiled.surfaces.items():
        np.testing.assert_array_equal(surface, numpy.surfaces[name], err_msg=name)
    assert compiled.quality == numpy.quality


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_percentiles_are_numpys_exactly(dtype):
    """The histogram route for unsigned 8/16-bit volumes gives np.percentile's floats, bit for bit
    (a strided sample of a volume, ties, one value, the ends and the fractions the front end uses)."""
    rng = np.random.default_rng(7)
    high = 256 if dtype == np.uint8 else 4000
    for n, q in [
        (2001, (0.1, 99.9)),
        (7, (0.1, 50, 99.9)),
        (1, (0.1, 99.9)),
        (6000, tuple(rng.uniform(0, 100, 40))),
    ]:
        data = rng.integers(0, high, size=(3, n, 2)).astype(dtype)[::2, :, ::2]
        assert percentiles(data, q) == [float(v) for v in np.percentile(data, q)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_percentiles_and_medians_of_sorted_arrays_are_numpys_exactly(dtype):
    """sorted_percentile and sorted_median of a sorted array give np.percentile's and np.median's
    value and type bit for bit (numpy's float32 lerp for float32): odd and even sizes, one value,
    ties, tiny and huge scales, the quantiles the front end uses, the ends."""
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 4, 7, 100, 1001, 4096):
        for scale in (1e-6, 1.0, 1e6):
            for tied in (False, True):
                values = (rng.normal(size=n) * scale).astype(dtype)
                if tied:
                    values = np.round(values / scale, 1).astype(dtype) * dtype(scale)
                ordered = np.sort(values)
                for q in (0, 0.1, 33.3, 50, 60, 84, 99.5, 100):
                    expected = np.percentile(values, q)
                    got = sorted_percentile(ordered, q)
                    assert got == expected and type(got) is type(expected), (n, scale, tied, q)
                median = sorted_median(ordered)
                assert median == np.median(values) and type(median) is type(np.median(values)), n


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape, size", [((128, 512), (3, 7)), ((64, 256), (5, 7)), ((9, 4), (3, 31)), ((1, 1), (5, 5))]
)
def test_the_compiled_median_is_scipys(dtype, shape, size):
    """Every pixel's median as scipy.ndimage.median_filter(mode="nearest") gives it: ties, windows
    wider than the map, a single pixel."""
    rng = np.random.default_rng(shape[0])
    values = rng.normal(size=shape).astype(dtype)
    values[:, ::3] = np.round(values[:, ::3] * 2) / 2  # ties
    got = median.median_filter(values, size)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, ndimage.median_filter(values, size, mode="nearest"))


@pytest.mark.parametrize("case", ["nan", "even", "int"])
def test_nan_maps_even_windows_and_integers_go_to_scipy(case):
    rng = np.random.default_rng(1)
    values, size = rng.normal(size=(20, 30)), (3, 5)
    if case == "nan":
        values[4, 4] = np.nan
    elif case == "even":
        size = (2, 4)
    else:
        values = rng.integers(0, 9, size=(20, 30))
    expected = ndimage.median_filter(values, size, mode="nearest")
    np.testing.assert_array_equal(median.median_filter(values, size), expected)


@needs_kernels
def test_the_compiled_median_checks_its_buffers():
    values = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="odd"):
        median._median.median_filter(values, 2, 3, np.empty_like(values))
    with pytest.raises(TypeError, match="one shape"):
        median._median.median_filter(values, 3, 3, np.empty((4, 5), np.float64))
    with pytest.raises(TypeError, match="one shape"):
        median._median.median_filter(values, 3, 3, np.empty((5, 4), np.float32))


MAP, VOLUME = (4, 5), (4, 5, 6)


@needs_kernels
@pytest.mark.parametrize(
    "shape, call, message",
    [
        # the last argument is wrong: every buffer taken before it must be released
        (
            MAP,
            lambda held: median._median.median_filter(held, 3, 3, np.zeros(MAP, np.int32)),
            "out must be a C-contiguous 2-D float32 or float64 array",
        ),
        (
            VOLUME,
            lambda held: intensity._binning.block_mean(held, 1, 2, 0, 4, np.zeros(MAP, np.float32)),
            "out must be a C-contiguous 3-D float32 array",
        ),
        (
            VOLUME,
            lambda held: paths._paths.best_path(held, 1, 0.0, np.zeros(MAP, np.int32)),
            "out must be a C-contiguous 2-D int64 array",
        ),
        (
            VOLUME,
            lambda held: layers._band.coarse_layers(
                held,
                np.zeros(MAP, np.int64),
                (0, 1),
                (0, 1),
                (0, 1),
                0,
                4,
                np.zeros(MAP, np.int64),
                np.zeros(MAP, np.float64),
            ),
            "bm must be a C-contiguous 2-D int64 array",
        ),
        (
            VOLUME,
            lambda held: paths._paths.band_path(
                held,
                1.0,
                np.zeros(MAP),
                np.zeros(MAP),
                0.0,
                1,
                0.0,
                np.zeros(MAP, np.int64),
                np.zeros(MAP, np.int64),
            ),
            "refined must be a C-contiguous 2-D float64 array",
        ),
        (
            MAP,
            lambda held: median._median.median_filter(held.astype(np.int16), 3, 3, np.zeros(MAP, np.float32)),
            "values must be a C-contiguous 2-D float32 or float64 array",
        ),
        (
            VOLUME,
            lambda held: intensity._binning.coarse_mean(
                held.astype(np.int8), 1, 1, 0, 4, np.zeros(VOLUME, np.float32)
            ),
            "data must be a C-contiguous 3-D uint8, uint16 or float32 array",
        ),
    ],
)
def test_the_kernels_name_the_wrong_argument_and_release_the_others(shape, call, message):
    held = np.zeros(shape, np.float32)
    references = sys.getrefcount(held)  # a buffer still held would keep a reference to its array
    with pytest.raises(TypeError) as raised:
        call(held)
    assert str(raised.value) == message
    del raised  # its traceback holds the call's frame, and so the array
    assert sys.getrefcount(held) == references


@needs_kernels
def test_the_banded_search_reads_a_strided_score():
    """band_path takes its score with any strides (a view of the band); the answer is the copy's."""
    rng = np.random.default_rng(3)
    score = rng.normal(size=(12, 3, 40)).astype(np.float32)
    low, high = np.full((12, 3), 2.0), np.full((12, 3), 30.0)
    view = np.ascontiguousarray(np.swapaxes(score, 0, 1)).swapaxes(0, 1)
    assert not view.flags.c_contiguous
    paths_view, refined_view = np.zeros((12, 3), np.int64), np.zeros((12, 3))
    paths_copy, refined_copy = np.zeros((12, 3), np.int64), np.zeros((12, 3))
    assert paths._paths.band_path(view, 1.0, low, high, 0.0, 2, 0.01, paths_view, refined_view)
    assert paths._paths.band_path(score, 1.0, low, high, 0.0, 2, 0.01, paths_copy, refined_copy)
    np.testing.assert_array_equal(paths_view, paths_copy)
    np.testing.assert_array_equal(refined_view, refined_copy)
