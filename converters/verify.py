"""The accuracy gate: a bundle's golden eyes through a backend and the numpy stacker.

    python -m converters verify BUNDLE [--backend onnxruntime|tensorrt|torch|auto] [--precision fp32|fp16]

Each golden eye's network input runs through the backend; per network, and for the final
probabilities (backend outputs -> stacking features -> numpy stacker), the result is compared with
golden.npz's PyTorch reference: the largest absolute probability difference and the share of eyes
with the same top class (see :class:`Agreement`), against the manifest's tolerances for the
backend's precision.

Imports only ``sdk`` (not torch), so it runs on the device that runs the bundle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from sdk.backends import make_backend
from sdk.bundle import Bundle
from sdk.maps import MAP_NAMES


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
class Verification:
    """What :func:`verify` found: the backend that ran and one :class:`Agreement` per row."""

    bundle_id: str
    backend: str
    precision: str
    device: str
    details: dict
    rows: list[Agreement]

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def report(self) -> str:
        """A table for a terminal: one line per network and the final probabilities, then PASS/FAIL."""
        providers = self.details.get("providers")
        lines = [
            f"bundle {self.bundle_id[:12]}  backend {self.backend} {self.precision} on {self.device}"
            + (f" ({', '.join(providers)})" if providers else "")
        ]
        if "auto" in self.details:
            lines.append(f"auto: {self.details['auto']}")
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
    bundle_dir: str | os.PathLike,
    backend: str = "onnxruntime",
    precision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    threads: int | None = None,
) -> Verification:
    """Run the golden eyes of ``bundle_dir`` through ``backend`` (arguments as ``sdk.backends.make_backend``).

    Raises BundleError for a bad bundle and BackendUnavailable when the backend cannot run here.
    """
    bundle = Bundle.load(bundle_dir)
    golden = bundle.golden()
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
    return Verification(bundle.bundle_id, *ran, rows)
