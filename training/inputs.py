"""What the networks see of each cohort eye: the four maps as images, or the frozen layers' outputs.

    inputs = make_inputs(thickness_um, labels, settings, normative)   # normative: None or a fixed database
    fit = inputs.for_fit(train_eyes)      # .normative, .x(eyes) -> (n, 4, channels, h, w) float32

Without a fixed normative database each fit builds its own from its normal training eyes (as a
vendor does from the normal eyes it owns), so the deviation maps, and the images, belong to the fit.
With a fixed database (an instrument's, fitted on separate normal eyes) every eye has one set of
images; then the frozen leading layers of a pretrained network (``settings.frozen_layers``) run once
per eye and map, and every fit reads their outputs.
"""

from __future__ import annotations

import numpy as np

from sdk.errors import CohortError
from sdk.maps import MAP_NAMES, Normative
from training.data import fit_normative, network_inputs
from training.trunk_cache import frozen_outputs

CHUNK_EYES = 128  # eyes turned into images at a time when caching frozen outputs


class FitInputs:
    """The inputs of one fit: its normative model and the network input of any cohort eye."""

    def __init__(self, normative: Normative, images=None, cached: np.ndarray | None = None, input_hw=None):
        self.normative = normative
        self._images, self._cached, self._input_hw = images, cached, input_hw

    def x(self, eyes: np.ndarray) -> np.ndarray:
        """(len(eyes), 4, channels, h, w) float32 for cohort indices ``eyes``, maps in MAP_NAMES order."""
        if self._cached is not None:
            return self._cached[eyes]
        return network_inputs(self._images[eyes], self.normative, self._input_hw)


class MapInputs:
    """Images from thickness maps (n_cohort, 2, 224, 224) um; deviation from ``normative`` if given, else
    from each fit's own normal eyes."""

    def __init__(self, thickness_um: np.ndarray, labels: np.ndarray, input_hw, normative: Normative | None):
        self.thickness_um, self.labels, self.input_hw, self.normative = (
            thickness_um,
            labels,
            input_hw,
            normative,
        )

    def for_fit(self, eyes: np.ndarray) -> FitInputs:
        normative = self.normative or fit_normative(self.thickness_um, self.labels, eyes)
        return FitInputs(normative, images=self.thickness_um, input_hw=self.input_hw)


class FrozenInputs:
    """Outputs of the frozen layers of the starting network for every cohort eye, computed once here."""

    def __init__(self, thickness_um: np.ndarray, normative: Normative, settings):
        from training.hierarchy import start_network

        trunk = start_network(2, settings)
        chunks = []
        for start in range(0, len(thickness_um), CHUNK_EYES):
            x = network_inputs(thickness_um[start : start + CHUNK_EYES], normative, settings.input_hw)
            n = len(x)
            out = frozen_outputs(trunk, settings.frozen_layers, x.reshape(n * len(MAP_NAMES), *x.shape[2:]))
            chunks.append(out.reshape(n, len(MAP_NAMES), *out.shape[1:]))
        self.normative = normative
        self.outputs = np.concatenate(chunks)

    def for_fit(self, eyes: np.ndarray) -> FitInputs:
        return FitInputs(self.normative, cached=self.outputs)


def fixed_normative(maps, n_cohort: int) -> Normative:
    """The normative model of the gradable normative eyes (the maps after the cohort's first n_cohort)."""
    normal = n_cohort + np.flatnonzero(maps.gradable[n_cohort:])
    if len(normal) < 2:
        raise CohortError(f"{len(normal)} gradable normative eye(s): the normative model needs at least 2")
    return Normative.fit(maps.thickness_um[normal, 0], maps.thickness_um[normal, 1])


def make_inputs(thickness_um: np.ndarray, labels: np.ndarray, settings, normative: Normative | None = None):
    """MapInputs, or FrozenInputs when ``settings.frozen_layers`` (which needs pretrained weights and a
    fixed normative database: CohortError otherwise)."""
    if not settings.frozen_layers:
        return MapInputs(thickness_um, labels, settings.input_hw, normative)
    if settings.imagenet is None or normative is None:
        raise CohortError(
            "frozen layers need pretrained weights (--imagenet-weights) and a normative database fitted "
            "on separate normal eyes (a cohort with normative eyes): their outputs are computed once per eye"
        )
    return FrozenInputs(thickness_um, normative, settings)


Inputs = MapInputs | FrozenInputs
