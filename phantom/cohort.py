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

import dataclasses
from dataclasses import dataclass

import numpy as np

from phantom.eye import Eye, make_eye
from phantom.params import GLAUCOMA_KINDS, KINDS, EyeParams, draw_params

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
    overrides: tuple[tuple[str, float], ...] = ()  # EyeParams fields shared with the fellow eye

    def make(self) -> Eye:
        """Render this eye's volume and truth."""
        overrides = dict(self.overrides)
        if self.severity is not None:
            overrides["severity"] = self.severity
        return make_eye(self.kind, self.seed, self.laterality, self.protocol, self.shape, **overrides)

    def params(self) -> EyeParams:
        """The EyeParams ``make()`` renders, without rendering (as phantom.make_eye draws them)."""
        rng = np.random.default_rng([self.seed, KINDS.index(self.kind)])
        return dataclasses.replace(
            draw_params(self.kind, rng, severity=self.severity), **dict(self.overrides)
        )


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


# --- the clinical cohort (docs/PHANTOM.md, section 9) ---------------------------------------------------

DISC_AREA_MM2 = (1.93, 0.38)  # normal Japanese eyes about 1.93 mm2; sd 0.38 mm2 (Cirrus, young adults)
DISC_AREA_FACTOR = {"normal": 1.0, "FI": 1.0, "GE": 1.08, "MY": 1.15, "SS": 1.0}  # GE, MY larger (Iwase 2019)
EXTRA_RNFL_SD = 0.045  # added spread so that normal average RNFL varies by ~10 % (93.4 +- 9.3 um)
MD_GAMMA = ((8.9 / 7.5) ** 2, 7.5**2 / 8.9)  # -MD (dB) ~ Gamma(shape, scale): mean 8.9, sd 7.5 dB
MD_MAX_DB = 30.0
SEVERITY_DB = 30.0  # share of axons lost = 1 - 10 ** (MD / SEVERITY_DB)
FELLOW_MD_RATIO = (0.2, 1.0)  # the fellow eye's MD as a share of the worse eye's, uniform
GRADER_SEE_TYPE = (0.45, 0.5)  # a grader names the true type with p = a + b * sqrt(severity)
CONFUSED_WITH = {  # where a grader who misses the type goes, relative weights
    "FI": {"GE": 1.0, "MY": 1.5, "SS": 0.5},
    "GE": {"FI": 1.0, "MY": 0.5, "SS": 1.5},
    "MY": {"FI": 1.5, "GE": 1.0, "SS": 0.3},
    "SS": {"FI": 0.5, "GE": 2.0, "MY": 0.3},
}
SHARED_SD = {  # fields both eyes of a patient share, with the sd of their inter-eye difference
    "age_years": 0.0,
    "disc_dx_mm": 0.05,
    "disc_dy_mm": 0.05,
    "rnfl_scale": 0.03,  # normal inter-eye RNFL asymmetry of a few um
    "gcl_scale": 0.02,
    "hump_superior_deg": 2.0,
    "hump_inferior_deg": 2.0,
    "rnfl_decay_mm": 0.05,
    "choroid_um": 15.0,
}
NORMAL_SHARED_SD = {"cup_ratio": 0.03, "cup_depth_mm": 0.02}  # normal cups are nearly symmetric


def severity_from_md(md_db: float) -> float:
    """Share of axons lost (the phantom's severity) for a visual-field mean deviation ``md_db`` (<= 0)."""
    return float(np.clip(1.0 - 10.0 ** (md_db / SEVERITY_DB), 0.02, 1.0))


def grade(kind: str, severity: float | None, rng: np.random.Generator) -> str:
    """One specialist's grade of an eye: normal eyes are normal; a glaucoma eye is given its true type
    with a probability that rises with severity (mild discs are hard to type), else a confusable one."""
    if kind == "normal":
        return kind
    a, b = GRADER_SEE_TYPE
    if rng.random() < a + b * np.sqrt(severity):
        return kind
    others = CONFUSED_WITH[kind]
    weights = np.array(list(others.values()))
    return str(rng.choice(list(others), p=weights / weights.sum()))


def clinical_cohort(
    n_normal: int = PAPER_N_NORMAL,
    n_glaucoma: int = PAPER_N_GLAUCOMA,
    seed: int = 0,
    protocol: str = "wide",
    shape: tuple[int, int, int] | None = None,
    with_rejected: bool = False,
):
    """A cohort as the paper's was assembled: graded by two specialists, only the eyes they agree on kept.

    Patients (both eyes) are drawn type by type in TYPE_MIX proportions until every label has its
    quota of agreed eyes (n_glaucoma x TYPE_MIX, n_normal normal eyes from healthy subjects). Glaucoma
    severity comes from a clinic's spread of visual-field mean deviation (early to advanced); both eyes
    share the patient's age and most of the anatomy (SHARED_SD) but each has its own severity (the
    fellow eye milder), its own phenotype details (notches, atrophy, cup) and scan. Disc size follows
    normative data. An eye's ``label`` is the agreed grade, which may differ from ``kind``.

    with_rejected : also return the eyes the graders disagreed on, as (kept, rejected) with
    rejected = [(EyeSpec, grade_1, grade_2)].
    """
    rng = np.random.default_rng([seed, 2021, 1])
    quota = {"normal": n_normal, **dict(zip(TYPE_MIX, _counts(n_glaucoma), strict=True))}
    kept: list[EyeSpec] = []
    rejected: list[tuple[EyeSpec, str, str]] = []
    patient = 0
    while any(quota[k] > 0 for k in quota):
        open_types = [k for k in TYPE_MIX if quota[k] > 0]
        kind = "normal" if quota["normal"] > 0 else str(rng.choice(open_types, p=_mix(open_types)))
        pid = f"C{seed:03d}-{patient:04d}"
        for spec in _patient_eyes(kind, pid, rng, protocol, shape):
            grades = (grade(kind, spec.severity, rng), grade(kind, spec.severity, rng))
            if grades[0] != grades[1]:
                rejected.append((spec, *grades))
            elif quota[grades[0]] > 0:
                kept.append(dataclasses.replace(spec, label=grades[0]))
                quota[grades[0]] -= 1
        patient += 1
    return (kept, rejected) if with_rejected else kept


def normative_eyes(n: int, seed: int = 0, protocol: str = "wide", shape=None) -> list[EyeSpec]:
    """``n`` normal eyes of ``n`` healthy subjects (one eye each, either side), apart from every cohort
    patient: the eyes an instrument's normative database is built from."""
    rng = np.random.default_rng([seed, 2021, 2])
    eyes = []
    for i in range(n):
        spec = _patient_eyes("normal", f"N{seed:03d}-{i:04d}", rng, protocol, shape)[int(rng.integers(0, 2))]
        eyes.append(spec)
    return eyes


def _counts(n: int) -> list[int]:
    return [sum(1 for k in _type_counts(n) if k == kind) for kind in TYPE_MIX]


def _mix(kinds) -> np.ndarray:
    p = np.array([TYPE_MIX[k] for k in kinds])
    return p / p.sum()


def _patient_eyes(kind: str, pid: str, rng, protocol, shape) -> list[EyeSpec]:
    """Both eyes of one patient: shared anatomy (the patient's draw) with inter-eye differences."""
    patient_seed, eye_seeds = int(rng.integers(0, 2**31 - 1)), rng.integers(0, 2**31 - 1, 2)
    anatomy = draw_params(kind, np.random.default_rng([patient_seed, KINDS.index(kind)]))
    area = max(0.8, rng.normal(*DISC_AREA_MM2)) * DISC_AREA_FACTOR[kind]
    radius = np.sqrt(area / np.pi)
    ovality = anatomy.bmo_semi_y_mm / anatomy.bmo_semi_x_mm
    rnfl_scale = anatomy.rnfl_scale * float(np.exp(rng.normal(0, EXTRA_RNFL_SD)))
    worse_md = -min(MD_MAX_DB, float(rng.gamma(*MD_GAMMA)))
    mds = (worse_md, worse_md * rng.uniform(*FELLOW_MD_RATIO))
    order = rng.permutation(2)
    shared = SHARED_SD | (NORMAL_SHARED_SD if kind == "normal" else {})
    specs = []
    for laterality, eye_seed, k in zip(("OD", "OS"), eye_seeds, order, strict=True):
        values = {f: getattr(anatomy, f) + rng.normal(0, sd) for f, sd in shared.items()}
        values["rnfl_scale"] += rnfl_scale - anatomy.rnfl_scale
        disc = radius * float(np.exp(rng.normal(0, 0.03)))
        values["bmo_semi_x_mm"], values["bmo_semi_y_mm"] = disc / np.sqrt(ovality), disc * np.sqrt(ovality)
        severity = None if kind == "normal" else severity_from_md(mds[k])
        overrides = tuple((f, float(v)) for f, v in sorted(values.items()))
        specs.append(
            EyeSpec(
                f"{pid}-{laterality}",
                pid,
                kind,
                kind,
                int(eye_seed),
                laterality,
                severity,
                protocol,
                shape,
                overrides,
            )
        )
    return specs
