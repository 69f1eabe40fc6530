"""En-face anatomy of a phantom eye: layer thicknesses, optic disc and vessels at given positions.

All functions take retinal coordinates ``x_mm, y_mm`` (arrays of any equal shape) in OD orientation
with the fovea at the origin, +x nasal (towards the disc) and +y inferior, and return arrays of that
shape. Thicknesses are in micrometres, depths in millimetres.

Nerve fibres follow a simple arcuate model: a point at distance r from the disc centre and angle phi
(0 = towards the fovea, + superior) lies on the fibre that leaves the disc at angle
``phi0 = sign(phi) * 180 * (|phi| / 180) ** gamma(r)``, with gamma falling from 1 at the disc to
0.3 far away. So fibres fan out radially near the disc and arc around the fovea to the horizontal
raphe, as the arcuate bundles do. Damage is a function of phi0 (which axons are lost), so an RNFL
wedge at the disc and the matching arcuate ganglion-cell loss in the macula, bounded by the raphe,
come from the same lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phantom.params import EyeParams

GLIAL_FLOOR = 0.4  # fraction of the normal RNFL left when every axon is lost (glia, vessels)
TSNIT_RADIUS_MM = 1.7  # radius at which the TSNIT profile below is defined
GAMMA_FAR = 0.3  # fibre fan exponent far from the disc
GAMMA_DECAY_MM = 2.5
FOVEAL_AVASCULAR_MM = 0.3
# radial widths, in disc (BMO) radii, over which layers end at Bruch's-membrane opening
INNER_TAPER_RHO = 0.3
PHOTORECEPTOR_TAPER_RHO = 0.15
RPE_TAPER_RHO = 0.04
VESSEL_COVER_UM = 8.0  # nerve fibre tissue above and below a vessel


@dataclass(frozen=True)
class Layers:
    """Layer thicknesses (um) from the ILM down to Bruch's membrane, and the disc geometry.

    ``rho`` is the elliptical radius normalised to Bruch's-membrane opening (< 1 inside the disc).
    Inside the disc only ``rnfl`` (prelaminar neural tissue) is meaningful; ``cup_elevation_mm`` is
    the height of the ILM above the BMO plane there (negative in the cup).
    """

    rnfl: np.ndarray
    gcl: np.ndarray
    ipl: np.ndarray
    inl: np.ndarray
    opl: np.ndarray
    onl: np.ndarray
    inner_segment: np.ndarray
    ellipsoid: np.ndarray
    outer_segment: np.ndarray
    rpe: np.ndarray
    rho: np.ndarray
    cup_elevation_mm: np.ndarray
    atrophy: np.ndarray  # 0..1, 1 inside peripapillary atrophy
    vessel: np.ndarray  # 0..1 vessel opacity
    vessel_diameter_mm: np.ndarray


def _wrap_deg(a):
    return (a + 180.0) % 360.0 - 180.0


def _bump(angle_deg, centre_deg, sd_deg):
    return np.exp(-0.5 * (_wrap_deg(angle_deg - centre_deg) / sd_deg) ** 2)


def disc_polar(p: EyeParams, x_mm, y_mm):
    """Distance (mm) from the disc centre, angle (deg, 0 towards the fovea, + superior), and
    elliptical radius normalised to the BMO."""
    vx, vy = x_mm - p.disc_dx_mm, y_mm - p.disc_dy_mm
    norm = np.hypot(p.disc_dx_mm, p.disc_dy_mm)
    ux, uy = -p.disc_dx_mm / norm, -p.disc_dy_mm / norm  # unit vector disc -> fovea
    angle = np.degrees(np.arctan2(vx * -uy + vy * ux, vx * ux + vy * uy))
    rho = np.hypot(vx / p.bmo_semi_x_mm, vy / p.bmo_semi_y_mm)
    return np.hypot(vx, vy), angle, rho


def fibre_origin_deg(r_mm, angle_deg):
    """Angle (deg) at which the nerve fibre through each point enters the disc: fibres run radially
    out to the 1.7 mm circle (so the TSNIT profile there is exact), then fan out and arc."""
    gamma = GAMMA_FAR + (1.0 - GAMMA_FAR) * np.exp(-np.maximum(r_mm - TSNIT_RADIUS_MM, 0.0) / GAMMA_DECAY_MM)
    return np.sign(angle_deg) * 180.0 * (np.abs(angle_deg) / 180.0) ** gamma


def tsnit_um(p: EyeParams, origin_deg):
    """Healthy peripapillary RNFL thickness (um) at 1.7 mm for fibres entering at origin_deg."""
    # humps at +-75 deg: T 60, S 119, N 74, I 124 um, mean about 94 um (Cirrus normals: T 64, S 118,
    # N 69, I 123)
    return p.rnfl_scale * (
        56.0
        + 72.0 * _bump(origin_deg, p.hump_superior_deg, 28.0)
        + 77.0 * _bump(origin_deg, p.hump_inferior_deg, 28.0)
        + 18.0 * _bump(origin_deg, 180.0, 40.0)
    )


def axon_loss(p: EyeParams, origin_deg):
    """Fraction (0..1) of the axons entering the disc at origin_deg that are lost."""
    kept = np.full(np.shape(origin_deg), 1.0 - p.diffuse_loss)
    for notch in p.notches:
        kept = kept * (1.0 - notch.depth * _bump(origin_deg, notch.angle_deg, notch.width_deg))
    return 1.0 - kept


def _pit(distance_mm, radius_mm, floor=0.0):
    """1 far from the fovea, ``floor`` at its centre."""
    return floor + (1.0 - floor) * (1.0 - np.exp(-((distance_mm / radius_mm) ** 2.5)))


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def layers(p: EyeParams, x_mm, y_mm, grid_spacing_mm: tuple[float, float]) -> Layers:
    """Layer thicknesses and disc geometry at the given points (arrays on a regular grid).

    ``grid_spacing_mm`` is the (row, column) grid step, used to turn fibre angles into vessel
    distances.
    """
    r, angle, rho = disc_polar(p, x_mm, y_mm)
    origin = fibre_origin_deg(r, angle)
    loss = axon_loss(p, origin)
    foveal = np.hypot(x_mm, y_mm)

    healthy_rnfl = tsnit_um(p, origin) * np.exp(-(r - TSNIT_RADIUS_MM) / p.rnfl_decay_mm)
    rnfl = healthy_rnfl * (1.0 - loss * (1.0 - GLIAL_FLOOR)) * _pit(foveal, 0.55)
    gcl = p.gcl_scale * (14.0 + 38.0 * np.exp(-(((foveal - 1.15) / 0.85) ** 2))) * _pit(foveal, 0.45)
    gcl = gcl * (1.0 - 0.85 * loss)
    ipl = p.gcl_scale * (22.0 + 16.0 * np.exp(-(((foveal - 1.0) / 1.0) ** 2))) * _pit(foveal, 0.4)
    ipl = ipl * (1.0 - 0.4 * loss)
    # in the foveola only the outer nuclear layer and the photoreceptors remain
    inl = (26.0 + 14.0 * np.exp(-(((foveal - 1.0) / 1.1) ** 2))) * _pit(foveal, 0.38)
    opl = (22.0 + 8.0 * np.exp(-(((foveal - 1.0) / 1.2) ** 2))) * _pit(foveal, 0.35)
    onl = 55.0 + 75.0 * np.exp(-((foveal / 0.9) ** 2))
    inner_segment = 22.0 + 10.0 * np.exp(-((foveal / 0.8) ** 2))
    ellipsoid = np.full_like(foveal, 10.0)
    outer_segment = 24.0 + 12.0 * np.exp(-((foveal / 0.8) ** 2))
    rpe = np.full_like(foveal, 22.0)

    # the retina ends at Bruch's-membrane opening (Reis et al. 2012): the inner layers taper into the
    # rim over about 0.3 disc radii, the photoreceptors over 0.15, and the RPE/BM band runs on to the
    # opening itself, whose end point is the BMO
    taper = _smoothstep((rho - 1.0) / INNER_TAPER_RHO)
    atrophy = _atrophy(p, angle, rho)
    gcl, ipl, inl, opl, onl = (t * taper for t in (gcl, ipl, inl, opl, onl))
    rpe = rpe * _smoothstep((rho - 1.0) / RPE_TAPER_RHO) * (1.0 - 0.7 * atrophy)  # in atrophy only BM is left
    photoreceptor_taper = _smoothstep((rho - 1.0) / PHOTORECEPTOR_TAPER_RHO) * (1.0 - 0.7 * atrophy)
    inner_segment, ellipsoid, outer_segment = (
        t * photoreceptor_taper for t in (inner_segment, ellipsoid, outer_segment)
    )

    vessel, diameter = _vessels(p, r, angle, origin, foveal, grid_spacing_mm)
    # vessels run inside the nerve fibre layer; where it is thinner than a vessel, the ILM bulges over it
    rnfl = np.maximum(rnfl, np.where(vessel > 0, 1000.0 * diameter * vessel + VESSEL_COVER_UM, 0.0))
    elevation = _cup_elevation_mm(p, rho, angle, rnfl)
    return Layers(
        rnfl=rnfl,
        gcl=gcl,
        ipl=ipl,
        inl=inl,
        opl=opl,
        onl=onl,
        inner_segment=inner_segment,
        ellipsoid=ellipsoid,
        outer_segment=outer_segment,
        rpe=rpe,
        rho=rho,
        cup_elevation_mm=elevation,
        atrophy=atrophy,
        vessel=vessel,
        vessel_diameter_mm=diameter,
    )


def _cup_elevation_mm(p: EyeParams, rho, angle, rnfl_um):
    """Height (mm) of the ILM above the BMO plane inside the disc: rim tissue falling into the cup."""
    cup_radius = np.full_like(rho, p.cup_ratio)
    if p.cup_notch is not None:
        cup_radius = cup_radius + p.cup_notch.depth * _bump(
            angle, p.cup_notch.angle_deg, p.cup_notch.width_deg
        )
    cup_radius = np.minimum(cup_radius, 0.97)

    def logistic(t):
        return 1.0 / (1.0 + np.exp((t - cup_radius) / p.cup_slope))

    at_centre, at_margin = logistic(0.0), logistic(1.0)
    cup = np.clip((logistic(np.minimum(rho, 1.0)) - at_margin) / (at_centre - at_margin), 0.0, 1.0)
    return (rnfl_um / 1000.0) * (1.0 - cup) - p.cup_depth_mm * cup


def _atrophy(p: EyeParams, angle, rho):
    """Peripapillary atrophy mask (0..1) just outside the BMO."""
    mean_radius = 0.5 * (p.bmo_semi_x_mm + p.bmo_semi_y_mm)
    zone = np.zeros_like(rho)
    for a in p.atrophy:
        off_centre = np.abs(_wrap_deg(angle - a.centre_deg))
        # a zone narrows towards its ends; one that goes all around (180) keeps its width everywhere
        angular = 1.0 if a.half_width_deg >= 180.0 else np.clip(1.0 - off_centre / a.half_width_deg, 0, 1)
        width_rho = a.width_mm * np.sqrt(angular) / mean_radius
        inside = (rho >= 1.0) & (rho < 1.0 + width_rho)
        zone = np.maximum(zone, inside.astype(float))
    return zone


def _vessels(p: EyeParams, r, angle, origin, foveal, spacing_mm):
    """Vessel opacity (0..1) and local vessel diameter (mm) along fibre trajectories."""
    d_origin_dy, d_origin_dx = np.gradient(origin, *spacing_mm)
    # capped: the fibre-angle field is steep along the raphe, where no vessel runs
    deg_per_mm = np.clip(np.hypot(d_origin_dx, d_origin_dy), 1.0, 150.0)
    opacity = np.zeros_like(r)
    diameter = np.zeros_like(r)
    outside_fovea = 1.0 - np.exp(-((foveal / FOVEAL_AVASCULAR_MM) ** 4))
    for v in p.vessels:
        local = v.diameter_mm * (1.0 - 0.5 * np.clip(r / 6.0, 0.0, 1.0))
        distance = np.abs(_wrap_deg(origin - v.origin_deg)) / deg_per_mm
        core = np.sqrt(np.clip(1.0 - (2.0 * distance / local) ** 2, 0.0, 1.0))
        core = core * (r < 7.0) * outside_fovea
        take = core > opacity
        opacity = np.where(take, core, opacity)
        diameter = np.where(take, local, diameter)
    return opacity, diameter
