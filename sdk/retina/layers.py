"""Layer boundaries ILM, RNFL/GCL, IPL/INL and Bruch's membrane on every B-scan.

Chiu-style order with region limits, each boundary a minimum-cost path (sdk.retina.paths):

1. on a block-averaged copy, per B-scan: the ILM, the path where vitreous (background-level
   samples above) meets tissue (samples clearly above the background below: even the dark outer
   nuclear layer of the foveola), allowed to climb cup walls; then the photoreceptors' rise (the
   strongest dark-to-bright step below the inner retina, ONL to ellipsoid zone) and Bruch's membrane,
   the strongest fall just below it (the bottom of the RPE: the outer hyperreflective complex, not
   the largest fall anywhere, which on a bright choroid is the OPL/ONL step). Bruch's membrane is
   turned into a smooth reference surface that bridges the disc;
2. ILM (dark-to-bright edge) near the coarse ILM, Bruch's membrane (bright-to-dark edge below the
   RPE) near the reference;
3. inside a band flattened to the ILM: OPL/ONL (a bright-to-dark edge with dark tissue below it: the
   ONL is the darkest thick layer), then IPL/INL (bright-to-dark, at most one INL + OPL above it),
   then RNFL/GCL (bright-to-dark between ILM and IPL/INL). Each may meet the boundary above it, as
   they all meet the ILM in the foveola.

Flattening to a reference surface before smoothing across B-scans makes the result insensitive to
axial motion between B-scans. Positions are axial px of the working grid: a boundary at z lies
between voxel z-1 and z. Work is bounded by the volume's size: paths move at most MAX_STEP_PX per
A-scan and every window is a fixed physical length on a grid of at least 2 um per sample.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from sdk import ndimage
from sdk.retina.chunks import for_blocks
from sdk.retina.intensity import Coarse, Levels, median_and_spread
from sdk.retina.median import median_filter
from sdk.retina.paths import band_path, best_path

try:  # the band stage compiled (sdk/retina/_band.c, built by pip install); _Band._numpy_fill is the reference
    import sdk.retina._band as _band  # no stub: mypy takes it as a missing import (Any)
except ImportError:  # a source tree without the build: the numpy band, the same arrays
    _band = None

ILM_TISSUE_SPREADS = 4.0  # tissue: a coarse level this many background spreads above the vitreous ...
ILM_TISSUE_FRACTION = 0.1  # ... and at least this fraction of the way from background to tissue level
TISSUE_BELOW_UM = 100.0  # the ILM has tissue for this far below it ...
VITREOUS_ABOVE_UM = 150.0  # ... and vitreous for this far above it
ILM_MAX_SLOPE = 1.2  # steepest ILM between coarse A-scans (cup walls), um axial per um lateral
COARSE_STEP_PENALTY = 0.05  # per coarse sample of ILM change, in units of the ILM score
COARSE_SMOOTHING_SAMPLES = 1.0  # Gaussian sd along depth of the coarse copy before its ILM scores
# the photoreceptors' rise lies this far below the ILM outside the disc (the foveola keeps its ONL
# and inner segments, about 160 um; from 100 um on, a coarse ILM drawn up to 40 um high, where a
# thick RNFL brightens slowly below it, does not put that brightening in the window)
ISOS_SEARCH_UM = (100.0, 600.0)
OUTER_COMPLEX_UM = 110.0  # the RPE/BM band's brightest level lies within this far below that rise ...
BM_BELOW_PEAK_UM = 50.0  # ... and Bruch's membrane, the strongest fall below it, within this far of it
REFERENCE_WINDOW_MM = 3.2  # robust (median) window, along and across B-scans, that bridges the optic disc
REFERENCE_INLIER_UM = 100.0  # coarse BM this close to that median bends the reference to its local shape
REFERENCE_PULL_MM = 0.3  # ... averaged with a Gaussian of this sd (the tilt around a myopic disc)
VITREOUS_MARGIN_UM = 60.0  # noise is measured this far above the ILM and higher
MIN_VITREOUS_VOXELS = 1000
ILM_SEARCH_UM = 40.0  # fine search around the coarse ILM
# fine search around the reference surface: it reaches BM where the reference (a wide median) misses
# its tilt around a myopic disc (30 um left 6 % of MY eyes' A-scans near the disc > 2 px off)
BM_FINE_SEARCH_UM = 60.0
INNER_BAND_UM = (-50.0, 520.0)  # band flattened to the ILM, relative to the coarse ILM
PHOTORECEPTORS_MIN_UM = 30.0  # OPL/ONL lies at least this far above BM (photoreceptors thin over atrophy)
ONL_PROBE_UM = 40.0  # how much tissue below OPL/ONL is expected to be dark
INL_OPL_UM = (6.0, 75.0)  # IPL/INL lies this far above OPL/ONL (INL + OPL; less where they vanish)
SMOOTHING_UM = (40.0, 40.0, 4.0)  # Gaussian sd across B-scans, along B-scans, axially
EDGE_HALF_WIDTH_UM = 8.0  # an edge is the mean of this much below minus this much above
STEP_PENALTY = 0.01  # per px of change between A-scans, in units of (tissue - background)
MAX_SLOPE = 0.3  # steepest inner-layer slope relative to the ILM (foveal pit walls), um axial per um lateral
# no path moves further between neighbouring A-scans (bounds the work where A-scans lie far apart; the
# default grids need 4 and 8: 40 um A-scans of 3.9 um samples at slope 0.3, 90 um coarse ones of 15 um at 1.2)
MAX_STEP_PX = 6
COARSE_MAX_STEP = 8
GAUSSIAN_TRUNCATE = 4.0  # the smoothing kernel reaches this many sd (scipy's default)
OUTSIDE_COST = 100.0  # cost of a row outside a boundary's allowed region (a soft limit keeps paths feasible)
MIN_VANISHED_ASCANS = 3  # a B-scan is traced again where this many A-scans may have lost a layer
VANISHED_PROBE_UM = 16.0  # tissue this deep under the ILM tells whether an inner layer is there
THICK_LAYER_UM = {"OPL_ONL": 120.0, "IPL_INL": 50.0}  # a boundary this far below the ILM: a thick layer
RPE_BAND_UM = 12.0  # the RPE/BM band: this much above Bruch's membrane ...
RPE_ABOVE_UM = (25.0, 45.0)  # ... against the tissue this far above it (outer segments, or ONL over atrophy)


@dataclass(frozen=True)
class LayerResult:
    """Boundaries (n_bscans, n_ascans) in axial px and the edge contrast found along each.

    ``contrast`` is the edge step at the boundary in units of the background noise spread.
    """

    surfaces: dict[str, np.ndarray]
    contrast: dict[str, np.ndarray]
    bm_reference_px: np.ndarray  # smooth surface through Bruch's membrane, bridging the disc
    tissue_found: np.ndarray  # (n_bscans, n_ascans) bool: the A-scan holds retina at all
    vitreous_above: np.ndarray  # (n_bscans, n_ascans) bool: vitreous lies above the ILM (not folded)
    levels: Levels  # background and noise measured in the vitreous


def segment_layers(data: np.ndarray, spacing_mm, coarse: Coarse, levels: Levels) -> LayerResult:
    """Find the four boundaries in a log-scaled volume (n_bscans, depth, n_ascans)."""
    axial_um = spacing_mm[1] * 1000.0
    scale = max(levels.tissue - levels.background, 1e-6)
    n_b, depth, n_a = data.shape

    ilm_c, bm_c, found_c, open_c = _coarse_surfaces(coarse, levels, spacing_mm)
    ilm_ref = _to_fine(ilm_c, coarse, n_a)
    bm_ref = _to_fine(_robust_reference(bm_c, coarse, spacing_mm), coarse, n_a)
    tissue_found = _along_ascans(found_c.astype(float), coarse, n_a) > 0.5
    vitreous_above = _along_ascans(open_c.astype(float), coarse, n_a) > 0.5
    levels = _vitreous_levels(data, ilm_ref - VITREOUS_MARGIN_UM / axial_um, levels)

    # band arrays are (n_ascans, n_bscans, rows): A-scans first, for the path search
    sigma = (
        SMOOTHING_UM[1] / 1000.0 / spacing_mm[2],
        SMOOTHING_UM[0] / 1000.0 / spacing_mm[0],
        SMOOTHING_UM[2] / axial_um,
    )

    def px(um):
        return int(round(um / axial_um))

    k = max(1, px(EDGE_HALF_WIDTH_UM))
    pad = max(k, px(ONL_PROBE_UM), px(RPE_ABOVE_UM[1])) + 1
    steep = min(MAX_STEP_PX, max(1, int(np.ceil(MAX_SLOPE * spacing_mm[2] / spacing_mm[1]))))

    # Bruch's membrane: strongest bright-to-dark edge near the reference; the band reaches higher
    # for the RPE band's rise above it
    above = px(RPE_ABOVE_UM[1])
    bm_band = _Band(
        data, bm_ref, px(-BM_FINE_SEARCH_UM) - k - above, px(BM_FINE_SEARCH_UM) + k + 1, sigma, k, pad, scale
    )
    bm, bm_contrast = bm_band.trace(bm_band.fall, k + above, bm_band.rows - k, 1)
    rpe_contrast = np.maximum(bm_contrast, _rise_into_band(bm_band, bm, levels, px))

    # inner retina, flattened to the coarse ILM
    band = _Band(data, ilm_ref, px(INNER_BAND_UM[0]), px(INNER_BAND_UM[1]), sigma, k, pad, scale)
    origin = -px(INNER_BAND_UM[0])
    ilm, ilm_contrast = band.trace(
        band.rise, max(origin - px(ILM_SEARCH_UM), 1), origin + px(ILM_SEARCH_UM), steep
    )

    bm_in_band = band.offset_of(bm_band.depth_of(bm))
    dark_below = px(ONL_PROBE_UM)

    def onl(r0, r1, traced):  # the ONL is the darkest thick layer: a falling edge with dark tissue below it
        return band.fall_onto_dark(dark_below, levels.background, r0, r1, traced)

    def inner(ilm_bonus, bscans=None, first=None):
        """OPL/ONL, IPL/INL and RNFL/GCL, each (rows, contrast) on every B-scan; ``ilm_bonus`` maps
        OPL_ONL and IPL_INL to the score of their layer having vanished (the boundary on the ILM), or
        is empty. With ``first`` (an earlier result), only the B-scans ``bscans`` are traced again."""

        def trace(name, *args, **kwargs):
            rows, contrast = band.trace(*args, bscans=bscans, **kwargs)
            if first is None:
                return rows, contrast
            whole = first[name][0].copy(), first[name][1].copy()
            whole[0][:, bscans], whole[1][:, bscans] = rows, contrast
            return whole

        opl = trace(
            "OPL_ONL",
            _at(ilm_bonus.get("OPL_ONL"), onl, ilm),
            ilm,
            bm_in_band - px(PHOTORECEPTORS_MIN_UM),
            steep,
            fall_contrast=True,
        )
        ipl = trace(
            "IPL_INL",
            _at(ilm_bonus.get("IPL_INL"), band.fall, ilm),
            np.maximum(ilm, opl[0] - px(INL_OPL_UM[1])),
            np.maximum(ilm, opl[0] - px(INL_OPL_UM[0])),
            steep,
            fall_contrast=True,
        )
        rnfl = trace("RNFL_GCL", band.fall, ilm, np.maximum(ilm, ipl[0] - 1), steep)
        return {"OPL_ONL": opl, "IPL_INL": ipl, "RNFL_GCL": rnfl}

    # where a layer is thick, its boundary is an edge; where it thins to nothing (every inner layer in
    # the foveola) the tissue under the ILM looks like the layer below it instead: darker than the
    # layer's own level, measured on a first pass where it is thick. RNFL/GCL, bounded by IPL/INL,
    # follows it there (under vessels the tissue below the ILM is dark too, and the RNFL is not gone).
    # The second pass traces only the B-scans where a layer may have vanished.
    first = inner({})
    probe = max(1, px(VANISHED_PROBE_UM))
    ilm_rows = np.round(ilm).astype(np.intp)
    under_ilm = band.level_at(ilm_rows, 1, probe)
    # on a steep ILM (the rim falling into the cup) the smoothing mixes vitreous into the tissue under
    # it; the foveola is flat and its walls no steeper than MAX_SLOPE
    depth_px = band.depth_of(ilm)
    slope = np.maximum(
        _step(depth_px, axis=0) * (spacing_mm[1] / spacing_mm[2]),
        _step(depth_px, axis=1) * (spacing_mm[1] / spacing_mm[0]),
    )
    under_ilm = np.where(slope <= MAX_SLOPE, under_ilm, np.inf)
    bonus = {}
    for name, (rows, _) in first.items():
        if name not in THICK_LAYER_UM:
            continue
        thick = (rows - ilm) > px(THICK_LAYER_UM[name])
        if thick.mean() > 0.1:
            level = band.level_at(np.round(rows).astype(np.intp), -probe, probe)
            bonus[name] = float(np.median(level[thick])) - under_ilm
    vanished = np.zeros(n_b, bool)  # B-scans where "vanished" beats the edge the first pass found
    for name, extra in bonus.items():
        vanished |= (extra > first[name][1]).sum(axis=0) >= MIN_VANISHED_ASCANS
    traced = inner(bonus, np.flatnonzero(vanished), first) if vanished.any() else first
    opl_onl, opl_contrast = traced["OPL_ONL"]
    ipl_inl, ipl_contrast = traced["IPL_INL"]
    rnfl_gcl, rnfl_contrast = traced["RNFL_GCL"]

    found = {
        "ILM": (band, ilm, ilm_contrast),
        "RNFL_GCL": (band, rnfl_gcl, rnfl_contrast),
        "IPL_INL": (band, ipl_inl, ipl_contrast),
        "BM": (bm_band, bm, bm_contrast),
        "OPL_ONL": (band, opl_onl, opl_contrast),
    }
    surfaces = {name: b.depth_of(rows).T for name, (b, rows, _) in found.items()}
    contrast = {name: c.T / levels.noise_sd for name, (_, _, c) in found.items()}
    contrast["RPE"] = rpe_contrast.T / levels.noise_sd
    return LayerResult(surfaces, contrast, bm_ref, tissue_found, vitreous_above, levels)


class _Band:
    """Voxels gathered in a band of rows around a reference surface, smoothed, and their axial edges.

    Arrays are (n_ascans, n_bscans, rows). Row j of A-scan (a, b) lies at depth ``start[a, b] + j``
    px; the edge at row j is mean(smoothed[j : j+k]) - mean(smoothed[j-k : j]), positive for a
    dark-to-bright boundary between rows j-1 and j.
    """

    def __init__(self, data, reference_px, first, stop, sigma, k, pad, scale):
        n_b, depth, n_a = data.shape
        self.rows = stop - first
        self.k = k
        self.pad = pad  # rows of padding at both ends: the longest window a score reads
        self.scale = scale  # grey-level unit of path costs: tissue level - background
        self.start = np.ascontiguousarray(np.round(reference_px.T), dtype=np.int64) + first
        self.cumulative = np.empty((n_a, n_b, self.rows + 2 * pad + 1), np.float32)
        self.edge = np.empty((n_a, n_b, self.rows), np.float32)
        if _band is None:
            halo = int(GAUSSIAN_TRUNCATE * sigma[0] + 0.5)  # the smoothing kernel's radius along A-scans
            for_blocks(lambda *block: self._numpy_fill(data, sigma, *block), n_a, halo)
            return
        data = np.ascontiguousarray(data, dtype=np.float32)
        weights = [gaussian_weights(s) for s in sigma]
        for_blocks(
            lambda lo, hi, *_: _band.fill(
                data, self.start, *weights, k, pad, lo, hi, self.cumulative, self.edge
            ),
            n_a,
        )

    def _numpy_fill(self, data, sigma, lo, hi, read_lo, read_hi):
        """Gather, smooth and sum the rows of A-scans [lo, hi), reading [read_lo, read_hi), and find
        their edges: the reference of the compiled band (which gives identical arrays)."""
        n_b, depth, n_a = data.shape
        start = self.start[read_lo:read_hi]
        rows = np.clip(start[:, :, None] + np.arange(self.rows)[None, None, :], 0, depth - 1)
        flat = (
            rows * n_a
            + (np.arange(n_b) * (depth * n_a))[None, :, None]
            + np.arange(read_lo, read_hi)[:, None, None]
        )
        gathered = np.take(data.reshape(-1), flat).astype(np.float32)
        smooth = ndimage.gaussian_filter(gathered, sigma, truncate=GAUSSIAN_TRUNCATE)[
            lo - read_lo : hi - read_lo
        ]
        # cumulative sums along rows, clamped beyond both ends so window sums are plain slices
        cumulative = self.cumulative[lo:hi]
        cumulative[..., : self.pad + 1] = 0.0
        last = self.pad + 1 + self.rows
        np.cumsum(smooth, axis=2, out=cumulative[..., self.pad + 1 : last])
        cumulative[..., last:] = cumulative[..., last - 1 : last]
        block = (slice(lo, hi),)
        below, n_below = self._window_sum(0, self.rows, 0, self.k, block)
        above, n_above = self._window_sum(0, self.rows, -self.k, self.k, block)
        self.edge[lo:hi] = below / n_below - above / n_above

    def _window_sum(self, r0, r1, offset, length, at=(slice(None),)):
        """Sum of smoothed rows j+offset .. j+offset+length-1 for j in [r0, r1), clipped to the band,
        of the A-scans and B-scans ``at`` (an index of the first two axes), and the number of rows
        summed."""
        j = np.arange(r0, r1)
        count = np.maximum(np.clip(j + offset + length, 0, self.rows) - np.clip(j + offset, 0, self.rows), 1)
        first = self.pad + r0 + offset  # the padding holds every window (pad >= its longest length)
        n = r1 - r0
        cumulative = self.cumulative[at]
        return cumulative[..., first + length : first + length + n] - cumulative[
            ..., first : first + n
        ], count

    # score functions: (r0, r1, traced) -> (n_ascans, n_traced, r1 - r0) at the rows [r0, r1) of the
    # B-scans ``traced`` (an index of the second axis)

    def rise(self, r0, r1, traced=slice(None)):
        """Edge (dark-to-bright positive) at rows [r0, r1)."""
        return self.edge[:, traced, r0:r1]

    def fall(self, r0, r1, traced=slice(None)):
        return -self.rise(r0, r1, traced)

    def level_at(self, rows, offset, length):
        """Mean smoothed level of rows [rows + offset, rows + offset + length) at each A-scan, where
        ``rows`` is (n_ascans, n_bscans) band rows (ints)."""
        first = np.clip(rows + offset, -self.pad, self.rows + self.pad - length) + self.pad
        # flat indices: a gather 4x faster than take_along_axis's broadcast index arrays, the same values
        first = first + np.arange(0, self.cumulative.size, self.cumulative.shape[2]).reshape(first.shape)
        values = self.cumulative.reshape(-1)
        return (values[first + length] - values[first]) / length

    def fall_onto_dark(self, length, background, r0, r1, traced=slice(None)):
        """The fall at rows [r0, r1) minus how far the mean smoothed level of the ``length`` rows from
        each row down lies above ``background``, float32: fall - (mean - background), computed as
        -(rise + (mean - background)), the same floats (negation is exact, rounding symmetric), in
        the one array the window sums make; compiled (_band.fall_onto_dark, blocks of A-scans in
        parallel threads) where built, the same floats."""
        if _band is not None and length <= self.pad:
            bscans = np.ascontiguousarray(np.arange(self.start.shape[1])[traced], dtype=np.int64)
            out = np.empty((self.start.shape[0], bscans.size, r1 - r0), np.float32)
            args = (self.cumulative, self.edge, bscans, self.pad, r0, r1, length, float(background))
            for_blocks(lambda lo, hi, *_: _band.fall_onto_dark(*args, lo, hi, out), self.start.shape[0])
            return out
        total, n = self._window_sum(r0, r1, 0, length, (slice(None), traced))
        total /= n.astype(np.float32)  # the mean, in float32: float64's quotient rounded, exactly
        total -= background
        total += self.rise(r0, r1, traced)
        return np.negative(total, out=total)

    def trace(self, score, low, high, max_step, fall_contrast=False, bscans=None):
        """Best path (float rows, sub-pixel) where ``score(r0, r1, traced)`` is high, between rows
        ``low`` and ``high`` (numbers or (n_ascans, n_bscans) arrays; a soft limit), and the edge step
        along it (of ``score``, or of :meth:`fall` with ``fall_contrast``), zero where negative; on the
        B-scans ``bscans`` only (indices; default all), each result (n_ascans, n_traced_bscans)."""
        traced = slice(None) if bscans is None else bscans
        low = np.broadcast_to(np.ceil(low), self.start.shape)[:, traced]
        high = np.maximum(np.broadcast_to(np.floor(high), self.start.shape)[:, traced], low)  # may meet
        r0 = int(np.clip(low.min(), 0, self.rows - 1))
        r1 = int(np.clip(high.max() + 1, r0 + 1, self.rows))
        if score == self.fall:  # the rise over -scale: the same values (x / -s is -x / s), no negated copy
            scores, scale = self.rise(r0, r1, traced), -self.scale
        else:
            scores, scale = score(r0, r1, traced), self.scale
        rows, refined = band_path(scores, scale, low - r0, high - r0, max_step, STEP_PENALTY, OUTSIDE_COST)
        if fall_contrast or score in (self.rise, self.fall):  # the rise at the chosen rows, by flat index
            n_a, n_b = self.start.shape
            b = np.arange(n_b)[traced]
            rise = self.edge.reshape(-1)[
                (np.arange(n_a)[:, None] * n_b + b[None, :]) * self.rows + (rows + r0)
            ]
            # the fall as (fall / scale) * scale over the whole band; else the score's own edge
            edge = -rise / self.scale if fall_contrast else rise / scale
        else:
            edge = np.take_along_axis(scores, rows[..., None], axis=2)[..., 0] / scale
        return refined + r0, np.maximum(edge * self.scale, 0.0)

    def depth_of(self, rows):
        return (self.start + rows).astype(np.float32)

    def offset_of(self, depth_px):
        """Band rows of depths (n_ascans, n_bscans) in px."""
        return depth_px - self.start


def gaussian_weights(sigma: float) -> np.ndarray:
    """The float64 kernel that scipy.ndimage.gaussian_filter correlates with for one axis at ``sigma``
    samples (radius GAUSSIAN_TRUNCATE sd); [1.0] where it leaves that axis as it is."""
    if not sigma > 1e-15:
        return np.ones(1)
    x = np.arange(-int(GAUSSIAN_TRUNCATE * sigma + 0.5), int(GAUSSIAN_TRUNCATE * sigma + 0.5) + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


def _step(values, axis):
    """Largest absolute change to either neighbour along ``axis`` (zero for a single sample)."""
    change = np.abs(np.diff(values, axis=axis))
    pad = [(0, 0)] * values.ndim
    pad[axis] = (1, 0)
    before = np.pad(change, pad)
    pad[axis] = (0, 1)
    return np.maximum(before, np.pad(change, pad))


def _at(bonus, score, rows):
    """``score`` (a band score function) with ``bonus`` (n_ascans, n_bscans) as the score of the
    rows ``rows`` where that is higher; ``score`` itself when ``bonus`` is None."""
    if bonus is None:
        return score
    rows = np.round(rows).astype(np.intp)

    def scored(r0, r1, traced):
        values = np.asarray(score(r0, r1, traced), dtype=np.float32)
        if not (values.flags.owndata and values.flags.c_contiguous):  # a view of the band: not to be changed
            values = np.array(values, order="C")
        at = np.clip(rows[:, traced] - r0, 0, r1 - r0 - 1)  # flat indices: faster than put/take_along_axis
        at = at + np.arange(0, values.size, values.shape[2]).reshape(at.shape)
        flat = values.reshape(-1)
        flat[at] = np.maximum(flat[at], bonus[:, traced])
        return values

    return scored


def _rise_into_band(band: _Band, bm_rows, levels: Levels, px) -> np.ndarray:
    """Step from the tissue above the RPE/BM band up into it, (n_ascans, n_bscans) in grey levels,
    zero where any part of the region above is vitreous (a cup floor near the level of Bruch's
    membrane) or where it is brighter than the band. Over atrophy the fall below Bruch's membrane is
    weak (the choroid beneath shines through) but this rise from the retina into its line stays."""
    rows = np.round(bm_rows).astype(np.intp)
    width = max(1, px(RPE_BAND_UM))
    inside = band.level_at(rows, -width, width)
    top = max(2, px(RPE_ABOVE_UM[1]))
    half = max(1, (top - px(RPE_ABOVE_UM[0])) // 2)
    parts = [band.level_at(rows, -top, half), band.level_at(rows, -top + half, half)]
    tissue = levels.background + ILM_TISSUE_FRACTION * (levels.tissue - levels.background)
    tissue_above = (parts[0] > tissue) & (parts[1] > tissue)
    return np.where(tissue_above, np.maximum(inside - 0.5 * (parts[0] + parts[1]), 0.0), 0.0)


def _coarse_surfaces(coarse: Coarse, levels: Levels, spacing_mm):
    """Coarse ILM and Bruch's membrane as edge positions in coarse samples, whether the coarse A-scan
    holds tissue, and whether vitreous lies above that ILM; each (n_bscans, n_coarse_ascans).

    The ILM is the best path where tissue (samples clearly above the background) lies below and
    vitreous above, with a dark-to-bright step at it. Below it, the photoreceptors' rise is the
    strongest dark-to-bright step; the RPE/BM band is the brightest level below that rise, and
    Bruch's membrane the strongest fall just below that level. Not the strongest fall below the rise:
    over atrophy (only Bruch's membrane left, a thin bright line straight below the ONL) the choroid
    beneath shines through, and its slow decline is a stronger fall than the line's own edge."""
    n_b, dz, dx = coarse.data.shape
    axial_um = spacing_mm[1] * coarse.axial_factor * 1000.0
    lateral_um = spacing_mm[2] * coarse.lateral_factor * 1000.0
    scale = max(levels.tissue - levels.background, 1e-6)
    threshold = levels.background + max(
        ILM_TISSUE_SPREADS * levels.coarse_noise_sd, ILM_TISSUE_FRACTION * scale
    )
    n_below = max(1, int(round(TISSUE_BELOW_UM / axial_um)))
    n_above = max(1, int(round(VITREOUS_ABOVE_UM / axial_um)))
    below, above, step, cost = _coarse_scores(coarse.data, threshold, scale, n_below, n_above)
    max_step = min(COARSE_MAX_STEP, max(1, int(np.ceil(ILM_MAX_SLOPE * lateral_um / axial_um))))
    ilm = best_path(cost, max_step, COARSE_STEP_PENALTY)  # (n_coarse_ascans, n_bscans)
    found = np.take_along_axis(below, ilm[..., None], axis=2)[..., 0] >= 0.5
    open_above = np.take_along_axis(above, ilm[..., None], axis=2)[..., 0] < 0.5

    windows = [
        (int(np.ceil(lo / axial_um)), int(np.floor(hi / axial_um)))
        for lo, hi in (ISOS_SEARCH_UM, (0.0, OUTER_COMPLEX_UM), (axial_um, BM_BELOW_PEAK_UM))
    ]
    isos, bm = np.empty((2, dx, n_b), np.int64)
    if _band is not None:
        ilm_rows = np.ascontiguousarray(ilm, dtype=np.int64)
        for_blocks(lambda lo, hi, *_: _band.coarse_layers(step, ilm_rows, *windows, lo, hi, isos, bm), dx)
    else:
        for_blocks(lambda lo, hi, *_: _numpy_coarse_layers(step, ilm, windows, lo, hi, isos, bm), dx)
    ilm, bm, found, open_above = ilm.T, bm.T, found.T, open_above.T
    return ilm.astype(np.float64), np.where(found, bm, np.nan), found, open_above


def _numpy_coarse_layers(step, ilm, windows, lo, hi, isos, bm) -> None:
    """The photoreceptors' rise ``isos`` and Bruch's membrane ``bm`` (each (n_coarse_ascans, n_bscans)
    int) of the coarse A-scans [lo, hi), from the coarse steps (n_coarse_ascans, n_bscans, depth) and
    ILM: the largest step in the first window (samples, [first, last]) below the ILM, the largest
    level (the steps' running sum) in the second below that rise, the largest fall in the third below
    that peak; the reference of the compiled _band.coarse_layers (identical arrays)."""
    depth = step.shape[2]

    def strongest(values, window, from_z):
        """First sample of the largest of ``values`` in ``window`` below ``from_z``, among the samples
        inside the depth window (0 where none is)."""
        offsets = np.arange(window[0], window[1] + 1)
        if offsets.size == 0:
            return np.zeros(from_z.shape, np.intp)
        at = from_z[..., None] + offsets
        inside = (at >= 0) & (at < depth)
        picked = np.where(inside, np.take_along_axis(values, np.clip(at, 0, depth - 1), axis=2), -np.inf)
        best = np.argmax(picked, axis=2)[..., None]
        found = np.take_along_axis(picked, best, axis=2)[..., 0] > -np.inf
        return np.where(found, np.take_along_axis(at, best, axis=2)[..., 0], 0)

    steps = step[lo:hi]
    isos[lo:hi] = strongest(steps, windows[0], ilm[lo:hi])
    level = np.cumsum(steps, axis=2)  # the smoothed level, (c[z] - c[0]) / scale
    peak = strongest(level, windows[1], isos[lo:hi])
    bm[lo:hi] = strongest(-steps, windows[2], peak)


def _coarse_scores(data: np.ndarray, threshold: float, scale: float, n_below: int, n_above: int):
    """The coarse ILM's scores of a coarse copy (n_bscans, depth, n_coarse_ascans), each
    (n_coarse_ascans, n_bscans, depth) float32 (depth last, contiguous for the sums and the search;
    blocks of coarse A-scans in parallel threads): the share of tissue (smoothed level above
    ``threshold``) in the ``n_below`` samples from each depth down, that of vitreous in the
    ``n_above`` samples above it, the smoothed level's step into it (in units of ``scale``), and the
    path cost. Compiled (_band.coarse_scores) where built, else numpy: the same arrays."""
    n_b, dz, dx = data.shape
    below, above, step, cost = (np.empty((dx, n_b, dz), np.float32) for _ in range(4))
    if _band is not None:
        data, weights = np.ascontiguousarray(data, np.float32), gaussian_weights(COARSE_SMOOTHING_SAMPLES)
        args = (threshold, scale, n_below, n_above, OUTSIDE_COST)
        for_blocks(
            lambda lo, hi, *_: _band.coarse_scores(data, weights, *args, lo, hi, below, above, step, cost), dx
        )
        return below, above, step, cost
    z = np.arange(dz)
    # rows above the depth window are unseen, not vitreous: an ILM at the window's top edge (a retina
    # folded by the mirror artefact) has no vitreous above it
    unseen = np.maximum(n_above - z, 0).astype(np.float32)

    def scores(lo, hi, *_):
        c = ndimage.gaussian_filter1d(
            np.ascontiguousarray(data[:, :, lo:hi].transpose(2, 0, 1)),
            COARSE_SMOOTHING_SAMPLES,
            axis=2,
            truncate=GAUSSIAN_TRUNCATE,
        )
        cumulative = np.zeros((hi - lo, n_b, dz + 1), np.float32)
        np.cumsum(c > threshold, axis=2, out=cumulative[..., 1:])
        sums = cumulative[..., :dz]
        below[lo:hi] = (np.take(cumulative, np.minimum(z + n_below, dz), axis=2) - sums) / n_below
        above[lo:hi] = (sums - np.take(cumulative, np.maximum(z - n_above, 0), axis=2) + unseen) / n_above
        edge = step[lo:hi]  # edge[z]: c[z] - c[z-1], the edge between samples z-1 and z
        edge[..., 0] = 0.0
        np.subtract(c[..., 1:], c[..., :-1], out=edge[..., 1:])
        edge /= scale
        score = np.subtract(below[lo:hi], above[lo:hi], out=cost[lo:hi])
        score += 0.5 * np.clip(edge, -1.0, 1.0)
        score[..., 0] = -OUTSIDE_COST  # an edge needs a sample above it
        np.negative(score, out=score)

    for_blocks(scores, dx)
    return below, above, step, cost


def _robust_reference(surface_coarse, coarse: Coarse, spacing_mm):
    """Smooth surface (n_bscans, n_coarse_ascans) in coarse samples from a coarse one (NaN unknown).

    A wide median along each B-scan, then across B-scans, ignores the disc (its second pass bridges
    the B-scans through a disc wider than half the first window). The coarse values within
    REFERENCE_INLIER_UM of it then bend it to the surface's local shape: the Gaussian-weighted mean
    of their residuals is added, fading where fewer than half the values nearby are such inliers
    (inside the disc). Then light smoothing."""
    fallback = np.nanmedian(surface_coarse) if np.isfinite(surface_coarse).any() else 0.0
    filled = np.where(np.isnan(surface_coarse), fallback, surface_coarse)
    lateral_mm = spacing_mm[2] * coarse.lateral_factor
    width = max(3, int(round(REFERENCE_WINDOW_MM / lateral_mm)) | 1)
    across = max(3, int(round(REFERENCE_WINDOW_MM / spacing_mm[0])) | 1)
    along = median_filter(filled, (3, width))
    wide = median_filter(along.T, (1, across)).T  # across B-scans, the window sliding along its row
    residual = surface_coarse - wide
    inlier = np.abs(np.nan_to_num(residual, nan=np.inf)) < REFERENCE_INLIER_UM / (
        spacing_mm[1] * coarse.axial_factor * 1000.0
    )
    sigma = (REFERENCE_PULL_MM / spacing_mm[0], REFERENCE_PULL_MM / lateral_mm)
    weight = ndimage.gaussian_filter(inlier.astype(np.float64), sigma, mode="nearest")
    pull = ndimage.gaussian_filter(np.where(inlier, residual, 0.0), sigma, mode="nearest")
    reference = wide + pull / np.maximum(weight, 0.5)
    return ndimage.gaussian_filter(reference, (0.7, 1.0), mode="nearest")


def _vitreous_levels(data, top_of_retina_px, levels: Levels) -> Levels:
    """Background level and spread measured in the vitreous above ``top_of_retina_px``
    (n_bscans, n_ascans), on every 2nd B-scan and 4th A-scan; ``levels`` if too little vitreous."""
    sample = data[::2, :, ::4]
    above = np.arange(data.shape[1])[None, :, None] < top_of_retina_px[::2, None, ::4]
    voxels = np.asarray(sample[above], dtype=np.float32)
    if voxels.size < MIN_VITREOUS_VOXELS:
        return levels
    background, spread = median_and_spread(np.sort(voxels))
    return dataclasses.replace(levels, background=background, noise_sd=spread)


def _along_ascans(coarse_values, coarse: Coarse, n_ascans: int):
    """Values at coarse A-scans (n_bscans, n_coarse) -> every A-scan (n_bscans, n_ascans), linear."""
    fx = coarse.lateral_factor
    centres = np.arange(coarse_values.shape[1]) * fx + (fx - 1) / 2.0
    x = np.arange(n_ascans)
    return np.stack([np.interp(x, centres, row) for row in coarse_values])


def _to_fine(coarse_edges, coarse: Coarse, n_ascans: int):
    """Coarse edge positions (coarse samples, coarse A-scans; NaN = unknown) -> fine edge positions
    (px, every A-scan), linear in x."""
    fallback = np.nanmedian(coarse_edges) if np.isfinite(coarse_edges).any() else 0.0
    filled = np.where(np.isnan(coarse_edges), fallback, coarse_edges)
    return _along_ascans(filled, coarse, n_ascans) * coarse.axial_factor
