"""Voxels from layer surfaces: reflectivity, partial volume, vessels and shadows, speckle, roll-off,
noise floor and log compression to 8 bits, as a spectral-domain OCT displays a volume.

Reflectivities are linear backscatter (the nerve fibre layer near 1); the display maps a fixed dB
window to 0..255 (like a vendor's fixed display range), so a weak scan looks dark and noisy. Layer
contrasts, vessel shadows and speckle are calibrated against real Heidelberg Spectralis and Topcon
B-scans (docs/PHANTOM.md, section "Appearance against real B-scans").
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

# layer between consecutive boundaries: vitreous | RNFL | GCL | IPL | INL | OPL | ONL | inner segments |
# ellipsoid zone | outer segments | RPE | choroid | sclera
BOUNDARIES = (
    "ILM",
    "RNFL_GCL",
    "GCL_IPL",
    "IPL_INL",
    "INL_OPL",
    "OPL_ONL",
    "ELM",
    "EZ_TOP",
    "OS_TOP",
    "RPE_TOP",
    "BM",
    "CSI",
)
RETINA_REFLECTIVITY = (0.0002, 0.9, 0.28, 0.5, 0.17, 0.45, 0.035, 0.15, 1.1, 0.3, 2.0, 0.5, 0.12)
# attenuation coefficient of each layer (1/mm, one way): the retina is nearly transparent, the
# pigmented RPE and the blood-filled choroid are not
RETINA_ATTENUATION_PER_MM = (0.0, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 40.0, 7.0, 3.0)
PRELAMINAR_REFLECTIVITY = 0.25  # neural tissue inside the disc (takes the RNFL slot)
LAMINA_REFLECTIVITY = 0.22  # lamina cribrosa (takes the choroid slot inside the disc)
RETROLAMINAR_REFLECTIVITY = 0.06
# what is left of the RPE band in (beta-zone) atrophy: the bright line of Bruch's membrane
ATROPHY_RPE_REFLECTIVITY = 1.6
ATROPHY_CHOROID_REFLECTIVITY = 0.65  # hypertransmission below missing RPE
ATROPHY_RPE_ATTENUATION_PER_MM = 5.0
LAMINA_ATTENUATION_PER_MM = 5.0
VESSEL_REFLECTIVITY = 0.75
VESSEL_SHADOW = 0.96  # fraction of signal lost below the centre of a vessel (-14 dB)
ROLL_OFF_DB_PER_MM = 3.0
DISPLAY_DB = (-2.0, 42.0)  # dB window mapped to 0..255 (noise floor median is -1.6 dB)


def render(
    boundaries_px: np.ndarray,
    reflectivity: np.ndarray,
    attenuation_per_mm: np.ndarray,
    vessel_top_px: np.ndarray,
    vessel_bottom_px: np.ndarray,
    vessel_opacity: np.ndarray,
    depth: int,
    axial_mm: float,
    signal_db: np.ndarray,
    rng: np.random.Generator,
    speckle_looks: int = 1,
    chunk: int = 8,
) -> np.ndarray:
    """Render a volume.

    Parameters
    ----------
    boundaries_px : (12, n_bscans, n_ascans) depth of each boundary of BOUNDARIES, px, nondecreasing.
    reflectivity : (13, n_bscans, n_ascans) linear reflectivity of each layer.
    attenuation_per_mm : (13, n_bscans, n_ascans) one-way attenuation coefficient of each layer.
    vessel_top_px, vessel_bottom_px, vessel_opacity : (n_bscans, n_ascans) vessel extent and opacity.
    depth : number of axial samples; axial_mm: axial spacing.
    signal_db : (n_bscans,) signal of unit reflectivity above the noise floor per B-scan (-inf for a blink).
    speckle_looks : frames averaged per B-scan (1 = one frame; Spectralis averages several).

    Returns
    -------
    uint8 array (n_bscans, depth, n_ascans).
    """
    n_b, n_a = boundaries_px.shape[1:]
    out = np.empty((n_b, depth, n_a), dtype=np.uint8)
    voxel_bottom = (np.arange(depth, dtype=np.float32) + 1.0)[None, :, None]  # lower edge of voxel i
    roll_off = 10.0 ** (-ROLL_OFF_DB_PER_MM * voxel_bottom * axial_mm / 10.0)
    choroid_phase = smooth_field(rng, (n_b, n_a), 3.0) * 6.0 * np.pi
    for start in range(0, n_b, chunk):
        sl = slice(start, min(start + chunk, n_b))
        bnd = boundaries_px[:, sl, None, :].astype(np.float32)
        intensity, optical_px = _layered(
            bnd,
            reflectivity[:, sl, None, :].astype(np.float32),
            attenuation_per_mm[:, sl, None, :].astype(np.float32),
            voxel_bottom,
        )
        intensity *= np.exp(-2.0 * axial_mm * optical_px)
        _choroid_texture(intensity, voxel_bottom, bnd, choroid_phase[sl, None, :], axial_mm)
        _add_vessels(
            intensity,
            voxel_bottom,
            vessel_top_px[sl, None, :],
            vessel_bottom_px[sl, None, :],
            vessel_opacity[sl, None, :].astype(np.float32),
        )
        signal = (10.0 ** (signal_db[sl] / 10.0)).astype(np.float32)[:, None, None]
        speckle = _speckle(rng, intensity.shape, speckle_looks)
        noise = rng.standard_exponential(intensity.shape, dtype=np.float32)
        total = signal * intensity * roll_off * speckle + noise
        out[sl] = _display(total)
    return out


def _layered(bnd, refl, mu, voxel_bottom):
    """Partial-volume reflectivity and optical depth (px * 1/mm) of every voxel of a chunk.

    Only the depth band that holds boundaries is computed layer by layer: above it is vitreous,
    below it the last layer, whose optical depth grows linearly.
    """
    depth = voxel_bottom.shape[1]
    top, bottom = _band(bnd, bnd, depth)
    shape = (bnd.shape[1], depth, bnd.shape[3])
    intensity = np.empty(shape, np.float32)
    optical = np.empty(shape, np.float32)
    intensity[:, :top] = refl[0]
    optical[:, :top] = mu[0] * voxel_bottom[:, :top]
    z = voxel_bottom[:, top:bottom]
    band = np.broadcast_to(refl[0], (shape[0], bottom - top, shape[2])).copy()
    band_optical = mu[0] * z
    for k in range(bnd.shape[0]):
        past = z - bnd[k]
        band += (refl[k + 1] - refl[k]) * np.clip(past, 0.0, 1.0)
        band_optical += (mu[k + 1] - mu[k]) * np.maximum(past, 0.0)
    intensity[:, top:bottom] = band
    optical[:, top:bottom] = band_optical
    # below every boundary: optical depth = mu_last * z - sum_k (mu_k+1 - mu_k) * boundary_k
    offset = sum((mu[k + 1] - mu[k]) * bnd[k] for k in range(bnd.shape[0]))
    intensity[:, bottom:] = refl[-1]
    optical[:, bottom:] = mu[-1] * voxel_bottom[:, bottom:] - offset
    return intensity, optical


def smooth_field(rng, shape, sigma_px):
    """Zero-mean smooth random field with unit standard deviation."""
    field = gaussian_filter(rng.standard_normal(shape), sigma_px)
    return field / max(field.std(), 1e-12)


def _band(lower, upper, depth):
    """Rows [top, bottom) of the depth axis that hold everything between two surfaces."""
    top = int(np.clip(np.floor(lower.min()) - 1, 0, depth))
    return top, int(np.clip(np.ceil(upper.max()) + 1, top, depth))


def _choroid_texture(intensity, voxel_bottom, bnd, phase, axial_mm):
    """Darken layered lumens of choroidal vessels between BM and the choroid-sclera interface, in place."""
    top, bottom = _band(bnd[10], bnd[11], intensity.shape[1])
    z = voxel_bottom[:, top:bottom]
    inside = np.clip(z - bnd[10], 0.0, 1.0) * np.clip(bnd[11] - z + 1.0, 0.0, 1.0)
    period_px = 0.07 / axial_mm
    lumen = 0.5 + 0.5 * np.cos(2.0 * np.pi * (z - bnd[10]) / period_px + phase)
    intensity[:, top:bottom] *= 1.0 - 0.55 * inside * lumen


def _add_vessels(intensity, voxel_bottom, top_px, bottom_px, opacity):
    """Vessels near the ILM, in place: bright walls and blood, and a shadow on everything below."""
    top, bottom = _band(top_px, bottom_px, intensity.shape[1])
    z = voxel_bottom[:, top:bottom]
    below_bottom = np.clip(z - bottom_px, 0.0, 1.0)
    inside = (np.clip(z - top_px, 0.0, 1.0) - below_bottom) * (opacity > 0)
    band = intensity[:, top:bottom]
    band[:] = (band * (1.0 - inside) + VESSEL_REFLECTIVITY * inside) * (
        1.0 - VESSEL_SHADOW * opacity * below_bottom
    )
    intensity[:, bottom:] *= 1.0 - VESSEL_SHADOW * opacity


def _speckle(rng, shape, looks):
    """Fully developed speckle averaged over ``looks`` frames (gamma intensity of unit mean),
    correlated over about 2 axial samples."""
    s = rng.standard_gamma(float(looks), shape, dtype=np.float32) * np.float32(1.0 / looks)
    s[:, 1:-1, :] = 0.25 * s[:, :-2, :] + 0.5 * s[:, 1:-1, :] + 0.25 * s[:, 2:, :]
    return s


def _display(total):
    lo, hi = DISPLAY_DB
    db = 10.0 * np.log10(np.maximum(total, 1e-6))
    return np.clip((db - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
