"""A training cohort: labelled eyes from the phantom or from a CSV of the user's own volumes.

    eyes = from_phantom(phantom.cohort(shape=(64, 496, 256)))
    eyes = read_csv("cohort.csv")      # columns path, label, laterality; optional patient_id

Every eye has an id, a patient id (splits are made by patient, so both eyes of a patient fall on
the same side) and a graded label from ``sdk.labels.CLASSES``. A CSV is checked completely (every
file present, every label and laterality known) when it is read, before any map is computed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from phantom import EyeSpec
from sdk.errors import CohortError, InvalidVolume
from sdk.labels import CLASSES
from sdk.volume import normalise_laterality

CSV_COLUMNS = ("path", "label", "laterality")


@dataclass(frozen=True)
class CohortEye:
    """One labelled eye. ``source`` is a phantom EyeSpec or the path of a wide-field volume file."""

    eye_id: str
    patient_id: str
    label: str
    source: EyeSpec | Path
    laterality: str


def from_phantom(specs: list[EyeSpec]) -> list[CohortEye]:
    """The eyes of a phantom cohort (``phantom.cohort(...)``), labelled as graded."""
    return [CohortEye(s.eye_id, s.patient_id, s.label, s, s.laterality) for s in specs]


def read_csv(path) -> list[CohortEye]:
    """Eyes listed in a CSV file with a header row.

    Columns: ``path`` (a wide-field volume that ``sdk.read_volume`` reads; relative paths are taken
    from the CSV's folder), ``label`` (one of normal, FI, GE, MY, SS), ``laterality`` (OD/OS, R/L) and
    optionally ``patient_id`` (without it every eye counts as its own patient: give it whenever a
    patient has two eyes in the cohort, or the splits leak between fellow eyes).

    Raises CohortError naming every bad row: a missing column, a missing file, an unknown label or
    laterality, a repeated file.
    """
    path = Path(path)
    if not path.is_file():
        raise CohortError(f"cohort file {path} does not exist")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0]) if rows else set()
    missing = [c for c in CSV_COLUMNS if c not in columns]
    if missing:
        raise CohortError(
            f"{path}: needs a header row with columns {', '.join(CSV_COLUMNS)} "
            f"(optional patient_id); missing {', '.join(missing)}"
        )
    problems: list[str] = []
    eyes: list[CohortEye] = []
    seen: set[Path] = set()
    for line, row in enumerate(rows, start=2):
        volume = (path.parent / row["path"].strip()).resolve()
        label = row["label"].strip()
        if not volume.is_file():
            problems.append(f"line {line}: volume file {volume} does not exist")
        if volume in seen:
            problems.append(f"line {line}: volume file {volume} is listed twice")
        if label not in CLASSES:
            problems.append(f"line {line}: label {label!r} is not one of {', '.join(CLASSES)}")
        try:
            laterality = normalise_laterality(row["laterality"].strip())
        except InvalidVolume:
            problems.append(f"line {line}: laterality {row['laterality']!r} is not OD/OS (R/L)")
            continue
        seen.add(volume)
        patient = (row.get("patient_id") or "").strip() or str(volume)
        eyes.append(CohortEye(str(volume), patient, label, volume, laterality))
    if problems:
        raise CohortError(f"{path}: {len(problems)} bad row(s):\n  " + "\n  ".join(problems))
    if not eyes:
        raise CohortError(f"{path} lists no eyes")
    return eyes
