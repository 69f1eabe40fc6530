"""``python -m benchmarks.real_oct_accuracy [--bscans N] [--seed S]``: the front end on real B-scans.

Each fixture of ../shared/real-oct/ (tests/real_oct.py reads it with the device's own boundaries)
is repeated with independent noise into a cube and segmented; our ILM, Bruch's membrane and outer
RNFL are compared with the device's on the A-scans where the device found the ILM with vitreous
above it. Prints the markdown table the README quotes ("Front end on real B-scans"): mean absolute
error in px (and the ILM's 95th percentile and bias), each marked where it misses the target that
tests/test_real_oct.py checks, and the quality gate's verdict.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from tests import real_oct

TARGETS_PX = real_oct.TARGETS_PX


def row(fixture: real_oct.RealBscan, seg, errors: dict[str, np.ndarray]) -> str:
    """One markdown table row of a fixture measured by :func:`tests.real_oct.errors` (its triple:
    the fixture, our segmentation of its cube, our boundaries minus the device's in px)."""

    def mean(surface):
        if surface not in errors:
            return "-"
        value = float(np.abs(errors[surface]).mean())
        return f"{value:.2f}" + (" (not met)" if value > TARGETS_PX[surface] else "")

    ilm = errors["ILM"]
    p95 = float(np.percentile(np.abs(ilm), 95))
    ilm_cell = f"{mean('ILM')} / {p95:.2f}" + (" (not met)" if p95 > TARGETS_PX["ILM p95"] else "")
    quality = "gradable" if seg.quality.gradable else "ungradable: " + "; ".join(seg.quality.reasons)
    cells = [
        fixture.name,
        f"{fixture.comparable().mean():.0%}",
        f"{ilm_cell} ({float(ilm.mean()):+.2f})",
        mean("BM"),
        mean("RNFL_GCL"),
        quality,
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_oct_accuracy", description=__doc__)
    parser.add_argument("--bscans", type=int, default=16, help="noisy repeats of each B-scan (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the repeats' noise (default 0)")
    args = parser.parse_args(argv)
    if not real_oct.available():
        print(f"error: the real B-scans are not in {real_oct.REAL_OCT}", file=sys.stderr)
        return 2
    header = (
        "fixture",
        "A-scans compared",
        "ILM mean / p95 (bias)",
        "Bruch's membrane",
        "outer RNFL",
        "quality gate",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for name in real_oct.FIXTURES:
        print(row(*real_oct.errors(name, args.bscans, args.seed)), flush=True)
    t = TARGETS_PX
    print(f"| target | | {t['ILM']} / {t['ILM p95']} | {t['BM']} | {t['RNFL_GCL']} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
