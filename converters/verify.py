"""The accuracy gate: a bundle's golden eyes through a backend and the numpy stacker.

    python -m converters verify BUNDLE [--backend onnxruntime|tensorrt|torch|auto] [--precision fp32|fp16]

Each golden eye's network input runs through the backend; per network, and for the final
probabilities (backend outputs -> stacking features -> numpy stacker), the result is compared with
golden.npz's PyTorch reference: the largest absolute probability difference and the share of eyes
with the same top class, against the manifest's tolerances for the backend's precision.

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
    """One network (or the final answer) against the golden reference, over the golden eyes."""

    name: str
    eyes: int
    top1_agreement: float  # share of eyes with the reference's top class
    max_abs: float  # largest absolute probability difference
    tolerance: dict  # the manifest's {max_abs_probability, min_top1_agreement}

    @property
    def passed(self) -> bool:
        return (
            self.max_abs <= self.tolerance["max_abs_probability"]
            and self.top1_agreement >= self.tolerance["min_top1_agreement"]
        )


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
        lines.append(f"{'model':<24} {'top-1 agree':>11} {'max |dp|':>10} {'limit':>8}")
        for row in self.rows:
            agree = f"{round(row.top1_agreement * row.eyes)}/{row.eyes}"
            lines.append(
                f"{row.name:<24} {agree:>11} {row.max_abs:>10.2e} "
                f"{row.tolerance['max_abs_probability']:>8.0e}  {'ok' if row.passed else 'FAIL'}"
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
        rows.append(_agreement(spec.name, got[:, m], want[:, m], tolerance))
    final = bundle.final_probabilities(bundle.stacking_features(stage1, stage2))
    rows.append(_agreement("final (stacker)", final, golden["probabilities"], tolerance))
    return Verification(bundle.bundle_id, *ran, rows)


def _agreement(name: str, got: np.ndarray, want: np.ndarray, tolerance: dict) -> Agreement:
    """got, want: (n_eyes, n_classes) probabilities."""
    return Agreement(
        name,
        len(want),
        float(np.mean(got.argmax(1) == want.argmax(1))),
        float(np.max(np.abs(got - want))),
        tolerance,
    )
