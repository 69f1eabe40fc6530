"""``make_eye``: one synthetic OCT volume of a given class with its exact ground truth."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from phantom import anatomy, render
from phantom.params import KINDS, EyeParams, draw_params
from sdk.volume import SPACING_RANGE_MM, OCTVolume, normalise_laterality

PROTOCOL_EXTENT_MM = {"wide": (9.0, 12.0), "disc": (6.0, 6.0), "macula": (7.0, 7.0)}  # (y, x)
DEFAULT_SHAPE = (128, 496, 512)  # (n_bscans, depth, n_ascans)
DEFAULT_AXIAL_MM = 0.0039
DEPTH_WINDOW_MM = DEFAULT_SHAPE[1] * DEFAULT_AXIAL_MM
VESSEL_DEPTH_MM = 0.004  # top of a vessel below the ILM
LAMINA_THICKNESS_MM = 0.2
MIN_PRELAMINAR_MM = 0.03  # the cup floor stays this far above the lamina
TRUTH_SURFACES = ("ILM", "RNFL_GCL", "IPL_INL", "BM")


@dataclass(frozen=True)
class Truth:
    """Exact ground truth of a phantom eye, on the volume's own sampling grid.

    Surfaces are (n_bscans, n_ascans) axial positions in px (a boundary at z lies between voxel
    z-1 and voxel z); RNFL_GCL, IPL_INL and BM are NaN inside Bruch's-membrane opening, where those
    layers do not exist. Centres are (y, x) in mm in the volume's en-face coordinates.
    """

    label: str
    surfaces_px: dict[str, np.ndarray]
    disc_center_mm: tuple[float, float]
    fovea_center_mm: tuple[float, float]
    bmo_semi_axes_mm: tuple[float, float]  # (y, x)
    disc_mask: np.ndarray  # (n_bscans, n_ascans) bool, inside Bruch's-membrane opening
    rnfl_thickness_um: np.ndarray  # (n_bscans, n_ascans), NaN inside the disc
    gcc_thickness_um: np.ndarray  # RNFL + GCL + IPL


@dataclass(frozen=True)
class Eye:
    """A phantom eye: the volume an instrument would produce, its truth and its parameters."""

    volume: OCTVolume
    truth: Truth
    params: EyeParams


def make_eye(
    kind: str,
    seed: int,
    laterality: str = "OD",
    protocol: str = "wide",
    shape: tuple[int, int, int] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    **overrides,
) -> Eye:
    """Make one phantom eye, deterministic for (kind, seed, laterality, protocol, shape, spacing).

    Parameters
    ----------
    kind : "normal", "FI", "GE", "MY" or "SS".
    seed : any int; the anatomy depends on (kind, seed) only, so both eyes or both protocols of one
        seed show the same retina.
    laterality : "OD" or "OS"; an OS volume is the mirror image of the OD retina.
    protocol : "wide" (12 x 9 mm, disc and macula), "disc" (6 x 6 mm) or "macula" (7 x 7 mm).
    shape : (n_bscans, depth, n_ascans), default (128, 496, 512).
    spacing_mm : (bscan, axial, ascan); default spreads the protocol's field and a 1.93 mm depth
        window over ``shape`` (axial spacing at most 0.02 mm: fewer samples see a shallower window).
    overrides : EyeParams fields to replace after drawing, e.g. ``severity=0.9``,
        ``signal_db=12`` (a weak scan) or ``blink_bscans=(40, 41)``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is unknown: use one of {', '.join(KINDS)}")
    if protocol not in PROTOCOL_EXTENT_MM:
        raise ValueError(f"protocol {protocol!r} is unknown: use one of {', '.join(PROTOCOL_EXTENT_MM)}")
    laterality = normalise_laterality(laterality)
    kind_index = KINDS.index(kind)
    params = draw_params(
        kind, np.random.default_rng([seed, kind_index]), severity=overrides.pop("severity", None)
    )
    params = dataclasses.replace(params, **overrides)
    shape = tuple(shape) if shape is not None else DEFAULT_SHAPE
    if spacing_mm is None:
        extent_y, extent_x = PROTOCOL_EXTENT_MM[protocol]
        # a small depth keeps the device's axial sampling and sees a shallower window
        axial_mm = min(DEPTH_WINDOW_MM / shape[1], SPACING_RANGE_MM[1][1])
        spacing_mm = (extent_y / shape[0], axial_mm, extent_x / shape[2])
    noise_rng = np.random.default_rng(
        [seed, kind_index, 1 if laterality == "OD" else 2, list(PROTOCOL_EXTENT_MM).index(protocol)]
    )
    return _build(params, laterality, protocol, shape, tuple(float(s) for s in spacing_mm), noise_rng)


def _build(p: EyeParams, laterality, protocol, shape, spacing_mm, rng) -> Eye:
    n_b, depth, n_a = shape
    s_y, s_z, s_x = spacing_mm
    extent_y, extent_x = n_b * s_y, n_a * s_x
    mirror = 1.0 if laterality == "OD" else -1.0

    # retinal position (fovea at origin, OD orientation) of the scan centre
    centre_x, centre_y = {
        "wide": (p.disc_dx_mm / 2, p.disc_dy_mm / 2),
        "disc": (p.disc_dx_mm, p.disc_dy_mm),
        "macula": (0.0, 0.0),
    }[protocol]
    centre_y, centre_x = centre_y + p.scan_offset_mm[0], centre_x + p.scan_offset_mm[1]

    jitter_mm = rng.normal(0.0, p.lateral_jitter_mm, n_b) if p.lateral_jitter_mm > 0 else np.zeros(n_b)
    scan_y = ((np.arange(n_b) + 0.5) * s_y)[:, None] * np.ones((1, n_a))
    scan_x = ((np.arange(n_a) + 0.5) * s_x)[None, :] + jitter_mm[:, None]
    ret_y = centre_y + (scan_y - extent_y / 2)
    ret_x = centre_x + mirror * (scan_x - extent_x / 2)

    lay = anatomy.layers(p, ret_x, ret_y, (s_y, s_x))
    r, angle, _ = anatomy.disc_polar(p, ret_x, ret_y)
    inside = lay.rho < 1.0

    dy_c, dx_c = scan_y - extent_y / 2, scan_x - extent_x / 2
    bm_mm = (
        p.retina_depth_mm
        - p.curvature_per_mm * (dx_c**2 + dy_c**2)
        + p.tilt_mm_per_mm[0] * dy_c
        + p.tilt_mm_per_mm[1] * dx_c
        + p.disc_tilt_mm * np.exp(-((r / 1.2) ** 2)) * np.cos(np.radians(angle))
    )

    boundaries = _stack_boundaries_mm(lay, bm_mm, p.choroid_um)
    lamina_top = bm_mm + p.lamina_depth_mm * (1.0 - 0.4 * np.minimum(lay.rho, 1.0) ** 2)
    ilm_disc = np.minimum(bm_mm - lay.cup_elevation_mm, lamina_top - MIN_PRELAMINAR_MM)
    boundaries[0] = np.where(inside, ilm_disc, boundaries[0])
    boundaries[1:11] = np.where(inside, lamina_top, boundaries[1:11])
    boundaries[11] = np.where(inside, lamina_top + LAMINA_THICKNESS_MM, boundaries[11])

    motion_px = np.cumsum(rng.normal(0.0, p.axial_motion_px, n_b))
    boundaries_px = boundaries / s_z + (motion_px - motion_px.mean())[None, :, None]
    reflectivity = _reflectivity(lay, inside, rng)
    attenuation = _attenuation(lay, inside)
    vessel_top = boundaries_px[0] + VESSEL_DEPTH_MM / s_z
    vessel_bottom = vessel_top + lay.vessel_diameter_mm * lay.vessel / s_z

    signal_db = np.full(n_b, float(p.signal_db))
    signal_db[list(p.blink_bscans)] = -np.inf
    data = render.render(
        boundaries_px,
        reflectivity,
        attenuation,
        vessel_top,
        vessel_bottom,
        lay.vessel,
        depth,
        s_z,
        signal_db,
        rng,
        p.speckle_looks,
    )

    names = render.BOUNDARIES
    surfaces = {name: boundaries_px[names.index(name)].copy() for name in TRUTH_SURFACES}
    for name in TRUTH_SURFACES[1:]:
        surfaces[name][inside] = np.nan
    axial_um = s_z * 1000.0
    truth = Truth(
        label=p.kind,
        surfaces_px=surfaces,
        disc_center_mm=(
            p.disc_dy_mm - centre_y + extent_y / 2,
            extent_x / 2 + mirror * (p.disc_dx_mm - centre_x),
        ),
        fovea_center_mm=(-centre_y + extent_y / 2, extent_x / 2 - mirror * centre_x),
        bmo_semi_axes_mm=(p.bmo_semi_y_mm, p.bmo_semi_x_mm),
        disc_mask=inside,
        rnfl_thickness_um=(surfaces["RNFL_GCL"] - surfaces["ILM"]) * axial_um,
        gcc_thickness_um=(surfaces["IPL_INL"] - surfaces["ILM"]) * axial_um,
    )
    volume = OCTVolume(data, spacing_mm, laterality, protocol)
    return Eye(volume=volume, truth=truth, params=p)


def _stack_boundaries_mm(lay: anatomy.Layers, bm_mm, choroid_um) -> np.ndarray:
    """Depths (mm) of render.BOUNDARIES: layers stacked up from Bruch's membrane, choroid below."""
    above_bm = (
        lay.rpe,
        lay.outer_segment,
        lay.ellipsoid,
        lay.inner_segment,
        lay.onl,
        lay.opl,
        lay.inl,
        lay.ipl,
        lay.gcl,
        lay.rnfl,
    )  # from BM upwards: RPE_TOP, OS_TOP, EZ_TOP, ELM, ...
    upward = [bm_mm]
    for thickness_um in above_bm:
        upward.append(upward[-1] - thickness_um / 1000.0)
    # upward = [BM, RPE_TOP, OS_TOP, EZ_TOP, ELM, OPL_ONL, INL_OPL, IPL_INL, GCL_IPL, RNFL_GCL, ILM]
    csi = bm_mm + choroid_um * (0.5 + 0.5 * np.clip(lay.rho - 1.0, 0.0, 1.0)) / 1000.0
    return np.stack(upward[::-1] + [csi])


def _reflectivity(lay: anatomy.Layers, inside, rng) -> np.ndarray:
    """(13, n_bscans, n_ascans) layer reflectivities with mild en-face texture, disc and atrophy."""
    shape = lay.rho.shape
    refl = np.array(render.RETINA_REFLECTIVITY)[:, None, None] * np.ones((1, *shape))
    texture = 1.0 + 0.08 * np.stack([render.smooth_field(rng, shape, 4.0) for _ in range(13)])
    refl = refl * texture
    refl[10] = refl[10] * (1 - lay.atrophy) + render.ATROPHY_RPE_REFLECTIVITY * lay.atrophy
    refl[11] = refl[11] * (1 - lay.atrophy) + render.ATROPHY_CHOROID_REFLECTIVITY * lay.atrophy
    refl[1] = np.where(inside, render.PRELAMINAR_REFLECTIVITY, refl[1])
    refl[11] = np.where(inside, render.LAMINA_REFLECTIVITY, refl[11])
    refl[12] = np.where(inside, render.RETROLAMINAR_REFLECTIVITY, refl[12])
    refl[0] = render.RETINA_REFLECTIVITY[0]
    return refl


def _attenuation(lay: anatomy.Layers, inside) -> np.ndarray:
    """(13, n_bscans, n_ascans) one-way attenuation coefficients (1/mm) of the layers."""
    mu = np.array(render.RETINA_ATTENUATION_PER_MM)[:, None, None] * np.ones((1, *lay.rho.shape))
    mu[10] = mu[10] * (1 - lay.atrophy) + render.ATROPHY_RPE_ATTENUATION_PER_MM * lay.atrophy
    mu[11] = np.where(inside, render.LAMINA_ATTENUATION_PER_MM, mu[11])
    return mu
