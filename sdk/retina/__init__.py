"""Retinal layer segmentation, optic disc, fovea and scan quality (numpy and scipy; the heaviest
steps also in C, `_paths.c`, `_band.c`, `_median.c`, with identical results where they are built).

seg = sdk.retina.segment(volume)
seg.surfaces["ILM"]            # (n_bscans, n_ascans) axial px; also RNFL_GCL, IPL_INL, BM
seg.disc, seg.fovea, seg.quality
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from sdk.retina import intensity
from sdk.retina.landmarks import Disc, Fovea, en_face_grid_mm, find_disc, find_fovea
from sdk.retina.layers import segment_layers
from sdk.retina.quality import Quality, assess, blank_quality
from sdk.volume import OCTVolume

SURFACES = ("ILM", "RNFL_GCL", "IPL_INL", "BM")


@dataclass(frozen=True)
class Segmentation:
    """Layer surfaces, landmarks and quality of one volume.

    ``surfaces`` maps ILM, RNFL_GCL, IPL_INL and BM to (n_bscans, n_ascans) float32 axial positions
    in px (a boundary at z lies between voxel z-1 and voxel z); RNFL_GCL, IPL_INL and BM are NaN
    inside the optic disc, where those layers do not exist. ``disc`` / ``fovea`` are None when not
    found (or not expected: no disc on a macula cube, no fovea on a disc cube).
    """

    surfaces: dict[str, np.ndarray]
    disc: Disc | None
    fovea: Fovea | None
    quality: Quality
    spacing_mm: tuple[float, float, float]

    def thickness_um(self, upper: str, lower: str) -> np.ndarray:
        """(n_bscans, n_ascans) distance in micrometres from surface ``upper`` down to ``lower``."""
        return (self.surfaces[lower] - self.surfaces[upper]) * (self.spacing_mm[1] * 1000.0)


def segment(volume: OCTVolume) -> Segmentation:
    """Segment ``volume``: ILM, RNFL/GCL, IPL/INL and Bruch's membrane on every B-scan, the optic
    disc (Bruch's-membrane opening) and the fovea, and judge the scan's quality.

    Every valid volume gets a Segmentation; one with nothing to segment (a blank volume) gets NaN
    surfaces and a quality that says why."""
    spacing = volume.spacing_mm
    disc_expected = volume.protocol in ("wide", "disc")
    fovea_expected = volume.protocol in ("wide", "macula")
    work = intensity.prepare(volume)
    if work.blank is not None:
        return _blank(volume, work.blank)
    coarse = intensity.coarse(work.data, work.spacing_mm)
    levels = intensity.levels(work.data, coarse.data)
    layers = segment_layers(work.data, work.spacing_mm, coarse, levels)
    n_a, fa, fz = volume.shape[2], work.ascan_factor, work.axial_factor
    layers = dataclasses.replace(
        layers,
        surfaces={k: intensity.unbin_ascans(v, fa, n_a) * np.float32(fz) for k, v in layers.surfaces.items()},
        contrast={k: intensity.unbin_ascans(v, fa, n_a) for k, v in layers.contrast.items()},
        tissue_found=intensity.unbin_ascans(layers.tissue_found.astype(np.float32), fa, n_a) > 0.5,
        vitreous_above=intensity.unbin_ascans(layers.vitreous_above.astype(np.float32), fa, n_a) > 0.5,
    )

    retina_um = (layers.surfaces["BM"] - layers.surfaces["ILM"]) * (spacing[1] * 1000.0)
    disc = (
        find_disc(layers.contrast["RPE"], layers.contrast["OPL_ONL"], retina_um, spacing)
        if disc_expected
        else None
    )
    surfaces = {name: layers.surfaces[name] for name in SURFACES}
    if disc is not None:
        for name in SURFACES[1:]:
            surfaces[name] = np.where(disc.mask, np.nan, surfaces[name]).astype(np.float32)
    axial_um = spacing[1] * 1000.0
    pits = ((surfaces["BM"] - surfaces["ILM"]) * axial_um, (surfaces["IPL_INL"] - surfaces["ILM"]) * axial_um)
    fovea = (  # searched on the binned A-scans of the layers: the same detail, fewer pixels to filter
        find_fovea(
            [intensity.bin_ascans(pit, spacing)[0] for pit in pits],
            (spacing[0], spacing[1], spacing[2] * fa),
            volume.protocol,
            volume.laterality,
            disc,
            volume.extent_mm,
        )
        if fovea_expected
        else None
    )

    outside = ~disc.mask if disc is not None else np.ones(pits[0].shape, bool)
    snr = layers.levels.signal_to_noise()
    quality = assess(
        snr,
        layers.tissue_found,
        layers.vitreous_above,
        layers.contrast,
        outside,
        disc_expected,
        disc is not None,
        fovea_expected,
        fovea is not None,
    )
    return Segmentation(surfaces=surfaces, disc=disc, fovea=fovea, quality=quality, spacing_mm=spacing)


def _blank(volume: OCTVolume, reason: str) -> Segmentation:
    """The Segmentation of a volume with nothing in it: NaN surfaces, no landmarks, ungradable."""
    shape = (volume.shape[0], volume.shape[2])
    surfaces = {name: np.full(shape, np.nan, np.float32) for name in SURFACES}
    quality = blank_quality(reason, volume.shape[0])
    return Segmentation(
        surfaces=surfaces, disc=None, fovea=None, quality=quality, spacing_mm=volume.spacing_mm
    )


__all__ = ["segment", "Segmentation", "Disc", "Fovea", "Quality", "SURFACES", "en_face_grid_mm"]
