"""One-page PNG report a clinician can read: maps, a B-scan through the disc, the answer and its source.

Needs matplotlib (the ``report`` extra), imported only here.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import cast

import numpy as np

from sdk.diagnosis import Diagnosis
from sdk.errors import OCTError
from sdk.files import check_writable, write_atomically
from sdk.labels import CLASS_DESCRIPTIONS, CLASSES
from sdk.maps import GCC_FIELD_MM, RNFL_FIELD_MM, Z_PERCENTILE_1, Z_PERCENTILE_5
from sdk.volume import OCTVolume

SURFACE_COLOURS = {"ILM": "#e41a1c", "RNFL_GCL": "#ffd92f", "IPL_INL": "#4daf4a", "BM": "#00bfff"}
NORMATIVE_COLOURS = ("#d7191c", "#fdae61", "#1a9641")  # < 1st, < 5th percentile, within normal
THICKNESS_RANGE_UM = {"rnfl": (0.0, 200.0), "gcc": (0.0, 150.0)}


def write_report(volume: OCTVolume, diagnosis: Diagnosis, path, *, overwrite: bool = False) -> Path:
    """Render the report of ``diagnosis`` (made from ``volume``) to a PNG file at ``path``.

    Written with :func:`sdk.files.write_atomically`: an exclusive temporary file in the target
    folder, never through a symbolic link, an existing file replaced only with ``overwrite``.
    Raises FileError naming ``path`` and the problem; nothing is left behind on failure. OCTError
    if matplotlib is missing or ``diagnosis`` carries no maps.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import BoundaryNorm, ListedColormap
    except ImportError:
        raise OCTError("reports need matplotlib: pip install 'octclassify[report]'") from None
    path = check_writable(path, overwrite=overwrite)  # before the drawing: a bad path fails at once
    maps = diagnosis.maps
    if maps is None:
        raise OCTError("a report needs the diagnosis's maps: pass the Diagnosis that classify returned")
    fig = plt.figure(figsize=(16, 10))
    grid = fig.add_gridspec(3, 4, height_ratios=(1.0, 0.8, 0.9), hspace=0.45, wspace=0.3)
    if diagnosis.gradable:
        # a gradable diagnosis has a label and probabilities
        label, probabilities = cast(str, diagnosis.label), cast(dict[str, float], diagnosis.probabilities)
        verdict = f"{label}: {CLASS_DESCRIPTIONS[label]} (p = {probabilities[label]:.2f})"
    else:
        verdict = "UNGRADABLE: no class given"
    title = f"{diagnosis.laterality} - {verdict}"
    fig.suptitle(title, fontsize=16, fontweight="bold", color="black" if diagnosis.gradable else "#b2182b")

    deviation_cmap = ListedColormap(NORMATIVE_COLOURS)
    deviation_norm = BoundaryNorm([-10.0, Z_PERCENTILE_1, Z_PERCENTILE_5, 10.0], 3)
    panels = (
        ("RNFL thickness (um)", maps.rnfl_thickness, "rnfl", RNFL_FIELD_MM),
        ("GCC thickness (um)", maps.gcc_thickness, "gcc", GCC_FIELD_MM),
        ("RNFL vs normal eyes", maps.rnfl_deviation, None, RNFL_FIELD_MM),
        ("GCC vs normal eyes", maps.gcc_deviation, None, GCC_FIELD_MM),
    )
    for i, (name, values, kind, field_mm) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        extent = (-field_mm / 2, field_mm / 2, field_mm / 2, -field_mm / 2)
        if values is None or not np.isfinite(values).any():
            ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes)
        elif kind is not None:
            image = ax.imshow(
                values,
                cmap="turbo",
                vmin=THICKNESS_RANGE_UM[kind][0],
                vmax=THICKNESS_RANGE_UM[kind][1],
                extent=extent,
            )
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        else:
            image = ax.imshow(
                np.clip(values, -9.0, 9.0), cmap=deviation_cmap, norm=deviation_norm, extent=extent
            )
            bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, ticks=(-6.0, -2.0, 4.0))
            bar.ax.set_yticklabels(["<1%", "<5%", "normal"])
        ax.set_title(name)
        ax.set_xlabel("temporal  <- mm ->  nasal", fontsize=8)
        ax.tick_params(labelsize=7)

    _bscan_panel(fig.add_subplot(grid[1, :]), volume, maps.segmentations[0])
    _probability_panel(fig.add_subplot(grid[2, :2]), diagnosis)
    _text_panel(fig.add_subplot(grid[2, 2:]), diagnosis)
    try:
        return write_atomically(path, partial(fig.savefig, format="png", dpi=90), overwrite=overwrite)
    finally:
        plt.close(fig)


def _bscan_panel(ax, volume: OCTVolume, seg) -> None:
    """The B-scan through the disc centre (or the middle one) with the segmented surfaces."""
    b = volume.shape[0] // 2
    if seg.disc is not None:
        b = int(np.clip(seg.disc.center_mm[0] / volume.spacing_mm[0], 0, volume.shape[0] - 1))
    image = np.asarray(volume.data[b], dtype=np.float32)
    extent_x, depth_mm = volume.shape[2] * volume.spacing_mm[2], volume.shape[1] * volume.spacing_mm[1]
    ax.imshow(
        image,
        cmap="gray",
        aspect="auto",
        extent=(0, extent_x, depth_mm, 0),
        vmin=np.percentile(image, 1),
        vmax=np.percentile(image, 99.7),
    )
    x_mm = (np.arange(volume.shape[2]) + 0.5) * volume.spacing_mm[2]
    for name, colour in SURFACE_COLOURS.items():
        ax.plot(x_mm, seg.surfaces[name][b] * volume.spacing_mm[1], color=colour, lw=1.0, label=name)
    ax.legend(loc="lower right", fontsize=8, ncol=4)
    ax.set_title(f"B-scan {b} of {volume.shape[0]} (through the optic disc) with the segmented boundaries")
    ax.set_xlabel("mm")
    ax.set_ylabel("depth (mm)")


def _probability_panel(ax, diagnosis: Diagnosis) -> None:
    if not diagnosis.gradable:
        ax.axis("off")
        ax.text(0, 0.9, "Not graded. Reasons:", fontsize=12, fontweight="bold", transform=ax.transAxes)
        for i, reason in enumerate(diagnosis.reasons):
            ax.text(0, 0.75 - 0.12 * i, f"- {reason}", fontsize=10, transform=ax.transAxes, wrap=True)
        return
    probabilities = cast(dict[str, float], diagnosis.probabilities)  # gradable: set
    values = [probabilities[c] for c in CLASSES]
    colours = ["#2166ac" if c == diagnosis.label else "#9ecae1" for c in CLASSES]
    ax.barh(list(CLASSES), values, color=colours)
    for i, (c, v) in enumerate(zip(CLASSES, values, strict=True)):
        ax.text(min(v + 0.01, 0.55), i, f"{v:.2f}  {CLASS_DESCRIPTIONS[c]}", va="center", fontsize=9)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_title("Class probabilities")


def _text_panel(ax, diagnosis: Diagnosis) -> None:
    ax.axis("off")
    q = diagnosis.quality
    lines = [
        f"Quality: {'gradable' if diagnosis.gradable else 'ungradable'}; "
        f"signal-to-noise {q['signal_to_noise']}, boundary confidence {q['boundary_confidence']}, "
        f"lost B-scans {q['lost_bscans']}",
        f"Disc found: {q['disc_found']}; fovea found: {q['fovea_found']}; protocol {diagnosis.protocol}",
        f"Bundle {diagnosis.bundle_id[:16]}; "
        f"backend {diagnosis.backend} {diagnosis.precision} on {diagnosis.device}",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in diagnosis.versions.items()),
        "Timings (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in diagnosis.timings_ms.items()),
        f"Source: {diagnosis.provenance_text or 'not recorded'}",
    ]
    for i, line in enumerate(lines):
        ax.text(0, 0.9 - 0.17 * i, line, fontsize=9, transform=ax.transAxes, wrap=True)
