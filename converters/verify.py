"""The accuracy gate: a bundle's golden eyes through its normative database, preprocessing, a backend
and the numpy stacker.

    python -m converters verify BUNDLE [--backend onnxruntime|tensorrt|torch|auto] [--precision fp32|fp16]
                                       [--trusted-keys PATH]

First the golden eyes' deviation maps are recomputed from their thickness maps with the bundle's
normative.npz and compared with golden.npz's (:data:`DEVIATION_TOLERANCE`, NaN where golden.npz has
NaN), and their network inputs recomputed with ``sdk.maps.to_network_input`` (:data:`INPUT_TOLERANCE`):
a changed normative database or preprocessing constant fails here. Then each golden eye's network
input runs through the backend; per network, and for the final probabilities (backend outputs ->
stacking features -> numpy stacker), the result is compared with golden.npz's PyTorch reference:
the largest absolute probability difference and the share of eyes with the same top class (see
:class:`Agreement`), against the manifest's tolerances for the backend's precision (which
``Bundle.load`` has checked are no looser than the schema allows).

Imports only ``sdk`` (not torch), so it runs on the device that runs the bundle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from sdk.backends import make_backend
from sdk.bundle import Bundle
from sdk.maps import MAP_NAMES, to_network_input

DEVIATION_TOLERANCE = 1e-5  # z-score: the same float32 arithmetic as at conversion gives 0
INPUT_TOLERANCE = 1e-6  # normalised network input


@dataclass(frozen=True)
class Agreement:
    """Probabilities of one network (or of the final answer) against a reference, over n inputs.

    A top-class comparison counts only the inputs the reference decides: its top class leads the
    runner-up by more than twice the tolerated difference (a result within tolerance of every
    class may swap a closer pair, so swapping it is no disagreement). Use :meth:`of`.
    """

    name: str
    compared: int  # inputs (rows) compared
    decided: int  # of them, those the reference decides
    same_top: int  # of those, the ones with the reference's top class
    max_abs: float  # largest absolute probability difference
    tolerance: dict  # {max_abs_probability, min_top1_agreement}

    @classmethod
    def of(cls, name: str, got: np.ndarray, reference: np.ndarray, tolerance: dict) -> Agreement:
        """got, reference: (n, n_classes) probabilities."""
        ordered = np.sort(reference, axis=1)
        decided = ordered[:, -1] - ordered[:, -2] > 2 * tolerance["max_abs_probability"]
        same = got.argmax(1) == reference.argmax(1)
        return cls(
            name,
            len(reference),
            int(decided.sum()),
            int((same & decided).sum()),
            float(np.max(np.abs(got - reference))),
            tolerance,
        )

    @property
    def top1_agreement(self) -> float:
        """Share of the decided inputs with the reference's top class (1.0 if none is decided)."""
        return self.same_top / self.decided if self.decided else 1.0

    @property
    def passed(self) -> bool:
        return (
            self.max_abs <= self.tolerance["max_abs_probability"]
            and self.top1_agreement >= self.tolerance["min_top1_agreement"]
        )

    def summary(self) -> str:
        ties = self.compared - self.decided
        return (
            f"max |dp| {self.max_abs:.2e} (limit {self.tolerance['max_abs_probability']:g}), same top "
            f"class {self.same_top}/{self.decided}"
            + (f" (+{ties} tie)" if ties else "")
            + f" (limit {self.tolerance['min_top1_agreement']:.0%})"
        )

    def to_dict(self) -> dict:
        return {
            "max_abs": self.max_abs,
            "same_top": self.same_top,
            "decided": self.decided,
            "compared": self.compared,
        }


@dataclass(frozen=True)
class MapCheck:
    """Recomputed golden maps or inputs against golden.npz: the largest absolute difference over the
    pixels both measure, and the pixels measured in only one of them (NaN in the other)."""

    name: str
    max_abs: float
    nan_mismatches: int
    limit: float

    @classmethod
    def of(cls, name: str, got: np.ndarray, reference: np.ndarray, limit: float) -> MapCheck:
        both = np.isfinite(got) & np.isfinite(reference)
        difference = float(np.max(np.abs(got[both] - reference[both]), initial=0.0))
        return cls(name, difference, int(np.sum(np.isfinite(got) != np.isfinite(reference))), limit)

    @property
    def passed(self) -> bool:
        return self.max_abs <= self.limit and self.nan_mismatches == 0


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found: the backend that ran and one :class:`Agreement` per row."""

    bundle_id: str
    backend: str
    precision: str
    device: str
    details: dict
    rows: list[Agreement]
    map_checks: list[MapCheck]
    signer: str | None = None

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows + self.map_checks)

    def report(self) -> str:
        """A table for a terminal: one line per network and the final probabilities, then PASS/FAIL."""
        providers = self.details.get("providers")
        lines = [
            f"bundle {self.bundle_id[:12]} ({self.signer or 'unsigned'})  backend {self.backend} "
            f"{self.precision} on {self.device}" + (f" ({', '.join(providers)})" if providers else "")
        ]
        if "auto" in self.details:
            lines.append(f"auto: {self.details['auto']}")
        lines.append(f"{'golden maps':<24} {'NaN differ':>13} {'max |d|':>10} {'limit':>8}")
        for check in self.map_checks:
            lines.append(
                f"{check.name:<24} {check.nan_mismatches:>13} {check.max_abs:>10.2e} {check.limit:>8.0e}  "
                f"{'ok' if check.passed else 'FAIL'}"
            )
        lines.append(f"{'model':<24} {'same top':>13} {'max |dp|':>10} {'limit':>8}")
        for row in self.rows:
            ties = row.compared - row.decided
            agree = f"{row.same_top}/{row.decided}" + (f" +{ties} tie" if ties else "")
            lines.append(
                f"{row.name:<24} {agree:>13} {row.max_abs:>10.2e} "
                f"{row.tolerance['max_abs_probability']:>8.0e}  {'ok' if row.passed else 'FAIL'}"
            )
        lines.append(
            "same top: eyes with the reference's top class, of those it decides; a tie: its top two "
            "classes closer than twice the limit"
        )
        lines.append("PASS" if self.passed else "FAIL: beyond the manifest's tolerances")
        return "\n".join(lines)


def verify(
    bundle: Bundle | str | os.PathLike,
    backend: str = "onnxruntime",
    precision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    trusted_keys=None,
) -> Verification:
    """Run the golden eyes of ``bundle`` (a :class:`~sdk.bundle.Bundle`, or a folder loaded with
    ``trusted_keys`` as in ``Bundle.load``) through its normative database, the preprocessing and
    ``backend`` (arguments as ``sdk.backends.make_backend``).

    Raises BundleError for a bad bundle and BackendUnavailable when the backend cannot run here.
    """
    if not isinstance(bundle, Bundle):
        bundle = Bundle.load(bundle, trusted_keys=trusted_keys)
    golden = bundle.golden()
    map_checks = check_golden_maps(bundle, golden)
    with make_backend(bundle, backend, precision, cache_dir=cache_dir, threads=threads) as runner:
        outputs = [runner.run(x) for x in golden["inputs"]]
        ran = (runner.name, runner.precision, runner.device, dict(runner.details))
    stage1 = np.stack([s1 for s1, _ in outputs])  # (n, 4, 2)
    stage2 = np.stack([s2 for _, s2 in outputs])  # (n, 4, 4)
    tolerance = bundle.tolerances(ran[1])
    rows = []
    for spec in bundle.models:
        got, want = (stage1, golden["stage1"]) if spec.stage == 1 else (stage2, golden["stage2"])
        m = MAP_NAMES.index(spec.map_name)
        rows.append(Agreement.of(spec.name, got[:, m], want[:, m], tolerance))
    final = bundle.final_probabilities(bundle.stacking_features(stage1, stage2))
    rows.append(Agreement.of("final (stacker)", final, golden["probabilities"], tolerance))
    return Verification(bundle.bundle_id, *ran, rows, map_checks, bundle.signer)


def check_golden_maps(bundle: Bundle, golden: dict[str, np.ndarray]) -> list[MapCheck]:
    """The golden eyes' deviation maps recomputed from their thickness maps with ``bundle.normative``,
    and their network inputs from the maps with ``sdk.maps.to_network_input``, against golden.npz."""
    stacks = golden["maps"]  # (n, 4, 224, 224): rnfl, gcc thickness, rnfl, gcc deviation
    deviations = [bundle.normative.deviation(eye[0], eye[1]) for eye in stacks]
    checks = [
        MapCheck.of(
            name,
            np.stack([d[i] for d in deviations]),
            stacks[:, MAP_NAMES.index(name)],
            DEVIATION_TOLERANCE,
        )
        for i, name in enumerate(("rnfl_deviation", "gcc_deviation"))
    ]
    inputs = np.stack([to_network_input(eye, bundle.input_hw) for eye in stacks])
    checks.append(MapCheck.of("network input", inputs, golden["inputs"], INPUT_TOLERANCE))
    return checks
