"""Retinal layer segmentation, optic disc, fovea and scan quality (numpy/scipy only).

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
from sdk.retina.quality import Quality, assess
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
    disc (Bruch's-membrane opening) and the fovea, and judge the scan's quality."""
    spacing = volume.spacing_mm
    logged = intensity.log_scaled(volume)
    data = volume.data if logged is None else logged
    binned, factor = intensity.bin_ascans(data, spacing)  # levels and layers use the binned copy
    working_spacing = (spacing[0], spacing[1], spacing[2] * factor)
    coarse = intensity.coarse(binned, working_spacing)
    levels = intensity.levels(binned, coarse.data)
    layers = segment_layers(binned, working_spacing, coarse, levels)
    n_a = data.shape[2]
    layers = dataclasses.replace(
        layers,
        surfaces={k: intensity.unbin_ascans(v, factor, n_a) for k, v in layers.surfaces.items()},
        contrast={k: intensity.unbin_ascans(v, factor, n_a) for k, v in layers.contrast.items()},
        tissue_found=intensity.unbin_ascans(layers.tissue_found.astype(np.float32), factor, n_a) > 0.5,
    )

    disc_expected = volume.protocol in ("wide", "disc")
    disc = find_disc(layers.contrast["OPL_ONL"], spacing) if disc_expected else None
    surfaces = {name: layers.surfaces[name] for name in SURFACES}
    if disc is not None:
        for name in SURFACES[1:]:
            surfaces[name] = np.where(disc.mask, np.nan, surfaces[name]).astype(np.float32)
    axial_um = spacing[1] * 1000.0
    pits = ((surfaces["BM"] - surfaces["ILM"]) * axial_um, (surfaces["IPL_INL"] - surfaces["ILM"]) * axial_um)
    fovea_expected = volume.protocol in ("wide", "macula")
    fovea = (  # searched on the binned A-scans of the layers: the same detail, fewer pixels to filter
        find_fovea(
            [intensity.bin_ascans(pit, spacing)[0] for pit in pits],
            working_spacing,
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
        layers.contrast,
        outside,
        disc_expected,
        disc is not None,
        fovea_expected,
        fovea is not None,
    )
    return Segmentation(surfaces=surfaces, disc=disc, fovea=fovea, quality=quality, spacing_mm=spacing)


__all__ = ["segment", "Segmentation", "Disc", "Fovea", "Quality", "SURFACES", "en_face_grid_mm"]
