"""The four maps the networks see: RNFL and GCC thickness, and their deviation from normal eyes.

    maps = sdk.maps.extract(volume, normative)          # wide-field cube (disc and macula)
    maps = sdk.maps.extract_exam(disc_volume, macula_volume, normative)
    maps.rnfl_thickness, maps.gcc_thickness             # (224, 224) um, NaN = masked
    maps.rnfl_deviation, maps.gcc_deviation             # z-scores, None without a normative database
    x = sdk.maps.to_network_input(maps.stack())         # (4, 3, 224, 224) float32

RNFL = ILM to RNFL/GCL; GCC (ganglion cell complex) = RNFL + GCL + IPL = ILM to IPL/INL.
Geometry (fields, orientation, masking) is in sdk.maps.geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdk import retina
from sdk.errors import InvalidVolume
from sdk.maps.geometry import (
    GCC_FIELD_MM,
    MAP_SIZE_PX,
    RNFL_FIELD_MM,
    check_field_of_view,
    inside_ellipse,
    map_positions_mm,
    sample,
)
from sdk.maps.network_input import MAP_NAMES, NORMALISATION, preprocessing_constants, to_network_input
from sdk.maps.normative import Z_PERCENTILE_1, Z_PERCENTILE_5, Normative
from sdk.retina import Quality, Segmentation
from sdk.volume import OCTVolume

MIN_COVERAGE = 0.9  # share of a map's field (outside the disc) that must lie inside the scan


@dataclass(frozen=True)
class Maps:
    """The maps of one eye, each (MAP_SIZE_PX, MAP_SIZE_PX) float32 in OD orientation, NaN = masked.

    ``segmentations`` holds the segmentation(s) they came from (one wide cube, or disc and macula
    cubes) and ``quality`` the combined verdict, including map coverage.
    """

    rnfl_thickness: np.ndarray
    gcc_thickness: np.ndarray
    rnfl_deviation: np.ndarray | None
    gcc_deviation: np.ndarray | None
    quality: Quality
    laterality: str
    segmentations: tuple[Segmentation, ...]

    def stack(self) -> np.ndarray:
        """(4, 224, 224) float32 in MAP_NAMES order; needs the deviation maps (a normative database)."""
        if self.rnfl_deviation is None or self.gcc_deviation is None:
            raise ValueError("deviation maps need a normative database: pass normative= to extract()")
        return np.stack([self.rnfl_thickness, self.gcc_thickness, self.rnfl_deviation, self.gcc_deviation])


def extract(
    volume: OCTVolume, normative: Normative | None = None, segmentation: Segmentation | None = None
) -> Maps:
    """Maps of a wide-field cube holding both the optic disc and the macula.

    ``segmentation`` may be given if the volume was segmented already.
    """
    if volume.protocol != "wide":
        raise InvalidVolume(
            f"extract() needs a wide-field cube holding disc and macula, got a "
            f"{volume.protocol!r} cube: use extract_exam(disc=..., macula=...) for two-cube protocols"
        )
    check_field_of_view(_en_face_extent(volume), volume.protocol)
    seg = segmentation if segmentation is not None else retina.segment(volume)
    rnfl, rnfl_gap = _rnfl_map(seg, volume.laterality)
    gcc, gcc_gap = _gcc_map(seg, volume.laterality)
    quality = seg.quality.with_reasons(*rnfl_gap, *gcc_gap)
    return _with_deviation(rnfl, gcc, quality, volume.laterality, (seg,), normative)


def extract_exam(disc: OCTVolume, macula: OCTVolume, normative: Normative | None = None) -> Maps:
    """Maps of a two-cube exam: RNFL maps from the disc cube, GCC maps from the macular cube."""
    if disc.protocol != "disc" or macula.protocol != "macula":
        raise InvalidVolume(
            f"extract_exam() needs a 'disc' and a 'macula' cube, got {disc.protocol!r} and "
            f"{macula.protocol!r}"
        )
    if disc.laterality != macula.laterality:
        raise InvalidVolume(
            f"the disc cube is {disc.laterality} but the macular cube is "
            f"{macula.laterality}: both cubes of an exam must come from the same eye"
        )
    for volume in (disc, macula):
        check_field_of_view(_en_face_extent(volume), volume.protocol)
    disc_seg, macula_seg = retina.segment(disc), retina.segment(macula)
    rnfl, rnfl_gap = _rnfl_map(disc_seg, disc.laterality)
    gcc, gcc_gap = _gcc_map(macula_seg, macula.laterality)
    reasons = [f"disc cube: {r}" for r in disc_seg.quality.reasons + rnfl_gap]
    reasons += [f"macular cube: {r}" for r in macula_seg.quality.reasons + gcc_gap]
    quality = Quality(
        min(disc_seg.quality.signal_to_noise, macula_seg.quality.signal_to_noise),
        disc_seg.quality.lost_bscans + macula_seg.quality.lost_bscans,
        min(disc_seg.quality.boundary_confidence, macula_seg.quality.boundary_confidence),
        disc_seg.disc is not None,
        macula_seg.fovea is not None,
        tuple(reasons),
    )
    return _with_deviation(rnfl, gcc, quality, disc.laterality, (disc_seg, macula_seg), normative)


def _en_face_extent(volume: OCTVolume):
    return volume.extent_mm[0], volume.extent_mm[2]


def _rnfl_map(seg: Segmentation, laterality: str):
    """RNFL thickness map centred on the disc, and the reasons it is unusable (empty if fine)."""
    if seg.disc is None:
        return _empty(), ()
    thickness = seg.thickness_um("ILM", "RNFL_GCL")
    return _resample(thickness, seg, seg.disc.center_mm, RNFL_FIELD_MM, laterality, "RNFL")


def _gcc_map(seg: Segmentation, laterality: str):
    """GCC thickness map centred on the fovea, and the reasons it is unusable (empty if fine)."""
    if seg.fovea is None:
        return _empty(), ()
    thickness = seg.thickness_um("ILM", "IPL_INL")
    return _resample(thickness, seg, seg.fovea.center_mm, GCC_FIELD_MM, laterality, "GCC")


def _resample(thickness, seg: Segmentation, centre_mm, field_mm, laterality, name):
    y, x = map_positions_mm(centre_mm, field_mm, laterality)
    values = sample(thickness, seg.spacing_mm, y, x)
    in_disc = (
        inside_ellipse(y, x, seg.disc.center_mm, seg.disc.semi_axes_mm)
        if seg.disc is not None
        else np.zeros(values.shape, bool)
    )
    values[in_disc] = np.nan
    coverage = float(np.isfinite(values[~in_disc]).mean()) if (~in_disc).any() else 0.0
    if coverage < MIN_COVERAGE:
        return values, (
            f"{name} map: only {100 * coverage:.0f}% of its {field_mm:g} mm field lies inside "
            f"the scan (at least {100 * MIN_COVERAGE:.0f}% needed)",
        )
    return values, ()


def _empty():
    return np.full((MAP_SIZE_PX, MAP_SIZE_PX), np.nan, np.float32)


def _with_deviation(rnfl, gcc, quality, laterality, segmentations, normative) -> Maps:
    rnfl_dev, gcc_dev = normative.deviation(rnfl, gcc) if normative is not None else (None, None)
    return Maps(rnfl, gcc, rnfl_dev, gcc_dev, quality, laterality, segmentations)


__all__ = [
    "extract",
    "extract_exam",
    "Maps",
    "Normative",
    "to_network_input",
    "preprocessing_constants",
    "MAP_NAMES",
    "NORMALISATION",
    "MAP_SIZE_PX",
    "RNFL_FIELD_MM",
    "GCC_FIELD_MM",
    "MIN_COVERAGE",
    "Z_PERCENTILE_5",
    "Z_PERCENTILE_1",
]
