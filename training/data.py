"""From cached thickness maps to network input: the normative model and the four maps per eye.

The normative model is fitted on the normal eyes of the eyes a model is trained on, and on nothing
else (test eyes and held-out folds never shape it), exactly as a vendor builds its database from
the normal eyes it owns. Network input comes from ``sdk.maps.to_network_input``, the function scan
time uses.
"""

from __future__ import annotations

import numpy as np

from sdk.errors import CohortError
from sdk.labels import CLASSES
from sdk.maps import Normative, to_network_input

NORMAL = CLASSES.index("normal")


def fit_normative(thickness_um: np.ndarray, labels: np.ndarray, eyes: np.ndarray) -> Normative:
    """Normative model of the normal eyes among ``eyes``.

    thickness_um : (n_eyes, 2, 224, 224) RNFL and GCC thickness maps (um, NaN = masked).
    labels : (n_eyes,) class indices into CLASSES. eyes : indices of the eyes to learn from.
    """
    normal = eyes[labels[eyes] == NORMAL]
    if len(normal) < 2:
        raise CohortError(
            f"the normative model needs at least 2 normal eyes among the training eyes, "
            f"got {len(normal)}: add normal eyes to the cohort"
        )
    return Normative.fit(thickness_um[normal, 0], thickness_um[normal, 1])


def network_inputs(thickness_um: np.ndarray, normative: Normative, input_hw) -> np.ndarray:
    """Network input of every eye: float32 (n_eyes, 4, 3, height, width), maps in MAP_NAMES order
    (RNFL and GCC thickness, RNFL and GCC deviation from ``normative``)."""
    out = np.empty((len(thickness_um), 4, 3, *input_hw), np.float32)
    for i, (rnfl, gcc) in enumerate(thickness_um):
        rnfl_dev, gcc_dev = normative.deviation(rnfl, gcc)
        out[i] = to_network_input(np.stack([rnfl, gcc, rnfl_dev, gcc_dev]), input_hw)
    return out
