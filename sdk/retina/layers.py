"""Layer boundaries ILM, RNFL/GCL, IPL/INL and Bruch's membrane on every B-scan.

Chiu-style order with region limits, each boundary a minimum-cost path (sdk.retina.paths):

1. coarse ILM (first rise above the tissue threshold) and coarse Bruch's membrane (the largest fall
   below it: from the RPE, the brightest layer, into the pigment-shadowed choroid; a log-scale step,
   so vessel shadows do not change it) on a block-averaged copy; Bruch's membrane is turned into a
   smooth reference surface that bridges the disc;
2. ILM (dark-to-bright edge) near the coarse ILM, Bruch's membrane (bright-to-dark edge below the
   RPE) near the reference;
3. inside a band flattened to the ILM: OPL/ONL (the strongest bright-to-dark edge above the
   photoreceptors: the ONL is the darkest thick layer), then IPL/INL (bright-to-dark, one INL + OPL
   above it), then RNFL/GCL (bright-to-dark between ILM and IPL/INL).

Flattening to a reference surface before smoothing across B-scans makes the result insensitive to
axial motion between B-scans. Positions are axial px: a boundary at z lies between voxel z-1 and z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d, median_filter

from sdk.retina.intensity import Coarse, Levels
from sdk.retina.paths import best_path, refine_subpixel

ILM_THRESHOLD = 0.4  # fraction of the way from background to tissue level that marks tissue
BM_SEARCH_UM = (60.0, 600.0)  # Bruch's membrane lies this far below the ILM (outside the disc)
REFERENCE_WINDOW_MM = 3.2  # robust (median) window that bridges the optic disc
ILM_SEARCH_UM = 40.0  # fine search around the coarse ILM
BM_FINE_SEARCH_UM = 30.0  # fine search around the reference surface
INNER_BAND_UM = (-50.0, 520.0)  # band flattened to the ILM, relative to the coarse ILM
PHOTORECEPTORS_MIN_UM = 70.0  # OPL/ONL lies at least this far above Bruch's membrane
ONL_PROBE_UM = 40.0  # how much tissue below OPL/ONL is expected to be dark
INL_OPL_UM = (6.0, 75.0)  # IPL/INL lies this far above OPL/ONL (INL + OPL thickness)
SMOOTHING_UM = (40.0, 40.0, 4.0)  # Gaussian sd across B-scans, along B-scans, axially
EDGE_HALF_WIDTH_UM = 8.0  # an edge is the mean of this much below minus this much above
STEP_PENALTY = 0.01  # per px of change between A-scans, in units of (tissue - background)
MAX_SLOPE = 0.5  # steepest inner-layer slope relative to the ILM (foveal pit walls), um axial per um lateral
OUTSIDE_COST = 100.0  # cost of a row outside a boundary's allowed region (a soft limit keeps paths feasible)


@dataclass(frozen=True)
class LayerResult:
    """Boundaries (n_bscans, n_ascans) in axial px and the edge contrast found along each.

    ``contrast`` is the edge step at the boundary in units of the background noise spread.
    """

    surfaces: dict[str, np.ndarray]
    contrast: dict[str, np.ndarray]
    bm_reference_px: np.ndarray  # smooth surface through Bruch's membrane, bridging the disc
    tissue_found: np.ndarray  # (n_bscans, n_ascans) bool: the A-scan holds retina at all


def segment_layers(data: np.ndarray, spacing_mm, coarse: Coarse, levels: Levels) -> LayerResult:
    """Find the four boundaries in a log-scaled volume (n_bscans, depth, n_ascans)."""
    axial_um = spacing_mm[1] * 1000.0
    scale = max(levels.tissue - levels.background, 1e-6)
    n_b, depth, n_a = data.shape

    ilm_c, bm_c = _coarse_surfaces(coarse, levels, axial_um)
    ilm_ref = _to_fine(ilm_c, coarse, n_a)
    bm_ref = _to_fine(_robust_reference(bm_c, coarse, spacing_mm), coarse, n_a)
    tissue_found = _to_fine(np.isfinite(ilm_c).astype(float), coarse, n_a) > 0.5

    sigma = (SMOOTHING_UM[0] / 1000.0 / spacing_mm[0], SMOOTHING_UM[1] / 1000.0 / spacing_mm[2],
             SMOOTHING_UM[2] / axial_um)

    def px(um):
        return int(round(um / axial_um))

    k = max(1, px(EDGE_HALF_WIDTH_UM))
    steep = max(1, int(np.ceil(MAX_SLOPE * spacing_mm[2] / spacing_mm[1])))

    # Bruch's membrane: strongest bright-to-dark edge near the reference
    bm_band = _Band(data, bm_ref, px(-BM_FINE_SEARCH_UM) - k, px(BM_FINE_SEARCH_UM) + k + 1, sigma, k)
    bm, bm_contrast = bm_band.trace(bm_band.edge / scale, False, 1, STEP_PENALTY)

    # inner retina, flattened to the coarse ILM
    band = _Band(data, ilm_ref, px(INNER_BAND_UM[0]), px(INNER_BAND_UM[1]), sigma, k)
    rise, fall = band.edge / scale, -band.edge / scale
    origin = -px(INNER_BAND_UM[0])
    ilm_window = np.zeros(band.edge.shape, bool)
    ilm_window[..., max(origin - px(ILM_SEARCH_UM), 1): origin + px(ILM_SEARCH_UM) + 1] = True
    ilm, ilm_contrast = band.trace(np.where(ilm_window, -rise, OUTSIDE_COST), True, steep, STEP_PENALTY)

    bm_in_band = band.offset_of(bm_band.depth_of(bm))
    # the ONL is the darkest thick layer: prefer a falling edge with dark tissue below it
    onl = -fall + (band.mean_below(px(ONL_PROBE_UM)) - levels.background) / scale
    opl_onl, opl_contrast = band.trace(_limit(onl, ilm + 2, bm_in_band - px(PHOTORECEPTORS_MIN_UM)), False,
                                       steep, STEP_PENALTY)
    ipl_inl, ipl_contrast = band.trace(
        _limit(-fall, np.maximum(ilm, opl_onl - px(INL_OPL_UM[1])), opl_onl - px(INL_OPL_UM[0])), False, steep,
        STEP_PENALTY)
    rnfl_gcl, rnfl_contrast = band.trace(_limit(-fall, ilm, ipl_inl - 1), False, steep, STEP_PENALTY)

    noise = levels.noise_sd / scale
    surfaces = {"ILM": band.depth_of(ilm), "RNFL_GCL": band.depth_of(rnfl_gcl),
                "IPL_INL": band.depth_of(ipl_inl), "BM": bm_band.depth_of(bm), "OPL_ONL": band.depth_of(opl_onl)}
    contrast = {"ILM": ilm_contrast / noise, "RNFL_GCL": rnfl_contrast / noise,
                "IPL_INL": ipl_contrast / noise, "BM": bm_contrast / noise, "OPL_ONL": opl_contrast / noise}
    return LayerResult(surfaces, contrast, bm_ref, tissue_found)


class _Band:
    """Voxels gathered in a band of rows around a reference surface, smoothed, and their axial edges.

    ``edge[b, a, j]`` = mean(smoothed[j : j+k]) - mean(smoothed[j-k : j]): positive for a
    dark-to-bright boundary at band row j, which lies at depth ``start[b, a] + j`` px.
    """

    def __init__(self, data, reference_px, first, stop, sigma, k):
        n_b, depth, n_a = data.shape
        self.start = np.round(reference_px).astype(np.intp) + first
        rows = np.clip(self.start[:, :, None] + np.arange(stop - first)[None, None, :], 0, depth - 1)
        gathered = data[np.arange(n_b)[:, None, None], rows, np.arange(n_a)[None, :, None]]
        smooth = gaussian_filter(gathered.astype(np.float32), sigma)
        cumulative = np.concatenate([np.zeros_like(smooth[..., :1]), np.cumsum(smooth, axis=2)], axis=2)
        self.cumulative = cumulative
        self.edge = np.zeros_like(smooth)
        n = smooth.shape[2]
        # rows j in [k, n - k]: window sums from the cumulative sum
        self.edge[..., k : n - k + 1] = (
            cumulative[..., 2 * k :] - 2 * cumulative[..., k : n - k + 1] + cumulative[..., : n - 2 * k + 1]
        ) / k

    def mean_below(self, length):
        """(n_bscans, n_ascans, n_rows) mean of the smoothed band over rows j .. j+length-1."""
        n = self.edge.shape[2]
        stop = np.minimum(np.arange(n) + length, n)
        return (self.cumulative[..., stop] - self.cumulative[..., :n]) / (stop - np.arange(n))

    def trace(self, cost, rising, max_step, step_penalty):
        """Best path (float band rows, sub-pixel) through ``cost`` and the edge step along it
        (zero where the edge there does not rise, or fall if ``rising`` is False)."""
        rows = best_path(cost, max_step, step_penalty)
        step = np.take_along_axis(self.edge, rows[..., None], axis=2)[..., 0]
        return refine_subpixel(-cost, rows), np.maximum(step if rising else -step, 0.0)

    def depth_of(self, rows):
        return (self.start + rows).astype(np.float32)

    def offset_of(self, depth_px):
        return depth_px - self.start


def _limit(cost, low, high):
    """``cost`` where low <= band row <= high (per A-scan bounds), OUTSIDE_COST elsewhere."""
    j = np.arange(cost.shape[2])[None, None, :]
    return np.where((j >= np.ceil(low)[..., None]) & (j <= np.floor(high)[..., None]), cost, OUTSIDE_COST)


def _coarse_surfaces(coarse: Coarse, levels: Levels, axial_um: float):
    """Coarse ILM (first sustained rise above the tissue threshold) and Bruch's membrane (largest fall
    below it), both (n_bscans, n_coarse_ascans) as coarse axial boundary positions; NaN where no
    tissue was found."""
    c = gaussian_filter1d(coarse.data, 1.0, axis=1)
    threshold = levels.background + ILM_THRESHOLD * (levels.tissue - levels.background)
    above = c > threshold
    sustained = above[:, :-2] & above[:, 1:-1] & above[:, 2:]
    found = sustained.any(axis=1)
    ilm = np.argmax(sustained, axis=1).astype(np.float64)
    fall = np.zeros_like(c)
    fall[:, 1:-1] = c[:, :-2] - c[:, 2:]  # boundary between samples z-1 and z: c[z-1] - c[z+1]
    z = np.arange(c.shape[1])[None, :, None]
    lo, hi = (um / (axial_um * coarse.axial_factor) for um in BM_SEARCH_UM)
    window = (z >= ilm[:, None, :] + lo) & (z <= ilm[:, None, :] + hi)
    bm = np.argmax(np.where(window, fall, -np.inf), axis=1).astype(np.float64) + 0.5
    ilm[~found] = np.nan
    bm[~found] = np.nan
    return ilm, bm


def _robust_reference(surface_coarse, coarse: Coarse, spacing_mm):
    """Smooth surface: a wide median along each B-scan ignores the disc, then light smoothing."""
    fallback = np.nanmedian(surface_coarse) if np.isfinite(surface_coarse).any() else 0.0
    filled = np.where(np.isnan(surface_coarse), fallback, surface_coarse)
    width = max(3, int(round(REFERENCE_WINDOW_MM / (spacing_mm[2] * coarse.lateral_factor))) | 1)
    reference = median_filter(filled, size=(3, width), mode="nearest")
    return gaussian_filter(reference, (0.7, 1.0), mode="nearest")


def _to_fine(coarse_surface, coarse: Coarse, n_ascans: int):
    """Coarse surface (coarse samples, coarse A-scans) -> fine (px, every A-scan), linear in x."""
    fx, fz = coarse.lateral_factor, coarse.axial_factor
    centres = np.arange(coarse_surface.shape[1]) * fx + (fx - 1) / 2.0
    x = np.arange(n_ascans)
    fallback = np.nanmedian(coarse_surface) if np.isfinite(coarse_surface).any() else 0.0
    filled = np.where(np.isnan(coarse_surface), fallback, coarse_surface)
    return np.stack([np.interp(x, centres, row) for row in filled]) * fz + (fz - 1) / 2.0
