"""Parameters of one synthetic eye, and how they are drawn for each class.

Every quantity carries its unit in its name. Angles around the disc are in degrees in OD (right-eye)
orientation, measured from the disc towards the fovea (0 = temporal), positive superior: 90 =
superior, 180 = nasal, -90 = inferior.

The class phenotypes follow the published descriptions of Nicolela's optic-disc types (see
docs/PHANTOM.md and ../shared/reference/method-paper.md section 5): FI focal polar notch with a wedge
defect, GE large round deep cup with diffuse loss, MY tilted oval disc with a temporal crescent,
SS shallow saucerised cup with atrophy all around and diffuse loss in older eyes. Distributions
overlap on purpose (severity, disc size, partial phenotypes), so the types are not trivially
separable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("normal", "FI", "GE", "MY", "SS")
GLAUCOMA_KINDS = KINDS[1:]
# frames averaged per B-scan: most raster cubes are single frames (Topcon 3D OCT, the paper's device),
# some are averaged as a Spectralis does (docs/PHANTOM.md, appearance against real B-scans)
SPECKLE_LOOKS = (1, 2, 4, 8)
SPECKLE_LOOKS_P = (0.55, 0.15, 0.15, 0.15)


@dataclass(frozen=True)
class Notch:
    """A focal loss of nerve fibres entering the disc around one angle."""

    angle_deg: float
    width_deg: float  # Gaussian sd of the damage profile over disc angle
    depth: float  # fraction of axons lost at the centre (0..1)


@dataclass(frozen=True)
class Atrophy:
    """Peripapillary atrophy: a zone outside Bruch's-membrane opening without RPE."""

    centre_deg: float
    half_width_deg: float  # 180 = all around the disc
    width_mm: float  # radial width at its centre


@dataclass(frozen=True)
class Vessel:
    """A retinal vessel leaving the disc along the nerve-fibre trajectory that starts at origin_deg."""

    origin_deg: float
    diameter_mm: float


@dataclass(frozen=True)
class EyeParams:
    """Everything that determines one phantom eye (anatomy, disease, scan conditions)."""

    kind: str
    severity: float  # 0 for normal eyes, 0.15..1 for glaucoma
    age_years: float
    # geometry, OD orientation, fovea at the origin, +x nasal, +y inferior
    disc_dx_mm: float
    disc_dy_mm: float
    bmo_semi_x_mm: float  # horizontal semi-axis of Bruch's-membrane opening
    bmo_semi_y_mm: float
    disc_tilt_mm: float  # depth difference temporal vs nasal BMO edge (myopic tilt), + = temporal deeper
    cup_ratio: float  # cup radius / BMO radius
    cup_depth_mm: float
    cup_slope: float  # width of the cup wall in BMO radii (small = steep, large = saucerised)
    cup_notch: Notch | None  # where the cup extends into the rim (FI)
    lamina_depth_mm: float
    # nerve fibre layer
    rnfl_scale: float
    hump_superior_deg: float
    hump_inferior_deg: float
    rnfl_decay_mm: float
    diffuse_loss: float  # fraction of axons lost everywhere
    notches: tuple[Notch, ...]
    atrophy: tuple[Atrophy, ...]
    vessels: tuple[Vessel, ...]
    # other layers
    gcl_scale: float
    choroid_um: float
    # scan conditions
    scan_offset_mm: tuple[float, float]  # (y, x) offset of the scan centre
    tilt_mm_per_mm: tuple[float, float]  # (y, x) slope of the retina in the scan window
    curvature_per_mm: float  # bowl curvature of the retina in the B-scans
    retina_depth_mm: float  # depth of Bruch's membrane at the scan centre below the window top
    axial_motion_px: float  # sd of the per-B-scan axial random walk
    lateral_jitter_mm: float  # sd of per-B-scan lateral offsets
    signal_db: float  # signal of unit reflectivity (the nerve fibre layer) above the noise floor
    blink_bscans: tuple[int, ...] = field(default=())  # B-scans without signal
    speckle_looks: int = 1  # frames averaged per B-scan (Topcon cubes 1; Spectralis averages several)


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _n(rng, mean, sd, lo=-np.inf, hi=np.inf):
    return float(np.clip(rng.normal(mean, sd), lo, hi))


def draw_params(
    kind: str, rng: np.random.Generator, *, severity: float | None = None, age_years: float | None = None
) -> EyeParams:
    """Draw the parameters of one eye of class ``kind`` (normal, FI, GE, MY, SS)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is unknown: use one of {', '.join(KINDS)}")
    draw = _DRAWERS[kind]
    drawn_severity = float(rng.beta(2.0, 2.2)) * 0.85 + 0.15  # always drawn: an override keeps the anatomy
    sev = 0.0 if kind == "normal" else (severity if severity is not None else drawn_severity)
    age = age_years if age_years is not None else _AGE[kind](rng)
    return draw(rng, sev, age)


_AGE = {
    "normal": lambda rng: _u(rng, 30, 80),
    "FI": lambda rng: _n(rng, 64, 9, 40, 88),
    "GE": lambda rng: _n(rng, 58, 10, 35, 85),
    "MY": lambda rng: _n(rng, 52, 9, 30, 78),
    "SS": lambda rng: _n(rng, 74, 7, 58, 92),
}


def _base(rng, kind, severity, age, **overrides) -> EyeParams:
    """Parameters of a healthy eye of that age; ``overrides`` replace fields for a phenotype."""
    bmo = _n(rng, 0.88, 0.08, 0.68, 1.1)
    ovality = _n(rng, 1.07, 0.04, 0.98, 1.2)
    values = dict(
        kind=kind,
        severity=severity,
        age_years=age,
        disc_dx_mm=_n(rng, 4.4, 0.25, 3.8, 5.1),
        disc_dy_mm=_n(rng, -0.35, 0.2, -0.9, 0.15),
        bmo_semi_x_mm=bmo / np.sqrt(ovality),
        bmo_semi_y_mm=bmo * np.sqrt(ovality),
        disc_tilt_mm=_n(rng, 0.0, 0.02),
        cup_ratio=_n(rng, 0.38, 0.1, 0.1, 0.62),
        cup_depth_mm=_n(rng, 0.25, 0.08, 0.08, 0.45),
        cup_slope=_n(rng, 0.12, 0.03, 0.06, 0.2),
        cup_notch=None,
        lamina_depth_mm=_n(rng, 0.38, 0.06, 0.22, 0.55),
        rnfl_scale=_n(rng, 1.0, 0.08, 0.8, 1.2) * (1 - 0.0025 * (age - 40)),
        **_humps(rng, 75.0),
        rnfl_decay_mm=_n(rng, 3.0, 0.25, 2.4, 3.6),
        diffuse_loss=0.0,
        notches=(),
        atrophy=_draw_normal_atrophy(rng, age),
        vessels=_draw_vessels(rng),
        gcl_scale=_n(rng, 1.0, 0.07, 0.8, 1.2) * (1 - 0.002 * (age - 40)),
        choroid_um=_n(rng, 280, 50, 150, 400) - 1.5 * (age - 40),
        scan_offset_mm=(_n(rng, 0, 0.12), _n(rng, 0, 0.12)),
        tilt_mm_per_mm=(_n(rng, 0, 0.012), _n(rng, 0, 0.012)),
        curvature_per_mm=_n(rng, 0.004, 0.0015, 0.0, 0.009),
        retina_depth_mm=_n(rng, 0.8, 0.04, 0.7, 0.9),
        axial_motion_px=_u(rng, 0.3, 1.2),
        lateral_jitter_mm=_u(rng, 0.0, 0.008),
        signal_db=_n(rng, 33, 2.5, 27, 40),
        speckle_looks=int(rng.choice(SPECKLE_LOOKS, p=SPECKLE_LOOKS_P)),
    )
    values.update(overrides)
    return EyeParams(**values)


def _humps(rng, mean_deg: float) -> dict:
    """Angles of the superior and inferior RNFL humps: mirror images, each with a little play."""
    common = _n(rng, mean_deg, 6)
    return {"hump_superior_deg": common + _n(rng, 0, 3), "hump_inferior_deg": -common + _n(rng, 0, 3)}


def _draw_normal_atrophy(rng, age) -> tuple[Atrophy, ...]:
    """Small temporal alpha/beta-zone atrophy is common in healthy eyes, more so with age."""
    if rng.random() < 0.15 + 0.004 * (age - 30):
        return (Atrophy(_n(rng, 0, 15), _u(rng, 20, 50), _u(rng, 0.05, 0.2)),)
    return ()


def _draw_vessels(rng) -> tuple[Vessel, ...]:
    """An artery and a vein in each arcade along the arcuate bundles, nasal vessels and thin branches:
    about 2 mm of vessel diameter on a peripapillary circle, whose shadows cover the share of A-scans
    seen on real circle scans (docs/PHANTOM.md)."""
    arcades = [Vessel(s * _n(rng, 55, 10), _u(rng, 0.08, 0.14)) for s in (1, -1) for _ in range(4)]
    nasal = [Vessel(s * _n(rng, 140, 15), _u(rng, 0.06, 0.1)) for s in (1, -1) for _ in range(2)]
    # branches avoid the papillomacular bundle, as real vessels do
    branches = [
        Vessel(float(rng.choice([-1, 1])) * _u(rng, 25, 180), _u(rng, 0.04, 0.07))
        for _ in range(int(rng.integers(6, 12)))
    ]
    return tuple(arcades + nasal + branches)


def _polar(rng) -> float:
    """Angle of a polar lesion: inferotemporal in 65% of eyes, else superotemporal (degrees)."""
    sign = -1.0 if rng.random() < 0.65 else 1.0
    return sign * _n(rng, 72, 12, 40, 110)


def _draw_normal(rng, severity, age) -> EyeParams:
    return _base(rng, "normal", severity, age, diffuse_loss=_u(rng, 0.0, 0.06))


def _draw_fi(rng, s, age) -> EyeParams:
    angle = _polar(rng)
    notches = [Notch(angle, _u(rng, 9, 20), min(0.95, _u(rng, 0.5, 1.0) * (0.45 + 0.55 * s)))]
    if rng.random() < 0.3:  # a smaller notch at the other pole
        notches.append(Notch(-np.sign(angle) * _n(rng, 72, 12), _u(rng, 8, 16), _u(rng, 0.2, 0.5) * s))
    atrophy = (Atrophy(angle, _u(rng, 15, 35), _u(rng, 0.1, 0.35)),) if rng.random() < 0.7 else ()
    return _base(
        rng,
        "FI",
        s,
        age,
        cup_ratio=_n(rng, 0.5, 0.08, 0.3, 0.7),
        cup_depth_mm=_n(rng, 0.3, 0.08, 0.12, 0.5),
        cup_notch=Notch(angle, _u(rng, 15, 30), _u(rng, 0.15, 0.35) * (0.5 + s)),
        diffuse_loss=_u(rng, 0.0, 0.18) * s,
        notches=tuple(notches),
        atrophy=atrophy,
    )


def _draw_ge(rng, s, age) -> EyeParams:
    asym = [Notch(a, _u(rng, 25, 45), _u(rng, 0.0, 0.15) * s) for a in (72, -72)]
    atrophy = (Atrophy(0.0, _u(rng, 30, 90), _u(rng, 0.05, 0.2)),) if rng.random() < 0.2 else ()
    return _base(
        rng,
        "GE",
        s,
        age,
        cup_ratio=_n(rng, 0.62 + 0.2 * s, 0.06, 0.5, 0.9),
        cup_depth_mm=_n(rng, 0.4 + 0.15 * s, 0.07, 0.25, 0.65),
        cup_slope=_n(rng, 0.08, 0.02, 0.04, 0.14),
        lamina_depth_mm=_n(rng, 0.5, 0.06, 0.35, 0.65),
        diffuse_loss=_u(rng, 0.2, 0.55) * (0.4 + 0.6 * s),
        notches=tuple(asym),
        atrophy=atrophy,
    )


def _draw_my(rng, s, age) -> EyeParams:
    bmo = _n(rng, 0.95, 0.1, 0.72, 1.2)
    ovality = _n(rng, 1.35, 0.12, 1.05, 1.7)  # vertical / horizontal: tilted, horizontally foreshortened
    shift = _u(rng, 8, 25)  # bundles shifted temporally
    atrophy = (Atrophy(_n(rng, 0, 10), _u(rng, 45, 85), _u(rng, 0.2, 0.8)),) if rng.random() < 0.9 else ()
    polar = [
        Notch(a, _u(rng, 20, 35), _u(rng, 0.2, 0.6) * s)
        for a in (_n(rng, 65, 10), _n(rng, -65, 10))
        if rng.random() < 0.75
    ]
    return _base(
        rng,
        "MY",
        s,
        age,
        disc_dx_mm=_n(rng, 4.75, 0.25, 4.1, 5.4),
        bmo_semi_x_mm=bmo / np.sqrt(ovality),
        bmo_semi_y_mm=bmo * np.sqrt(ovality),
        disc_tilt_mm=_u(rng, 0.05, 0.2),
        cup_ratio=_n(rng, 0.55, 0.1, 0.3, 0.8),
        cup_depth_mm=_n(rng, 0.22, 0.07, 0.08, 0.4),
        rnfl_scale=_n(rng, 0.9, 0.06, 0.75, 1.05),
        **_humps(rng, 75.0 - shift),
        diffuse_loss=_u(rng, 0.0, 0.2) * s,
        notches=tuple(polar),
        atrophy=atrophy,
        choroid_um=_n(rng, 170, 40, 80, 260),
    )


def _draw_ss(rng, s, age) -> EyeParams:
    atrophy = (Atrophy(0.0, 180.0, _u(rng, 0.12, 0.45)),) if rng.random() < 0.85 else ()
    return _base(
        rng,
        "SS",
        s,
        age,
        cup_ratio=_n(rng, 0.6 + 0.12 * s, 0.08, 0.4, 0.85),
        cup_depth_mm=_n(rng, 0.14, 0.04, 0.05, 0.25),
        cup_slope=_n(rng, 0.24, 0.05, 0.14, 0.35),
        lamina_depth_mm=_n(rng, 0.3, 0.05, 0.18, 0.42),
        diffuse_loss=_u(rng, 0.15, 0.45) * (0.4 + 0.6 * s),
        notches=tuple(Notch(a, _u(rng, 25, 45), _u(rng, 0.0, 0.2) * s) for a in (72, -72)),
        atrophy=atrophy,
        choroid_um=_n(rng, 150, 35, 70, 240),
    )


_DRAWERS = {"normal": _draw_normal, "FI": _draw_fi, "GE": _draw_ge, "MY": _draw_my, "SS": _draw_ss}
