"""Is a scan good enough to grade? Signal, lost B-scans, boundary confidence, landmarks found.

A scan that fails a check is not an error: it is reported ungradable, with every reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_SIGNAL_TO_NOISE = 4.5  # (tissue - vitreous background) / vitreous spread
MAX_LOST_BSCAN_FRACTION = 0.05  # B-scans without retina (blink, lost fixation)
MIN_BOUNDARY_CONFIDENCE = 0.8  # A-scans (outside the disc) whose ILM and BM edges stand out
MIN_EDGE_CONTRAST = 0.5  # edge step, in vitreous spreads, for an edge to stand out
MAX_FOLDED_FRACTION = 0.05  # A-scans whose retina has no vitreous above it (top of the depth window)


@dataclass(frozen=True)
class Quality:
    """Scan quality figures and the verdict; ``reasons`` says why a scan is ungradable."""

    signal_to_noise: float
    lost_bscans: int
    boundary_confidence: float
    disc_found: bool
    fovea_found: bool
    reasons: tuple[str, ...] = field(default=())

    @property
    def gradable(self) -> bool:
        return not self.reasons

    def with_reasons(self, *more: str) -> Quality:
        return Quality(
            self.signal_to_noise,
            self.lost_bscans,
            self.boundary_confidence,
            self.disc_found,
            self.fovea_found,
            self.reasons + tuple(more),
        )

    def to_dict(self) -> dict:
        return {
            "gradable": self.gradable,
            "reasons": list(self.reasons),
            "signal_to_noise": round(self.signal_to_noise, 2),
            "lost_bscans": self.lost_bscans,
            "boundary_confidence": round(self.boundary_confidence, 3),
            "disc_found": self.disc_found,
            "fovea_found": self.fovea_found,
        }


def assess(
    signal_to_noise: float,
    tissue_found: np.ndarray,
    vitreous_above: np.ndarray,
    contrast: dict,
    outside_disc: np.ndarray,
    disc_expected: bool,
    disc_found: bool,
    fovea_expected: bool,
    fovea_found: bool,
) -> Quality:
    """Quality verdict.

    tissue_found, vitreous_above : (n_bscans, n_ascans) bool; contrast : edge contrast per boundary,
    each (n_bscans, n_ascans); outside_disc : (n_bscans, n_ascans) bool.
    """
    lost = int(np.count_nonzero(tissue_found.mean(axis=1) < 0.5))
    edges_ok = (contrast["ILM"] > MIN_EDGE_CONTRAST) & (contrast["BM"] > MIN_EDGE_CONTRAST)
    considered = outside_disc & tissue_found
    confidence = float(edges_ok[considered].mean()) if considered.any() else 0.0
    reasons = []
    if signal_to_noise < MIN_SIGNAL_TO_NOISE:
        reasons.append(f"signal too weak: signal-to-noise {signal_to_noise:.1f} < {MIN_SIGNAL_TO_NOISE:g}")
    folded = float((tissue_found & ~vitreous_above).mean())
    if folded > MAX_FOLDED_FRACTION:
        reasons.append(
            f"the retina reaches the top of the depth window in {100 * folded:.0f}% of the scan (folded "
            "by the mirror artefact): rescan with the retina lower in the window"
        )
    if lost > MAX_LOST_BSCAN_FRACTION * tissue_found.shape[0]:
        reasons.append(f"{lost} of {tissue_found.shape[0]} B-scans have no retina (blink or lost fixation)")
    if confidence < MIN_BOUNDARY_CONFIDENCE:
        reasons.append(f"layer boundaries unclear in {100 * (1 - confidence):.0f}% of the scan")
    if disc_expected and not disc_found:
        reasons.append("optic disc not found in the scan")
    if fovea_expected and not fovea_found:
        reasons.append("fovea not found in the scan")
    return Quality(signal_to_noise, lost, confidence, disc_found, fovea_found, tuple(reasons))


def blank_quality(reason: str, n_bscans: int) -> Quality:
    """Quality of a volume with nothing to segment: ungradable for ``reason`` alone."""
    return Quality(0.0, n_bscans, 0.0, False, False, (reason,))
