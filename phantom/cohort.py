"""A synthetic cohort with the paper's size: eye specifications, cheap to hold, made into volumes on demand.

Size: 156 normal and 798 glaucoma eyes (An et al., Sci Rep 2021). The glaucoma type mix is not
published; this cohort uses FI 30 %, GE 25 %, MY 30 %, SS 15 %: a hospital series from a Japanese
glaucoma clinic is richer in myopic (MY) discs than population data (focal 57 %, GE 33 %, MY 7 %,
SS 3 %, Iwase et al. 2019), and SS is the rarest type everywhere. Eyes come in pairs from one
patient: both eyes share the patient's anatomy seed and disc type, with their own severity, so
splits must be made by patient (``patient_id``). Grader noise swaps a share of glaucoma labels to
another type, as disagreeing graders do (inter-observer kappa about 0.4 to 0.8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phantom.eye import Eye, make_eye
from phantom.params import GLAUCOMA_KINDS

TYPE_MIX = {"FI": 0.30, "GE": 0.25, "MY": 0.30, "SS": 0.15}
PAPER_N_NORMAL = 156
PAPER_N_GLAUCOMA = 798


@dataclass(frozen=True)
class EyeSpec:
    """One eye of a cohort: what to make (kind, seed, severity, scan) and its graded label."""

    eye_id: str
    patient_id: str
    kind: str  # true class of the phantom
    label: str  # class as graded (differs from kind where grader noise swapped it)
    seed: int
    laterality: str
    severity: float | None  # None for normal eyes
    protocol: str = "wide"
    shape: tuple[int, int, int] | None = None

    def make(self) -> Eye:
        """Render this eye's volume and truth."""
        overrides = {} if self.severity is None else {"severity": self.severity}
        return make_eye(self.kind, self.seed, self.laterality, self.protocol, self.shape, **overrides)


def cohort(
    n_normal: int = PAPER_N_NORMAL,
    n_glaucoma: int = PAPER_N_GLAUCOMA,
    seed: int = 0,
    grader_noise: float = 0.0,
    protocol: str = "wide",
    shape: tuple[int, int, int] | None = None,
) -> list[EyeSpec]:
    """Eye specifications of a cohort, deterministic per seed.

    Parameters
    ----------
    n_normal, n_glaucoma : numbers of eyes; odd numbers leave one single eye.
    seed : cohort seed.
    grader_noise : share (0..1) of glaucoma eyes whose label is swapped to another type.
    protocol, shape : scan of every eye (see phantom.make_eye).
    """
    if n_normal < 0 or n_glaucoma < 0 or n_normal + n_glaucoma == 0:
        raise ValueError(f"need a positive number of eyes, got n_normal={n_normal}, n_glaucoma={n_glaucoma}")
    if not 0.0 <= grader_noise <= 1.0:
        raise ValueError(f"grader_noise is a share between 0 and 1, got {grader_noise}")
    rng = np.random.default_rng([seed, 2021])
    kinds = ["normal"] * n_normal + _type_counts(n_glaucoma)
    specs: list[EyeSpec] = []
    patient = 0
    i = 0
    while i < len(kinds):
        kind = kinds[i]
        pair = i + 1 < len(kinds) and kinds[i + 1] == kind
        patient_seed = int(rng.integers(0, 2**31 - 1))
        for laterality in ("OD", "OS")[: 2 if pair else 1]:
            drawn = float(np.clip(rng.beta(2.0, 2.2) * 0.85 + 0.15, 0.15, 1.0))
            severity = None if kind == "normal" else drawn
            label = kind
            if kind != "normal" and rng.random() < grader_noise:
                label = str(rng.choice([k for k in GLAUCOMA_KINDS if k != kind]))
            pid = f"P{seed:03d}-{patient:04d}"
            specs.append(
                EyeSpec(
                    f"{pid}-{laterality}",
                    pid,
                    kind,
                    label,
                    patient_seed,
                    laterality,
                    severity,
                    protocol,
                    shape,
                )
            )
        patient += 1
        i += 2 if pair else 1
    return specs


def _type_counts(n: int) -> list[str]:
    """n glaucoma types in TYPE_MIX proportions (largest remainders), grouped by type."""
    shares = np.array(list(TYPE_MIX.values())) * n
    counts = np.floor(shares).astype(int)
    for j in np.argsort(shares - counts)[::-1][: n - counts.sum()]:
        counts[j] += 1
    return [kind for kind, c in zip(TYPE_MIX, counts, strict=True) for _ in range(c)]
