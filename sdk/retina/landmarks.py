"""Optic disc (Bruch's-membrane opening) and fovea, from the segmented surfaces.

Disc: Bruch's-membrane opening is where the RPE/BM band ends (Reis et al. 2012: the RPE and BM run
on to the opening, the inner layers taper into the rim before it). Inside the opening there is
neither the fall from the RPE into the choroid at Bruch's membrane nor the layering of the retina
(the step from the outer plexiform into the outer nuclear layer); over peripapillary atrophy the
RPE fall is gone but the retina above is still layered, and where the inner layers taper towards
the rim the RPE is still there. Both are log-scale contrasts, so vessel shadows do not change them.
The region where both vanish, cleaned of specks, is the disc; its area moments give an ellipse
(centre, semi-axes). It does not depend on the cup: neither contrast looks above the BMO plane's
retina.

Fovea: the pit, where the retina thins and the inner retina (ILM to IPL/INL) vanishes, found by a
centre-surround filter at the pit's scale and searched where a fovea can be for the protocol.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from sdk import ndimage
from sdk.retina import morphology
from sdk.retina.chunks import in_parallel
from sdk.retina.median import median_filter

# a contrast below this fraction of its median is absent: the RPE's fall at Bruch's membrane (halfway:
# the RPE runs on to the opening) and the retina's layering (near zero: over atrophy the layers
# thin and the step weakens, but only inside the opening is there no layering at all)
DISC_BM_FALL = 0.5
DISC_LAYERING = 0.2
# on coarse scans (B-scans ~0.3 mm apart) the edge detector's noise floor inside the opening reaches
# those fractions; where nothing plausible is found at them, the disc is looked for again at this
# multiple of both (on 0.03 mm A-scans it would draw the opening's edge ~1 px outside, so it is the
# fallback, not the rule)
DISC_COARSE_SCALE = 1.5
DISC_MEDIAN_MM = 0.15  # window of the median that cleans the contrast maps
MIN_RETINA_UM = 60.0  # thinner than this from ILM to BM is not retina (the foveola keeps ~180 um)
DISC_AREA_MM2 = (0.8, 6.0)  # plausible area of Bruch's-membrane opening
DISC_MIN_OVALITY = 0.5  # shorter / longer axis: flatter regions are not a disc (tilted discs reach ~0.6)
DISC_CLOSING_MM = 0.25  # bridges vessel shadows across the disc
FOVEA_DISC_DISTANCE_MM = (3.0, 6.0)  # fovea lies this far temporal of the disc centre
FOVEA_MAX_VERTICAL_MM = 1.5  # and within this height of it
MACULA_SEARCH_RADIUS_MM = 2.0  # on a macula cube, within this distance of the scan centre
FOVEA_MEDIAN_MM = 0.35  # removes streaks where a boundary was lost along part of a B-scan
FOVEA_CENTRE_MM = 0.2  # Gaussian sd of the pit's centre ...
FOVEA_SURROUND_MM = 0.7  # ... and of its surround
FOVEA_PEAK_RADIUS_MM = 0.3  # the centre is the response-weighted centroid this close to the peak
FOVEA_MIN_PIT_UM = 15.0  # mean surround-minus-centre response of a real pit


@dataclass(frozen=True)
class Disc:
    """Bruch's-membrane opening as an axis-aligned ellipse in en-face mm (y, x)."""

    center_mm: tuple[float, float]
    semi_axes_mm: tuple[float, float]
    mask: np.ndarray  # (n_bscans, n_ascans) bool, inside the ellipse

    @property
    def area_mm2(self) -> float:
        return float(np.pi * self.semi_axes_mm[0] * self.semi_axes_mm[1])


@dataclass(frozen=True)
class Fovea:
    center_mm: tuple[float, float]
    pit_depth_um: float  # mean surround-minus-centre thickness response at the pit


def en_face_grid_mm(shape, spacing_mm):
    """(y, x) mm coordinates of every A-scan centre, each (n_bscans, n_ascans)."""
    n_b, n_a = shape
    y = (np.arange(n_b) + 0.5) * spacing_mm[0]
    x = (np.arange(n_a) + 0.5) * spacing_mm[2]
    return np.meshgrid(y, x, indexing="ij")


def find_disc(bm_fall: np.ndarray, layering: np.ndarray, retina_um: np.ndarray, spacing_mm) -> Disc | None:
    """Disc from the contrast of the RPE/BM band and of the OPL/ONL edge (any positive unit) and the
    distance from the ILM down to Bruch's membrane (um), each (n_bscans, n_ascans). Where that
    distance is below MIN_RETINA_UM there is no retina: the surface is the rim's or the cup's.
    Returns None if no plausible disc is in the scan (at the fractions of DISC_BM_FALL and
    DISC_LAYERING, or failing that at DISC_COARSE_SCALE times them)."""
    # a median, not a blur: thin lines of contrast (a cup wall crossing the level of Bruch's membrane,
    # vessel walls) vanish instead of spreading into the opening
    size = tuple(max(1, round(DISC_MEDIAN_MM / s)) | 1 for s in (spacing_mm[0], spacing_mm[2]))
    fall, layered = in_parallel(*(functools.partial(median_filter, c, size) for c in (bm_fall, layering)))
    for scale in (1.0, DISC_COARSE_SCALE):
        candidate = (fall < scale * DISC_BM_FALL * np.median(fall)) & (
            layered < scale * DISC_LAYERING * np.median(layered)
        )
        region = _largest_plausible_region(candidate | (retina_um < MIN_RETINA_UM), spacing_mm)
        if region is not None:
            break
    else:
        return None
    region = ndimage.binary_fill_holes(region)
    y, x = en_face_grid_mm(region.shape, spacing_mm)
    cy, cx = float(y[region].mean()), float(x[region].mean())
    # a filled ellipse with semi-axis s has variance s^2 / 4 along that axis
    sy = 2.0 * float(np.sqrt(np.var(y[region]) + spacing_mm[0] ** 2 / 12))
    sx = 2.0 * float(np.sqrt(np.var(x[region]) + spacing_mm[2] ** 2 / 12))
    if min(sy, sx) / max(sy, sx) < DISC_MIN_OVALITY:
        return None
    mask = ((y - cy) / sy) ** 2 + ((x - cx) / sx) ** 2 < 1.0
    return Disc(center_mm=(cy, cx), semi_axes_mm=(sy, sx), mask=mask)


def find_fovea(
    thickness_maps_um, spacing_mm, protocol: str, laterality: str, disc: Disc | None, extent_mm
) -> Fovea | None:
    """Fovea from thickness maps that dip at the pit, each (n_bscans, n_ascans) in um (NaN allowed):
    the total retina (ILM to BM) and the inner retina (ILM to IPL/INL). None if not found.

    Each map is cleaned of streaks (median), then a difference of Gaussians at the pit's scale
    (surround minus centre) responds most at the pit's centre; the responses of the maps add up.
    """
    shape = thickness_maps_um[0].shape
    y, x = en_face_grid_mm(shape, spacing_mm)
    allowed = _fovea_search_region(y, x, protocol, laterality, disc, extent_mm)
    if allowed is None or not allowed.any():
        return None
    response = np.zeros(shape)
    for pit in in_parallel(*(functools.partial(_pit_response, t, spacing_mm) for t in thickness_maps_um)):
        response += pit
    response = np.where(allowed, response, -np.inf)
    peak = np.unravel_index(np.argmax(response), shape)
    pit = float(response[peak]) / len(thickness_maps_um)
    if not np.isfinite(pit) or pit < FOVEA_MIN_PIT_UM:
        return None
    near = (np.hypot(y - y[peak], x - x[peak]) < FOVEA_PEAK_RADIUS_MM) & (response > 0.9 * response[peak])
    weights = response[near] - 0.9 * response[peak]
    return Fovea(
        center_mm=(float(np.average(y[near], weights=weights)), float(np.average(x[near], weights=weights))),
        pit_depth_um=pit,
    )


def _pit_response(thickness_um, spacing_mm):
    """Surround-minus-centre response (um) of a thickness map: large at the centre of a pit."""
    size = tuple(max(1, round(FOVEA_MEDIAN_MM / s)) | 1 for s in (spacing_mm[0], spacing_mm[2]))
    finite = np.isfinite(thickness_um)
    filled = np.where(finite, thickness_um, np.nanmedian(thickness_um) if finite.any() else 0.0)
    clean = median_filter(filled, size)

    def blur(sigma_mm):
        return ndimage.gaussian_filter(
            clean, (sigma_mm / spacing_mm[0], sigma_mm / spacing_mm[2]), mode="nearest"
        )

    return blur(FOVEA_SURROUND_MM) - blur(FOVEA_CENTRE_MM)


def _fovea_search_region(y, x, protocol, laterality, disc, extent_mm):
    if protocol == "macula":
        return np.hypot(y - extent_mm[0] / 2, x - extent_mm[2] / 2) < MACULA_SEARCH_RADIUS_MM
    if disc is None:
        return None
    temporal = -1.0 if laterality == "OD" else 1.0  # the fovea is left of the disc in an OD en-face view
    along = (x - disc.center_mm[1]) * temporal
    lo, hi = FOVEA_DISC_DISTANCE_MM
    return (along > lo) & (along < hi) & (np.abs(y - disc.center_mm[0]) < FOVEA_MAX_VERTICAL_MM)


def _largest_plausible_region(candidate, spacing_mm):
    """The largest connected region of ``candidate`` (n_bscans, n_ascans) bool, after closing over
    vessel shadows and opening away specks, whose area is a plausible disc's; None if none is."""
    structure = _ellipse_structure(DISC_CLOSING_MM, spacing_mm)
    candidate = morphology.opening(morphology.closing(candidate, structure), structure)
    labels, n = ndimage.label(candidate)
    if n == 0:
        return None
    areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1)) * (
        spacing_mm[0] * spacing_mm[2]
    )
    plausible = np.flatnonzero((areas >= DISC_AREA_MM2[0]) & (areas <= DISC_AREA_MM2[1]))
    if plausible.size == 0:
        return None
    return labels == plausible[np.argmax(areas[plausible])] + 1


def _ellipse_structure(radius_mm, spacing_mm):
    ry = max(1, int(round(radius_mm / spacing_mm[0])))
    rx = max(1, int(round(radius_mm / spacing_mm[2])))
    yy, xx = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    return (yy / ry) ** 2 + (xx / rx) ** 2 <= 1.0
