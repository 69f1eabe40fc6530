"""``python -m benchmarks.frontend_accuracy [--eyes 30] [--shape 32,248,128]``: the front end against
phantom truth.

Eyes cycle through the five classes, five right eyes then five left eyes, at the default wide-field
shape or the one given (n_bscans,depth,n_ascans). Layer errors are outside the optic disc (true and
found); foveola errors within 0.25 mm of the true fovea. Prints markdown tables: the mean and the
worst eye; per class the segmented and true Bruch's-membrane-opening area and ovality (shorter /
longer semi-axis); and the correlation of the disc mask's area error with the cup (which the mask
must not carry).
"""

from __future__ import annotations

import argparse

import numpy as np

import phantom
import sdk
from sdk.maps import geometry

COLUMNS = (
    "ILM px",
    "RNFL_GCL px",
    "IPL_INL px",
    "BM px",
    "disc mm",
    "fovea mm",
    "RNFL map um",
    "GCC map um",
    "foveola IPL_INL px",
)
FOVEOLA_MM = 0.25


def disc_figures(eye, seg) -> tuple[float, float, float, float]:
    """(segmented area mm2, true area mm2, segmented ovality, true ovality) of the BMO."""
    true_axes = eye.truth.bmo_semi_axes_mm
    return (
        seg.disc.area_mm2,
        float(np.pi * true_axes[0] * true_axes[1]),
        min(seg.disc.semi_axes_mm) / max(seg.disc.semi_axes_mm),
        min(true_axes) / max(true_axes),
    )


def eye_errors(eye) -> list[float] | None:
    """Errors of one eye in COLUMNS order and its disc figures, or None if a landmark was not found."""
    maps = sdk.maps.extract(eye.volume)
    seg, truth, lat, spacing = maps.segmentations[0], eye.truth, eye.volume.laterality, eye.volume.spacing_mm
    if seg.disc is None or seg.fovea is None:
        return None
    outside = ~truth.disc_mask & ~seg.disc.mask
    errors = [
        float(np.nanmean(np.abs(seg.surfaces[s] - truth.surfaces_px[s])[outside]))
        for s in sdk.retina.SURFACES
    ]
    errors.append(float(np.hypot(*np.subtract(seg.disc.center_mm, truth.disc_center_mm))))
    errors.append(float(np.hypot(*np.subtract(seg.fovea.center_mm, truth.fovea_center_mm))))
    for found, truth_um, centre, field in (
        (maps.rnfl_thickness, truth.rnfl_thickness_um, seg.disc.center_mm, geometry.RNFL_FIELD_MM),
        (maps.gcc_thickness, truth.gcc_thickness_um, seg.fovea.center_mm, geometry.GCC_FIELD_MM),
    ):
        y, x = geometry.map_positions_mm(centre, field, lat)
        errors.append(float(np.nanmean(np.abs(found - geometry.sample(truth_um, spacing, y, x)))))
    y, x = sdk.retina.en_face_grid_mm(seg.surfaces["ILM"].shape, spacing)
    foveola = np.hypot(y - truth.fovea_center_mm[0], x - truth.fovea_center_mm[1]) < FOVEOLA_MM
    errors.append(float(np.nanmean(np.abs(seg.surfaces["IPL_INL"] - truth.surfaces_px["IPL_INL"])[foveola])))
    return errors, disc_figures(eye, seg)


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not n_bscans,depth,n_ascans (three integers >= 2)")
    return shape


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.frontend_accuracy")
    parser.add_argument("--eyes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--shape", type=_shape, help="n_bscans,depth,n_ascans (default: phantom's)")
    args = parser.parse_args(argv)
    rows, discs, kinds, cups, missing = [], [], [], [], 0
    for i in range(args.eyes):
        kind, laterality = phantom.KINDS[i % 5], ("OD", "OS")[(i // 5) % 2]
        eye = phantom.make_eye(kind, args.seed + i, laterality=laterality, shape=args.shape)
        measured = eye_errors(eye)
        missing += measured is None
        if measured is not None:
            rows.append(measured[0])
            discs.append(measured[1])
            kinds.append(kind)
            cups.append(eye.params.cup_ratio)
    table = np.array(rows)
    print(f"{len(rows)} eyes measured, {missing} with a landmark not found\n")
    print("| | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    print("| mean | " + " | ".join(f"{v:.2f}" for v in table.mean(axis=0)) + " |")
    print("| worst eye | " + " | ".join(f"{v:.2f}" for v in table.max(axis=0)) + " |")
    discs = np.array(discs)
    columns = (
        "eyes",
        "BMO area found / true",
        "worst eye",
        "ovality found",
        "ovality true",
        "worst ovality error",
    )
    print("\n| class | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for kind in phantom.KINDS:
        d = discs[np.array(kinds) == kind]
        ratio, ovality_error = d[:, 0] / d[:, 1], np.abs(d[:, 2] - d[:, 3])
        worst = ratio[np.argmax(np.abs(ratio - 1))]
        print(
            f"| {kind} | {len(d)} | {ratio.mean():.3f} | {worst:.3f} | {d[:, 2].mean():.3f} | "
            f"{d[:, 3].mean():.3f} | {ovality_error.max():.3f} |"
        )
    area_error = discs[:, 0] / discs[:, 1] - 1
    r_cup = float(np.corrcoef(area_error, cups)[0, 1])
    r_true = float(np.corrcoef(discs[:, 1], cups)[0, 1])
    print(f"\ncorrelation with the cup/disc ratio: mask area error r = {r_cup:+.2f}", end="")
    print(f"; true BMO area r = {r_true:+.2f}")


if __name__ == "__main__":
    main()
