"""Look at phantoms: one PNG per class with B-scans (true and segmented surfaces) and the four maps.

    python -m phantom.show --out figures/ [--seed 0] [--protocol wide|exam] [--shape 128 496 512]

For each class (normal, FI, GE, MY, SS) the eye ``make_eye(kind, seed)`` is drawn as one figure:

* a B-scan through the true disc centre and one through the true fovea, with the phantom's true
  surfaces (ILM, RNFL/GCL, IPL/INL, BM) and those found by ``sdk.retina.segment`` overlaid;
* the four maps of ``sdk.maps``: RNFL and GCC thickness (um), and the RNFL and GCC deviation maps
  coded as a vendor's significance map (red p < 1 %, yellow p < 5 %, green otherwise) against a
  normative database fitted on ``--normals`` normal phantoms of other seeds.

``--protocol exam`` makes each eye as a two-cube exam (a 6 x 6 mm disc cube and a 7 x 7 mm macular
cube of the same retina) instead of one 12 x 9 mm wide cube. Existing files are never replaced
unless ``--overwrite`` is given. Needs matplotlib (the ``report`` extra).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np

from phantom.eye import DEFAULT_SHAPE, TRUTH_SURFACES, make_eye
from phantom.params import KINDS
from sdk import maps
from sdk.errors import FileError
from sdk.files import write_atomically
from sdk.maps import GCC_FIELD_MM, RNFL_FIELD_MM, Z_PERCENTILE_1, Z_PERCENTILE_5, Normative

PROTOCOLS = ("wide", "exam")
DEFAULT_NORMALS = 6
NORMAL_SEED_OFFSET = 1  # normative eyes use seeds seed+1 ... seed+n, never the shown eye's seed
RNFL_RANGE_UM = (0.0, 200.0)  # colour scale of the RNFL thickness map
GCC_RANGE_UM = (0.0, 160.0)
BSCAN_ABOVE_MM = 0.15  # B-scans are shown from this far above the highest true surface
BSCAN_BELOW_MM = 0.5  # to this far below the deepest (choroid, lamina cribrosa)
TRUTH_COLOUR = "#00e5ff"
SEGMENTED_COLOUR = "#ff3d00"
SIGNIFICANCE_COLOURS = ("#d62728", "#ffd700", "#2ca02c")  # p < 1 %, p < 5 %, within normal limits
SIGNIFICANCE_LABELS = ("p < 1 %", "p < 5 %", "normal")


def figure_name(kind: str, laterality: str, seed: int) -> str:
    """File name of one class's figure, e.g. ``FI_OD_seed3.png``."""
    return f"{kind}_{laterality}_seed{seed}.png"


def make_eyes(kind, seed, laterality, protocol, shape):
    """The cube(s) of one eye: [wide cube] or [disc cube, macular cube] of the same retina."""
    cubes = ("wide",) if protocol == "wide" else ("disc", "macula")
    return [make_eye(kind, seed, laterality, cube, shape) for cube in cubes]


def extract_maps(eyes, normative: Normative | None) -> maps.Maps:
    """The four maps of one eye's cube(s); ``.segmentations`` holds each cube's segmentation."""
    if len(eyes) == 1:
        return maps.extract(eyes[0].volume, normative)
    disc, macula = eyes
    return maps.extract_exam(disc.volume, macula.volume, normative)


def fit_normative(seed: int, n_normals: int, laterality: str, protocol: str, shape) -> Normative:
    """Normative database from ``n_normals`` normal phantoms with seeds seed+1 ... seed+n_normals."""
    rnfl, gcc = [], []
    for i in range(n_normals):
        eyes = make_eyes("normal", seed + NORMAL_SEED_OFFSET + i, laterality, protocol, shape)
        normal_maps = extract_maps(eyes, None)
        rnfl.append(normal_maps.rnfl_thickness)
        gcc.append(normal_maps.gcc_thickness)
    return Normative.fit(rnfl, gcc)


def significance(z: np.ndarray) -> np.ndarray:
    """Class of each z-score: 0 below the 1st percentile of normals, 1 below the 5th, 2 otherwise;
    NaN stays NaN. (224, 224) float."""
    classes = np.digitize(z, [Z_PERCENTILE_1, Z_PERCENTILE_5]).astype(float)
    classes[~np.isfinite(z)] = np.nan
    return classes


def draw_figure(plt, kind, seed, eyes, eye_maps):
    """One class's figure: B-scans through disc and fovea (top), the four maps (bottom)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    disc_eye, disc_seg = eyes[0], eye_maps.segmentations[0]
    fovea_eye, fovea_seg = eyes[-1], eye_maps.segmentations[-1]
    truth, params = disc_eye.truth, disc_eye.params
    fig = plt.figure(figsize=(17, 9), dpi=100, layout="constrained")
    grid = fig.add_gridspec(2, 4, height_ratios=(1.0, 1.15))
    _bscan(
        fig.add_subplot(grid[0, :2]),
        disc_eye,
        disc_seg,
        truth.disc_center_mm,
        RNFL_FIELD_MM / 2,
        "through the disc",
    )
    _bscan(
        fig.add_subplot(grid[0, 2:]),
        fovea_eye,
        fovea_seg,
        fovea_eye.truth.fovea_center_mm,
        GCC_FIELD_MM / 2,
        "through the fovea",
    )

    thickness = (
        (eye_maps.rnfl_thickness, RNFL_FIELD_MM, "RNFL thickness (um), on the disc", RNFL_RANGE_UM),
        (eye_maps.gcc_thickness, GCC_FIELD_MM, "GCC thickness (um), on the fovea", GCC_RANGE_UM),
    )
    for column, (values, field_mm, title, (lo, hi)) in enumerate(thickness):
        ax = fig.add_subplot(grid[1, column])
        image = _map(ax, values, field_mm, title, plt.get_cmap("turbo"), lo, hi)
        fig.colorbar(image, ax=ax, shrink=0.8, label="um")

    colours = ListedColormap(SIGNIFICANCE_COLOURS)
    norm = BoundaryNorm([-0.5, 0.5, 1.5, 2.5], colours.N)
    deviation = (
        (eye_maps.rnfl_deviation, RNFL_FIELD_MM, "RNFL deviation"),
        (eye_maps.gcc_deviation, GCC_FIELD_MM, "GCC deviation"),
    )
    for column, (z, field_mm, title) in enumerate(deviation, start=2):
        ax = fig.add_subplot(grid[1, column])
        image = _map(ax, significance(z), field_mm, title, colours, norm=norm)
        bar = fig.colorbar(image, ax=ax, shrink=0.8, ticks=[0, 1, 2])
        bar.ax.set_yticklabels(SIGNIFICANCE_LABELS)

    verdict = (
        "gradable" if eye_maps.quality.gradable else "ungradable: " + "; ".join(eye_maps.quality.reasons)
    )
    fig.suptitle(
        f"{kind} {disc_eye.volume.laterality} seed {seed}: severity {params.severity:.2f}, "
        f"cup ratio {params.cup_ratio:.2f}, cup depth {1000 * params.cup_depth_mm:.0f} um, "
        f"disc (BMO) {2 * params.bmo_semi_x_mm:.2f} x {2 * params.bmo_semi_y_mm:.2f} mm (h x v), "
        f"age {params.age_years:.0f}\nsegmentation: {verdict}",
        fontsize=12,
    )
    return fig


def _bscan(ax, eye, seg, centre_mm, half_width_mm, where):
    """The B-scan through en-face point ``centre_mm`` (y, x), shown within ``half_width_mm`` of it, with
    the true (solid) and segmented (dashed) surfaces."""
    volume = eye.volume
    s_y, s_z, s_x = volume.spacing_mm
    n_b, depth, n_a = volume.shape
    row = int(np.clip(centre_mm[0] / s_y, 0, n_b - 1))
    ax.imshow(
        volume.data[row],
        cmap="gray",
        vmin=0,
        vmax=255,
        aspect="auto",
        extent=(0.0, n_a * s_x, depth * s_z, 0.0),
        interpolation="nearest",
    )
    x_mm = (np.arange(n_a) + 0.5) * s_x
    for name in TRUTH_SURFACES:
        ax.plot(
            x_mm,
            eye.truth.surfaces_px[name][row] * s_z,
            color=TRUTH_COLOUR,
            lw=1.0,
            label="truth" if name == TRUTH_SURFACES[0] else None,
        )
        ax.plot(
            x_mm,
            seg.surfaces[name][row] * s_z,
            color=SEGMENTED_COLOUR,
            lw=1.0,
            ls="--",
            label="sdk.retina.segment" if name == TRUTH_SURFACES[0] else None,
        )
    window = np.abs(x_mm - centre_mm[1]) <= half_width_mm
    surfaces_mm = np.array([eye.truth.surfaces_px[name][row][window] for name in TRUTH_SURFACES]) * s_z
    ax.set_xlim(centre_mm[1] - half_width_mm, centre_mm[1] + half_width_mm)
    ax.set_ylim(
        min(np.nanmax(surfaces_mm) + BSCAN_BELOW_MM, depth * s_z),
        max(np.nanmin(surfaces_mm) - BSCAN_ABOVE_MM, 0),
    )
    ax.set_title(f"{volume.protocol} cube, B-scan {row} of {n_b}, {where}: ILM, RNFL/GCL, IPL/INL, BM")
    ax.set_xlabel("mm along the B-scan")
    ax.set_ylabel("depth (mm)")
    ax.legend(loc="lower right", fontsize=8)


def _map(ax, values, field_mm, title, cmap, vmin=None, vmax=None, norm=None):
    """A map in OD orientation (row 0 superior, column 0 temporal), in mm about its centre."""
    half = field_mm / 2
    cmap = cmap.with_extremes(bad="#d0d0d0")
    image = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        norm=norm,
        extent=(-half, half, half, -half),
        interpolation="nearest",
    )
    ax.set_title(title)
    ax.set_xlabel("temporal <- mm -> nasal")
    ax.set_ylabel("superior <- mm -> inferior")
    return image


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit(
            "phantom.show draws with matplotlib, which is not installed: pip install 'octclassify[report]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phantom.show", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs (made if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shown eyes (default 0)")
    parser.add_argument("--laterality", default="OD", choices=("OD", "OS"))
    parser.add_argument(
        "--protocol",
        default="wide",
        choices=PROTOCOLS,
        help="wide: one 12 x 9 mm cube; exam: a disc cube and a macular cube",
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("NB", "DEPTH", "NA"),
        default=DEFAULT_SHAPE,
        help="samples per cube (n_bscans, depth, n_ascans), default %(default)s",
    )
    parser.add_argument(
        "--normals",
        type=int,
        default=DEFAULT_NORMALS,
        help="normal eyes in the normative database (default %(default)s, at least 2)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing PNGs")
    args = parser.parse_args(argv)
    if args.normals < 2:
        parser.error("--normals must be at least 2")

    paths = [args.out / figure_name(kind, args.laterality, args.seed) for kind in KINDS]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not args.overwrite:
        print(f"not overwriting {', '.join(existing)}: pass --overwrite to replace", file=sys.stderr)
        return 1
    plt = _pyplot()
    args.out.mkdir(parents=True, exist_ok=True)
    normative = fit_normative(args.seed, args.normals, args.laterality, args.protocol, args.shape)
    for kind, path in zip(KINDS, paths, strict=True):
        eyes = make_eyes(kind, args.seed, args.laterality, args.protocol, args.shape)
        fig = draw_figure(plt, kind, args.seed, eyes, extract_maps(eyes, normative))
        try:
            write_atomically(path, partial(fig.savefig, format="png"), overwrite=args.overwrite)
        except FileError as error:
            print(error, file=sys.stderr)
            return 1
        finally:
            plt.close(fig)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
