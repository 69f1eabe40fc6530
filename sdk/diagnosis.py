"""``Diagnosis``: the answer for one eye, traceable to the bundle, backend and library versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from sdk.labels import CLASS_DESCRIPTIONS, CLASSES
from sdk.volume import PROVENANCE_KEYS

if TYPE_CHECKING:  # sdk.maps imports the front end
    from sdk.maps import Maps

UNSIGNED = "unsigned"  # Diagnosis.to_dict()["signer"] of a bundle loaded without trusted keys


@dataclass(frozen=True)
class Diagnosis:
    """The SDK's answer for one eye.

    label : one of CLASSES, or None when the scan is ungradable (no class is ever invented).
    probabilities : {class: probability} over CLASSES, summing to 1; None when ungradable.
    per_map : {map name: {"stage1": {normal, glaucoma}, "stage2": {FI, GE, MY, SS}}} confidences
        of the eight networks; None when ungradable.
    gradable, reasons : the quality verdict and why a scan is ungradable.
    quality : the quality figures (signal-to-noise, lost B-scans, boundary confidence, ...).
    backend, precision, device, bundle_id, versions : what produced the answer; backend_details says
        which execution providers actually ran (ONNX Runtime), engines (TensorRT), threads.
    timings_ms : {"front_end", "networks", "stacking", "total"} in milliseconds.
    maps : the sdk.maps.Maps the networks saw (for reports; not part of to_dict()).
    signer : key id (16 hex digits) of the trusted key that signed the bundle, or None when no keys
        were configured at load (``to_dict()["signer"]`` and the report then say "unsigned").
    provenance : {cube: OCTVolume.provenance} of the volume(s) classified, cube "scan" for
        ``classify`` and "disc", "macula" for ``classify_exam``: where spacing, laterality and
        protocol came from (a tag, a chunk, the field of view, or "caller"), the file, its compression.
    """

    label: str | None
    probabilities: dict[str, float] | None
    per_map: dict[str, dict[str, dict[str, float]]] | None
    gradable: bool
    reasons: tuple[str, ...]
    quality: dict
    laterality: str
    protocol: str
    backend: str
    precision: str
    device: str
    backend_details: dict
    bundle_id: str
    versions: dict[str, str]
    timings_ms: dict[str, float]
    maps: Maps | None = field(default=None, repr=False, compare=False)
    signer: str | None = None
    provenance: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict of everything but the maps."""
        return {
            "label": self.label,
            "description": CLASS_DESCRIPTIONS.get(self.label) if self.label else None,
            "probabilities": self.probabilities,
            "per_map": self.per_map,
            "gradable": self.gradable,
            "reasons": list(self.reasons),
            "quality": self.quality,
            "laterality": self.laterality,
            "protocol": self.protocol,
            "backend": self.backend,
            "precision": self.precision,
            "device": self.device,
            "backend_details": self.backend_details,
            "bundle_id": self.bundle_id,
            "signer": self.signer_text,
            "versions": self.versions,
            "timings_ms": self.timings_ms,
            "provenance": self.provenance,
        }

    @property
    def provenance_text(self) -> str:
        """One line: per cube, where its spacing, laterality and protocol came from, and its compression."""
        parts = []
        for cube, found in self.provenance.items():
            told = ", ".join(f"{key} from {found[key]}" for key in PROVENANCE_KEYS if key in found)
            name = Path(found["file"]).name if "file" in found else "(array)"
            compression = found.get("compression")
            parts.append(f"{cube} {name}: {told}" + (f"; compression {compression}" if compression else ""))
        return " | ".join(parts)

    @property
    def signer_text(self) -> str:
        """The signer's key id, or "unsigned": how reports show who signed the bundle."""
        return self.signer or UNSIGNED

    def summary(self) -> str:
        """One human-readable line."""
        if not self.gradable:
            return f"{self.laterality}: UNGRADABLE - " + "; ".join(self.reasons)
        # a gradable diagnosis has a label and probabilities
        p, label = cast(dict[str, float], self.probabilities), cast(str, self.label)
        ranked = sorted(CLASSES, key=lambda c: -p[c])
        others = ", ".join(f"{c} {p[c]:.2f}" for c in ranked[1:])
        return f"{self.laterality}: {label} ({CLASS_DESCRIPTIONS[label]}) p={p[label]:.2f}; {others}"
