"""``python -m benchmarks.frontend_accuracy [--eyes 30]``: the front end against phantom truth.

Eyes cycle through the five classes, five right eyes then five left eyes, at the default wide-field
shape. Errors are outside the optic disc (true and found). Prints a markdown table of the mean and
the worst eye.
"""

from __future__ import annotations

import argparse

import numpy as np

import phantom
import sdk
from sdk.maps import geometry

COLUMNS = ("ILM px", "RNFL_GCL px", "IPL_INL px", "BM px", "disc mm", "fovea mm", "RNFL map um", "GCC map um")


def eye_errors(eye) -> list[float] | None:
    """Errors of one eye in COLUMNS order, or None if a landmark was not found."""
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
    return errors


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.frontend_accuracy")
    parser.add_argument("--eyes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args(argv)
    rows, missing = [], 0
    for i in range(args.eyes):
        kind, laterality = phantom.KINDS[i % 5], ("OD", "OS")[(i // 5) % 2]
        errors = eye_errors(phantom.make_eye(kind, args.seed + i, laterality=laterality))
        missing += errors is None
        if errors is not None:
            rows.append(errors)
    table = np.array(rows)
    print(f"{len(rows)} eyes measured, {missing} with a landmark not found\n")
    print("| | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    print("| mean | " + " | ".join(f"{v:.2f}" for v in table.mean(axis=0)) + " |")
    print("| worst eye | " + " | ".join(f"{v:.2f}" for v in table.max(axis=0)) + " |")


if __name__ == "__main__":
    main()
