"""Intensity scale and the coarse working copy of a volume.

Segmentation works on log-scaled reflectivity (the display scale instruments export). Volumes
that look linear (floats with a long bright tail) are log-compressed first. Levels are then
expressed in units of the background (vitreous/deep noise) so that thresholds do not depend on the
vendor's display range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdk.retina.chunks import for_blocks, in_parallel
from sdk.volume import OCTVolume

try:  # block means compiled (sdk/retina/_binning.c, built by pip install); _numpy_block_mean: the reference
    import sdk.retina._binning as _binning  # no stub: mypy takes it as a missing import (Any)
except ImportError:  # a source tree without the build: numpy, the same arrays
    _binning = None

WORKING_LATERAL_MM = 0.04  # segmentation works on A-scans binned to about 40 um
WORKING_AXIAL_MM = 0.002  # ... and on samples at least 2 um deep (finer depth grids are binned)
COARSE_AXIAL_MM = 0.015  # coarse grid: about 15 um axially ...
COARSE_LATERAL_MM = 0.09  # ... and 90 um along the B-scan
LINEAR_TAIL_RATIO = 50.0  # p99.9 / p50 above this means linear intensities
SAMPLE_STRIDE = 4  # statistics use every 4th B-scan and A-scan
DISPLAY_RANGE = 255.0  # floats that are not linear are rescaled to 0..255 before segmentation


@dataclass(frozen=True)
class Working:
    """The grid segmentation works on: log-scaled, A-scans binned to ~40 um, depth to >= 2 um.

    ``data`` is (n_bscans, depth // axial_factor, ceil(n_ascans / ascan_factor)); a boundary at
    working depth z lies at z * axial_factor in the volume's px. ``blank`` says why there is nothing
    to segment (a constant volume), else None.
    """

    data: np.ndarray
    spacing_mm: tuple[float, float, float]
    ascan_factor: int
    axial_factor: int
    blank: str | None


def prepare(volume: OCTVolume) -> Working:
    """Working copy of a volume for segmentation, or the reason it is blank.

    Linear float intensities are log-compressed; other floats are rescaled to 0..255 from their
    robust range (so values near the float limits cannot overflow); integers are used as they are.
    """
    spacing = volume.spacing_mm
    sample = volume.data[::SAMPLE_STRIDE, :, ::SAMPLE_STRIDE]
    low, high = percentiles(sample, (0.1, 99.9))
    if not high > low:
        only = float(sample.flat[0])
        what = f"every voxel is {only:g}" if np.ptp(volume.data) == 0 else "99.8% of voxels have one value"
        return Working(volume.data, spacing, 1, 1, f"the volume is blank ({what}): no tissue to grade")
    data = volume.data
    if data.dtype.kind == "f":
        logged = log_scaled(volume)
        data = logged if logged is not None else _rescaled(data, low, high)
    axial_factor = max(1, int(WORKING_AXIAL_MM / spacing[1] + 1e-9))
    if axial_factor > 1:
        data = _block_mean(data, axial_factor, axis=1)
    binned, ascan_factor = bin_ascans(data, spacing)
    working = (spacing[0], spacing[1] * axial_factor, spacing[2] * ascan_factor)
    return Working(binned, working, ascan_factor, axial_factor, None)


def percentiles(sample: np.ndarray, q) -> list[float]:
    """``np.percentile(sample, q)`` (its default, linear method), each a float, with numpy's
    arithmetic; for 8- and 16-bit unsigned integers from a histogram (no sort), else by numpy.
    """
    if sample.dtype not in (np.uint8, np.uint16):
        return [float(v) for v in np.percentile(sample, q)]
    ranks = np.cumsum(np.bincount(sample.ravel(), minlength=1))  # ranks[v]: how many are <= v
    n = int(ranks[-1])
    result = []
    for quantile in np.true_divide(q, 100):
        virtual = (n - 1) * quantile  # numpy: the sorted values at floor(virtual) and the next, lerped
        previous = int(np.floor(virtual))
        gamma = virtual - previous
        a, b = (
            float(np.searchsorted(ranks, rank, side="right")) for rank in (previous, min(previous + 1, n - 1))
        )
        result.append(b - (b - a) * (1 - gamma) if gamma >= 0.5 else a + (b - a) * gamma)
    return result


def sorted_percentile(values: np.ndarray, q: float) -> np.floating:
    """``np.percentile(values, q)`` of a sorted 1-D float array for a scalar ``q``: the same value
    and type (numpy's linear method and its arithmetic, a float32 lerp for float32 values), without
    numpy's partition, which with its four split points costs 2.5x a sort of the same array."""
    n = values.size
    virtual = (n - 1) * np.true_divide(q, 100)
    if virtual >= n - 1:
        previous = following = -1
    elif virtual < 0:
        previous = following = 0
    else:
        previous = int(np.floor(virtual))
        following = previous + 1
    gamma = float(virtual - previous)
    low, high = values[previous], values[following]
    difference = high - low
    return high - difference * (1 - gamma) if gamma >= 0.5 else low + difference * gamma


def sorted_median(values: np.ndarray) -> np.floating:
    """``np.median(values)`` of a sorted 1-D float array: the same value and type."""
    half = values.size // 2
    return values[half] if values.size % 2 else (values[half - 1] + values[half]) / 2


def median_and_spread(values: np.ndarray) -> tuple[float, float]:
    """Median of a sorted 1-D float array and its upper spread (84th percentile minus median, at
    least 1e-6), as floats."""
    median = float(sorted_median(values))
    spread = sorted_percentile(values, 84) - median
    return median, float(1e-6 if 1e-6 > spread else spread)  # max(spread, 1e-6), compared as max does


def _rescaled(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """float32 copy of ``data`` clipped to [low, high] and mapped to 0..DISPLAY_RANGE; halves are
    taken first so that no difference of two finite float64 values can overflow."""
    span = high / 2 - low / 2
    return ((np.clip(data, low, high) / 2 - low / 2) * (DISPLAY_RANGE / span)).astype(np.float32)


@dataclass(frozen=True)
class Levels:
    """Robust grey levels of a volume, in its (log-scaled) units.

    ``background`` and ``tissue`` are speckle-averaged levels (from the coarse copy), so thresholds
    between them hold for smoothed data; ``noise_sd`` is the voxel-level spread of the background and
    ``coarse_noise_sd`` that of the coarse (block-averaged) copy.
    """

    background: float  # median of the noise (vitreous and below the choroid)
    noise_sd: float  # spread of single background voxels (84th percentile minus median)
    tissue: float  # bright tissue (RPE, RNFL), 99.5th percentile of the speckle-averaged volume
    coarse_noise_sd: float

    def signal_to_noise(self) -> float:
        """Tissue above background in units of the background's spread."""
        return (self.tissue - self.background) / self.noise_sd


@dataclass(frozen=True)
class Coarse:
    """Block-averaged copy of a volume: (n_bscans, depth // axial_factor, n_ascans // lateral_factor)."""

    data: np.ndarray  # float32
    axial_factor: int
    lateral_factor: int


def log_scaled(volume: OCTVolume) -> np.ndarray | None:
    """A log-compressed float32 copy if the volume holds linear intensities, else None (use as is)."""
    data = volume.data
    if data.dtype.kind != "f":
        return None
    sample = data[::SAMPLE_STRIDE, :, ::SAMPLE_STRIDE]
    low, median, high = np.percentile(sample, [0.1, 50, 99.9])
    with np.errstate(over="ignore"):  # a tail beyond float range is a long tail: inf compares right
        tail = high / max(median, 1e-12)
    if low < 0 or high <= 0 or tail < LINEAR_TAIL_RATIO:
        return None
    return (10.0 * np.log10(np.maximum(data, high * 1e-6))).astype(np.float32)


def levels(data: np.ndarray, coarse_data: np.ndarray) -> Levels:
    """Grey levels of a log-scaled volume (n_bscans, depth, n_ascans) and its coarse copy.

    The background is what most voxels show (vitreous, and depth below the choroid); its spread is
    the upper half of its distribution (84th percentile minus median), because a display range
    may clip the lower half at zero.
    """
    (background, noise_sd), (_, coarse_noise_sd), tissue = in_parallel(
        lambda: _dark_level(data),
        lambda: _dark_level(coarse_data),
        lambda: float(sorted_percentile(np.sort(coarse_data[::SAMPLE_STRIDE], axis=None), 99.5)),
    )
    return Levels(background, noise_sd, tissue, coarse_noise_sd)


def _dark_level(data: np.ndarray) -> tuple[float, float]:
    """Median and upper spread (84th percentile minus median) of the darkest 60% of samples."""
    voxels = np.sort(np.asarray(data[::SAMPLE_STRIDE, :, ::SAMPLE_STRIDE], dtype=np.float32), axis=None)
    darkest = np.count_nonzero(voxels <= sorted_percentile(voxels, 60))  # sorted: the first ones
    return median_and_spread(voxels[:darkest])


def coarse(data: np.ndarray, spacing_mm: tuple[float, float, float]) -> Coarse:
    """Block-average depth and A-scans to about 15 x 90 um (B-scans are kept)."""
    n_b, depth, n_a = data.shape
    fz = max(1, min(int(round(COARSE_AXIAL_MM / spacing_mm[1])), depth))
    fx = max(1, min(int(round(COARSE_LATERAL_MM / spacing_mm[2])), n_a))
    if not _kernel_takes(data):
        return Coarse(_block_mean(_block_mean(data, fx, axis=2), fz, axis=1), fz, fx)
    out = np.empty((n_b, depth // fz, n_a // fx), np.float32)  # both means in one pass per B-scan
    for_blocks(lambda lo, hi, *_: _binning.coarse_mean(data, fx, fz, lo, hi, out), n_b)
    return Coarse(out, fz, fx)


def _block_mean(data: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """float32 mean of consecutive groups of ``factor`` samples along ``axis`` (not the first) of a 2-D
    or 3-D array; trailing samples that fill no group are left out. B-scans (the first axis) in
    parallel blocks, by the compiled kernel where it is built and takes the array (3-D or 2-D uint8,
    uint16 or float32, C-contiguous), else by :func:`_numpy_block_mean`: the same arrays."""
    if data.ndim == 2:
        return _block_mean(data[:, None, :], factor, axis + 1)[:, 0, :]
    shape = list(data.shape)
    shape[axis] //= factor
    out = np.empty(shape, np.float32)
    if _kernel_takes(data):
        for_blocks(lambda lo, hi, *_: _binning.block_mean(data, factor, axis, lo, hi, out), data.shape[0])
    else:
        for_blocks(lambda lo, hi, *_: _numpy_block_mean(data[lo:hi], factor, axis, out[lo:hi]), data.shape[0])
    return out


def _kernel_takes(data: np.ndarray) -> bool:
    """Whether the compiled block means are built and take ``data`` (3-D, C-contiguous, native
    uint8, uint16 or float32)."""
    return (
        _binning is not None
        and data.ndim == 3
        and data.dtype in (np.uint8, np.uint16, np.float32)
        and data.dtype.isnative
        and data.flags.c_contiguous
    )


def _numpy_block_mean(data: np.ndarray, factor: int, axis: int, out: np.ndarray) -> None:
    """:func:`_block_mean` of ``data`` into ``out`` in numpy: the reference of the compiled kernel
    (the first sample of each group, then each next one added in float32, then times 1 / factor)."""
    used = [slice(None)] * data.ndim
    used[axis] = slice(0, out.shape[axis] * factor)
    data = data[tuple(used)]

    def part(i):
        index = [slice(None)] * data.ndim
        index[axis] = slice(i, None, factor)
        return data[tuple(index)]

    np.copyto(out, part(0))
    for i in range(1, factor):
        out += part(i)
    out *= 1.0 / factor


def bin_ascans(data: np.ndarray, spacing_mm) -> tuple[np.ndarray, int]:
    """Average groups of neighbouring A-scans (the last axis: a volume (n_bscans, depth, n_ascans) or
    an en-face map (n_bscans, n_ascans)) to about 40 um spacing: (binned float32 array, factor).

    The factor is 1 (no copy) when A-scans are already that far apart. Trailing A-scans that do
    not fill a group are averaged on their own.
    """
    factor = max(1, int(round(WORKING_LATERAL_MM / spacing_mm[2])))
    if factor == 1:
        return data, 1
    n_a = data.shape[-1]
    full = n_a // factor * factor
    binned = _block_mean(data, factor, axis=data.ndim - 1)
    if full < n_a:
        rest = data[..., full:].mean(axis=-1, keepdims=True, dtype=np.float32)
        binned = np.concatenate([binned, rest], axis=-1)
    return binned, factor


def unbin_ascans(values: np.ndarray, factor: int, n_ascans: int) -> np.ndarray:
    """Back from binned A-scans to every A-scan, linear between group centres: (..., n_ascans)."""
    if factor == 1:
        return values
    n_groups = values.shape[-1]
    centres = np.minimum(np.arange(n_groups) * factor + (factor - 1) / 2.0, n_ascans - 1)
    x = np.arange(n_ascans)
    position = np.interp(x, centres, np.arange(n_groups))
    left = np.floor(position).astype(np.intp)
    right = np.minimum(left + 1, n_groups - 1)
    weight = (position - left).astype(np.float32)
    return values[..., left] * (1 - weight) + values[..., right] * weight
