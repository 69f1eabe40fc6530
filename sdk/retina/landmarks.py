"""Optic disc (Bruch's-membrane opening) and fovea, from the segmented surfaces.

Disc: the layered retina ends at Bruch's-membrane opening. Outside it, even over peripapillary
atrophy and under vessel shadows, the step from the bright outer plexiform layer to the dark outer
nuclear layer is one of the strongest edges of the retina (a log-scale contrast, so shadows do not
change it); inside the disc there is only unlayered neural tissue. The region where that edge
vanishes, cleaned of specks, is the disc; its area moments give an ellipse (centre, semi-axes).

Fovea: the pit, where the retina thins and the inner retina (ILM to IPL/INL) vanishes, found by a
centre-surround filter at the pit's scale and searched where a fovea can be for the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DISC_LAYERING = 0.35  # OPL/ONL edge below this fraction of its median: no retinal layers
DISC_SMOOTHING_MM = 0.06
DISC_AREA_MM2 = (0.8, 6.0)  # plausible area of Bruch's-membrane opening
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


def find_disc(layering: np.ndarray, spacing_mm) -> Disc | None:
    """Disc from the contrast of the OPL/ONL edge, (n_bscans, n_ascans), any positive unit.

    Returns None if no plausible disc is in the scan.
    """
    pixel_area = spacing_mm[0] * spacing_mm[2]
    sigma = (DISC_SMOOTHING_MM / spacing_mm[0], DISC_SMOOTHING_MM / spacing_mm[2])
    smooth = ndimage.gaussian_filter(layering, sigma, mode="nearest")
    candidate = smooth < DISC_LAYERING * np.median(smooth)
    structure = _ellipse_structure(DISC_CLOSING_MM, spacing_mm)
    candidate = ndimage.binary_closing(candidate, structure, border_value=0)
    candidate = ndimage.binary_opening(candidate, structure)
    labels, n = ndimage.label(candidate)
    if n == 0:
        return None
    areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1)) * pixel_area
    plausible = np.flatnonzero((areas >= DISC_AREA_MM2[0]) & (areas <= DISC_AREA_MM2[1]))
    if plausible.size == 0:
        return None
    region = labels == plausible[np.argmax(areas[plausible])] + 1
    region = ndimage.binary_fill_holes(region)
    y, x = en_face_grid_mm(region.shape, spacing_mm)
    cy, cx = float(y[region].mean()), float(x[region].mean())
    # a filled ellipse with semi-axis s has variance s^2 / 4 along that axis
    sy = 2.0 * float(np.sqrt(np.var(y[region]) + spacing_mm[0] ** 2 / 12))
    sx = 2.0 * float(np.sqrt(np.var(x[region]) + spacing_mm[2] ** 2 / 12))
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
    for thickness in thickness_maps_um:
        response += _pit_response(thickness, spacing_mm)
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
    clean = ndimage.median_filter(filled, size, mode="nearest")

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


def _ellipse_structure(radius_mm, spacing_mm):
    ry = max(1, int(round(radius_mm / spacing_mm[0])))
    rx = max(1, int(round(radius_mm / spacing_mm[2])))
    yy, xx = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    return (yy / ry) ** 2 + (xx / rx) ** 2 <= 1.0
