"""Layer boundaries ILM, RNFL/GCL, IPL/INL and Bruch's membrane on every B-scan.

Chiu-style order with region limits, each boundary a minimum-cost path (sdk.retina.paths):

1. coarse ILM (first rise above the tissue threshold) and coarse RPE (brightest sample below it) on
   a block-averaged copy; the RPE is turned into a smooth reference surface that bridges the disc;
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
RPE_THRESHOLD = 0.7  # ... and the brightest layers; the RPE is the deepest of them
RPE_SEARCH_UM = 600.0  # the RPE lies within this depth below the ILM (outside the disc)
BM_BELOW_RPE_PEAK_UM = 12.0  # Bruch's membrane is the lower edge of the ~22 um RPE band
REFERENCE_WINDOW_MM = 3.2  # robust (median) window that bridges the optic disc
ILM_SEARCH_UM = 40.0  # fine search around the coarse ILM
BM_SEARCH_UM = 30.0  # fine search around the reference RPE surface
INNER_BAND_UM = (-50.0, 520.0)  # band flattened to the ILM, relative to the coarse ILM
PHOTORECEPTORS_MIN_UM = 70.0  # OPL/ONL lies at least this far above Bruch's membrane
INL_OPL_UM = (6.0, 75.0)  # IPL/INL lies this far above OPL/ONL (INL + OPL thickness)
SMOOTHING_UM = (40.0, 40.0, 4.0)  # Gaussian sd across B-scans, along B-scans, axially
EDGE_HALF_WIDTH_UM = 8.0  # an edge is the mean of this much below minus this much above
STEP_PENALTY = 0.05  # per px of change between A-scans, in units of (tissue - background)
OUTSIDE_COST = 100.0  # cost of a row outside a boundary's allowed region (a soft limit keeps paths feasible)


@dataclass(frozen=True)
class LayerResult:
    """Boundaries (n_bscans, n_ascans) in axial px and the edge contrast found along each.

    ``contrast`` is the edge step at the boundary in units of the background noise spread.
    """

    surfaces: dict[str, np.ndarray]
    contrast: dict[str, np.ndarray]
    rpe_reference_px: np.ndarray  # smooth surface through the RPE, bridging the disc
    rpe_depth_excess_um: np.ndarray  # deepest bright sample below that surface (large in the disc)
    tissue_found: np.ndarray  # (n_bscans, n_ascans) bool: the A-scan holds retina at all


def segment_layers(data: np.ndarray, spacing_mm, coarse: Coarse, levels: Levels) -> LayerResult:
    """Find the four boundaries in a log-scaled volume (n_bscans, depth, n_ascans)."""
    axial_um = spacing_mm[1] * 1000.0
    scale = max(levels.tissue - levels.background, 1e-6)
    n_b, depth, n_a = data.shape

    ilm_c, rpe_c = _coarse_surfaces(coarse, levels, axial_um)
    ilm_ref = _to_fine(ilm_c, coarse, n_a)
    rpe_ref = _to_fine(_robust_reference(rpe_c, coarse, spacing_mm), coarse, n_a)
    excess_um = (_to_fine(rpe_c, coarse, n_a) - rpe_ref) * axial_um
    tissue_found = _to_fine(np.isfinite(ilm_c).astype(float), coarse, n_a) > 0.5
    bm_ref = rpe_ref + BM_BELOW_RPE_PEAK_UM / axial_um

    sigma = (SMOOTHING_UM[0] / 1000.0 / spacing_mm[0], SMOOTHING_UM[1] / 1000.0 / spacing_mm[2],
             SMOOTHING_UM[2] / axial_um)

    def px(um):
        return int(round(um / axial_um))

    k = max(1, px(EDGE_HALF_WIDTH_UM))

    # Bruch's membrane: strongest bright-to-dark edge near the reference
    bm_band = _Band(data, bm_ref, px(-BM_SEARCH_UM) - k, px(BM_SEARCH_UM) + k + 1, sigma, k)
    bm, bm_contrast = bm_band.trace(bm_band.edge / scale, 1, STEP_PENALTY)

    # inner retina, flattened to the coarse ILM
    band = _Band(data, ilm_ref, px(INNER_BAND_UM[0]), px(INNER_BAND_UM[1]), sigma, k)
    rise, fall = band.edge / scale, -band.edge / scale
    origin = -px(INNER_BAND_UM[0])
    ilm_window = np.zeros(band.edge.shape, bool)
    ilm_window[..., max(origin - px(ILM_SEARCH_UM), 1): origin + px(ILM_SEARCH_UM) + 1] = True
    ilm, ilm_contrast = band.trace(np.where(ilm_window, -rise, OUTSIDE_COST), 2, STEP_PENALTY)

    bm_in_band = band.offset_of(bm_band.depth_of(bm))
    opl_onl, _ = band.trace(_limit(-fall, ilm + 2, bm_in_band - px(PHOTORECEPTORS_MIN_UM)), 1, STEP_PENALTY)
    ipl_inl, ipl_contrast = band.trace(
        _limit(-fall, np.maximum(ilm, opl_onl - px(INL_OPL_UM[1])), opl_onl - px(INL_OPL_UM[0])), 1, STEP_PENALTY)
    rnfl_gcl, rnfl_contrast = band.trace(_limit(-fall, ilm, ipl_inl - 1), 1, STEP_PENALTY)

    noise = levels.noise_sd / scale
    surfaces = {"ILM": band.depth_of(ilm), "RNFL_GCL": band.depth_of(rnfl_gcl),
                "IPL_INL": band.depth_of(ipl_inl), "BM": bm_band.depth_of(bm), "OPL_ONL": band.depth_of(opl_onl)}
    contrast = {"ILM": ilm_contrast / noise, "RNFL_GCL": rnfl_contrast / noise,
                "IPL_INL": ipl_contrast / noise, "BM": bm_contrast / noise}
    return LayerResult(surfaces, contrast, rpe_ref, excess_um, tissue_found)


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
        self.edge = np.zeros_like(smooth)
        n = smooth.shape[2]
        # rows j in [k, n - k]: window sums from the cumulative sum
        self.edge[..., k : n - k + 1] = (
            cumulative[..., 2 * k :] - 2 * cumulative[..., k : n - k + 1] + cumulative[..., : n - 2 * k + 1]
        ) / k

    def trace(self, cost, max_step, step_penalty):
        """Best path (float band rows, sub-pixel) through ``cost`` and the edge step along it."""
        rows = best_path(cost, max_step, step_penalty)
        found = np.take_along_axis(-cost, rows[..., None], axis=2)[..., 0]
        strength = np.abs(np.take_along_axis(self.edge, rows[..., None], axis=2)[..., 0])
        return refine_subpixel(-cost, rows), strength * (found > 0)

    def depth_of(self, rows):
        return (self.start + rows).astype(np.float32)

    def offset_of(self, depth_px):
        return depth_px - self.start


def _limit(cost, low, high):
    """``cost`` where low <= band row <= high (per A-scan bounds), OUTSIDE_COST elsewhere."""
    j = np.arange(cost.shape[2])[None, None, :]
    return np.where((j >= np.ceil(low)[..., None]) & (j <= np.floor(high)[..., None]), cost, OUTSIDE_COST)


def _coarse_surfaces(coarse: Coarse, levels: Levels, axial_um: float):
    """Coarse ILM (first sustained rise above the tissue threshold) and RPE (deepest bright sample),
    both (n_bscans, n_coarse_ascans) in coarse axial samples; NaN where no tissue was found."""
    c = gaussian_filter1d(coarse.data, 1.0, axis=1)
    threshold = levels.background + ILM_THRESHOLD * (levels.tissue - levels.background)
    above = c > threshold
    sustained = above[:, :-2] & above[:, 1:-1] & above[:, 2:]
    found = sustained.any(axis=1)
    ilm = np.argmax(sustained, axis=1).astype(np.float64)
    z = np.arange(c.shape[1])[None, :, None]
    reach = RPE_SEARCH_UM / (axial_um * coarse.axial_factor)
    window = (z >= ilm[:, None, :] + 2) & (z <= ilm[:, None, :] + reach)
    bright = window & (c > levels.background + RPE_THRESHOLD * (levels.tissue - levels.background))
    last_from_bottom = np.argmax(bright[:, ::-1, :], axis=1)
    rpe = (c.shape[1] - 1 - last_from_bottom).astype(np.float64)
    found &= bright.any(axis=1)
    ilm[~found] = np.nan
    rpe[~found] = np.nan
    return ilm, rpe


def _robust_reference(rpe_coarse, coarse: Coarse, spacing_mm):
    """Smooth RPE surface: a wide median along each B-scan ignores the disc, then light smoothing."""
    fallback = np.nanmedian(rpe_coarse) if np.isfinite(rpe_coarse).any() else 0.0
    filled = np.where(np.isnan(rpe_coarse), fallback, rpe_coarse)
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
