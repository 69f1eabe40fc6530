"""Patient-level, class-stratified splits: test split, reduced training set, validation part, folds.

Every function keeps both eyes of a patient on the same side (fellow eyes share anatomy, so a split
that separated them would leak). ``labels`` are class indices into sdk.labels.CLASSES and
``patients`` patient ids, one per eye; indices returned are positions in those arrays, sorted.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def take_patients(
    labels: np.ndarray, patients: np.ndarray, n_eyes: int, rng: np.random.Generator
) -> np.ndarray:
    """About ``n_eyes`` eyes (exactly, where single-eye patients allow), whole patients drawn at
    random, each class in proportion to its share of the eyes given."""
    labels, patients = np.asarray(labels), np.asarray(patients)
    groups = [np.flatnonzero(patients == p) for p in dict.fromkeys(patients.tolist())]
    order = rng.permutation(len(groups))
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    quota = n_eyes * np.bincount(labels, minlength=n_classes) / max(len(labels), 1)
    taken = np.zeros(n_classes)
    chosen: list[int] = []
    for g in order:  # first pass: keep every class near its quota
        eyes = groups[g]
        cls = np.bincount(labels[eyes]).argmax()
        if len(chosen) + len(eyes) <= n_eyes and taken[cls] + len(eyes) <= quota[cls] + 1:
            chosen.extend(eyes)
            taken[cls] += len(eyes)
    picked = set(chosen)
    for g in order:  # second pass: fill up to n_eyes
        eyes = groups[g]
        if eyes[0] not in picked and len(chosen) + len(eyes) <= n_eyes:
            chosen.extend(eyes)
    return np.sort(np.array(chosen, dtype=int))


def patient_folds(labels: np.ndarray, patients: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """The held-out eyes of each of ``k`` class-stratified folds by patient; together they cover
    every eye once."""
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [np.sort(held) for _, held in splitter.split(np.zeros(len(labels)), labels, patients)]


def rest(n_eyes: int, taken: np.ndarray) -> np.ndarray:
    """The sorted indices of range(n_eyes) not in ``taken``."""
    return np.setdiff1d(np.arange(n_eyes), taken)
