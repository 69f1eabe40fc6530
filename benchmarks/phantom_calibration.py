"""``python -m benchmarks.phantom_calibration [--figure out.png]``: the phantom against real B-scans.

The same statistics are measured on the real Heidelberg Spectralis circle scans of ../shared/real-oct/
(with the device's own ILM, outer RNFL and BM) and on phantom eyes sampled along the same kind of
3.5 mm peripapillary circle (with the phantom's true surfaces), all in dB relative to the vitreous
median (Heidelberg stores linear reflectance; the phantom's 8-bit display is a known dB window):

- vitreous spread: 84th percentile minus median of the vitreous, dB;
- RNFL, ONL, RPE, choroid: levels of those layers (ONL: the darkest 16 um window between the RNFL
  and BM - 60 um; RPE: the brightest 16 um window in the 25 um above BM), dB above the vitreous;
- speckle: spread of the RNFL's dB values around a 5 x 5 local mean;
- shadows: per A-scan outer-retina level minus its 31-A-scan median: the 5th percentile (dB) and
  the share of A-scans more than 3 dB below it.

Prints a markdown table (docs/PHANTOM.md, "Appearance against real B-scans" quotes it).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.ndimage import median_filter, uniform_filter, uniform_filter1d

import phantom
from phantom import render
from tests import real_oct

CIRCLE_RADIUS_MM = 1.75  # the 3.5 mm circle of a peripapillary RNFL scan
CIRCLE_ASCANS = 768  # as the Spectralis circle scans
PHANTOM_EYES = (("normal", 3), ("normal", 4), ("FI", 3), ("FI", 4), ("GE", 3), ("GE", 4))
COLUMNS = ("vitreous spread", "RNFL", "ONL", "RPE", "choroid", "speckle", "shadow p5", "shadowed")


def statistics(db: np.ndarray, ilm, rnfl, bm, axial_mm: float) -> list[float]:
    """COLUMNS of one B-scan ``db`` (depth, n_ascans) in dB with surfaces (n_ascans,) in edge px."""
    depth, n = db.shape

    def px(um):
        return um / (axial_mm * 1000)

    z = np.arange(depth)[:, None] + 0.5
    ok = np.isfinite(ilm) & np.isfinite(bm) & ((bm - ilm) > px(150))
    vitreous = db[(z < ilm[None] - px(60)) & (z > 5) & ok[None]]
    base = np.median(vitreous)
    thick = ok & np.isfinite(rnfl) & ((rnfl - ilm) > px(30))
    in_rnfl = (z > ilm[None] + px(8)) & (z < rnfl[None] - px(8)) & thick[None]
    smooth = uniform_filter1d(db, max(1, int(px(16))), axis=0)
    onl, rpe, outer = (np.full(n, np.nan) for _ in range(3))
    for a in np.flatnonzero(ok & np.isfinite(rnfl)):
        lo, hi = int(rnfl[a] + px(40)), int(bm[a] - px(60))
        if hi > lo + 2:
            onl[a] = smooth[lo:hi, a].min()
        rpe[a] = smooth[int(bm[a] - px(25)) : int(bm[a]), a].max()
        outer[a] = db[int(bm[a] - px(60)) : int(bm[a]), a].mean()
    choroid = db[(z > bm[None] + px(20)) & (z < bm[None] + px(100)) & ok[None]]
    dips = outer - median_filter(np.nan_to_num(outer, nan=np.nanmedian(outer)), 31)
    return [
        float(np.percentile(vitreous, 84) - base),
        float(np.median(db[in_rnfl]) - base),
        float(np.nanmedian(onl) - base),
        float(np.nanmedian(rpe) - base),
        float(np.median(choroid) - base),
        float(np.std((db - uniform_filter(db, 5))[in_rnfl])),
        float(np.nanpercentile(dips, 5)),
        float(np.nanmean(dips < -3)),
    ]


def phantom_circle(eye):
    """The phantom volume and its true surfaces sampled along a circle around the true disc centre
    (nearest A-scan): (depth, CIRCLE_ASCANS) grey levels and the surfaces at those A-scans."""
    truth, volume, spacing = eye.truth, eye.volume, eye.volume.spacing_mm
    angle = np.linspace(0, 2 * np.pi, CIRCLE_ASCANS, endpoint=False)
    y = truth.disc_center_mm[0] + CIRCLE_RADIUS_MM * np.sin(angle)
    x = truth.disc_center_mm[1] + CIRCLE_RADIUS_MM * np.cos(angle)
    b = np.clip((y / spacing[0]).astype(int), 0, volume.shape[0] - 1)
    a = np.clip((x / spacing[2]).astype(int), 0, volume.shape[2] - 1)
    return volume.data[b, :, a].T, {k: truth.surfaces_px[k][b, a] for k in ("ILM", "RNFL_GCL", "BM")}


def grey_to_db(grey: np.ndarray) -> np.ndarray:
    low, high = render.DISPLAY_DB
    return low + grey.astype(np.float64) * ((high - low) / 255.0)


def measure() -> tuple[list, list]:
    real = []
    for name in real_oct.FIXTURES:
        fixture = real_oct.load(name)
        if fixture.bscan.dtype == np.uint8:
            continue  # Topcon's 8-bit display has no known dB scale
        db = 10.0 * np.log10(np.maximum(fixture.bscan, 1e-7))
        b = fixture.boundaries_px
        real.append((name, statistics(db, b["ILM"], b["RNFL_GCL"], b["BM"], fixture.axial_mm)))
    synthetic = []
    for kind, seed in PHANTOM_EYES:
        eye = phantom.make_eye(kind, seed)
        grey, s = phantom_circle(eye)
        looks = eye.params.speckle_looks
        stats = statistics(grey_to_db(grey), s["ILM"], s["RNFL_GCL"], s["BM"], eye.volume.spacing_mm[1])
        synthetic.append((f"phantom {kind} seed {seed} ({looks} look{'s' * (looks > 1)})", stats))
    return real, synthetic


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.phantom_calibration")
    parser.add_argument("--figure", help="write a PNG: real circle scans beside phantom circles")
    args = parser.parse_args(argv)
    if not real_oct.available():
        raise SystemExit("../shared/real-oct/ is not present")
    real, synthetic = measure()
    print("| B-scan | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, stats in real + synthetic:
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in stats) + " |")
    if args.figure:
        _figure(args.figure)


def _figure(path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(16, 8))
    for ax, name in zip(axes[:, 0], real_oct.FIXTURES[:2], strict=True):
        fixture = real_oct.load(name)
        db = 10.0 * np.log10(np.maximum(fixture.bscan, 1e-7))
        ax.imshow(db, cmap="gray", vmin=np.percentile(db, 40), vmax=np.percentile(db, 99.8), aspect="auto")
        ax.set_title(f"real: {name}")
    for ax, (kind, seed) in zip(axes[:, 1], PHANTOM_EYES[:2], strict=True):
        grey, _ = phantom_circle(phantom.make_eye(kind, seed))
        ax.imshow(grey, cmap="gray", aspect="auto")
        ax.set_title(f"phantom {kind} seed {seed}, 3.5 mm circle")
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.savefig(path, dpi=60, bbox_inches="tight")


if __name__ == "__main__":
    main()
