"""The stage networks of the paper's three approaches (An et al. 2021, Fig. 2), fitted on one set of eyes.

    approach       networks per map (4 maps)                          stacking features per map
    flat           flat: 5 classes, from the start weights           its P(normal, FI, GE, MY, SS)
    hierarchical   stage1: normal vs glaucoma, from the start;       stage-1 P(normal),
                   stage2: FI/GE/MY/SS on glaucoma eyes, from start  stage-2 P(FI, GE, MY, SS)
    transfer       stage1 (the same network as hierarchical's);      stage-1 P(normal),
                   stage2_transfer: initialised from stage1          stage-2 P(FI, GE, MY, SS)
    controls       flat_from_stage1: 5 classes, from stage1          its P(normal, FI, GE, MY, SS)
                   flat_matched: 5 classes, from the start, trained  its P(normal, FI, GE, MY, SS)
                   for stage1's + stage2_transfer's optimiser steps

Approach 3 (transfer) is the product. Approaches 2 and 3 share their stage-1 network, so the only
difference between them is where stage 2 starts. Every network of every approach starts from the
same weights (pretrained, or one seeded random initialisation standing in for them), is trained with
the same settings on the same eyes, and every approach gives 4 x 5 = 20 stacking features. With
``frozen_layers`` the first layers keep their pretrained weights in every network and run once per
eye (training.trunk_cache); the networks then train on those outputs.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sdk.labels import CLASSES, GLAUCOMA_TYPES, STAGE1_CLASSES
from sdk.maps import MAP_NAMES, Normative
from sdk.nets.vgg16 import VGG16, freeze_blocks, load_imagenet_features, transfer_from
from training.data import NORMAL
from training.inputs import FitInputs, Inputs
from training.networks.fit import FitLog, FitSettings, fit_network, predict_proba
from training.pretrained import describe as describe_weights
from training.seeds import derive_seed
from training.splits import rest, take_patients
from training.trunk_cache import trainable

APPROACHES = ("flat", "hierarchical", "transfer")
"""The paper's three approaches (An et al. 2021, Fig. 2)."""
CONTROL_NETWORK_APPROACHES = ("flat_from_stage1", "flat_matched")
"""Network controls: a flat network started from the trained stage-1 network (what a second training
round gives without the hierarchy), and a flat network given exactly the optimiser steps that approach
3's stage 1 and stage 2 took together (compute-matched)."""
APPROACH_TITLES = {
    "flat": "1 flat 5-class",
    "hierarchical": "2 hierarchical, stage 2 from the start weights",
    "transfer": "3 hierarchical transfer (product)",
    "flat_from_stage1": "control: flat, started from the trained stage 1",
    "flat_matched": "control: flat, compute-matched to approach 3",
}
NETWORKS = {
    "flat": ("flat",),
    "hierarchical": ("stage1", "stage2"),
    "transfer": ("stage1", "stage2_transfer"),
    "flat_from_stage1": ("flat_from_stage1",),
    "flat_matched": ("flat_matched",),
}
"""The networks whose probabilities are each approach's stacking features."""
NEEDS = {
    "stage2_transfer": ("stage1",),
    "flat_from_stage1": ("stage1",),
    "flat_matched": ("stage1", "stage2_transfer"),
}
"""Networks that must be trained before another: its start, or the steps it is matched to."""
NETWORK_ORDER = ("flat", "stage1", "stage2", "stage2_transfer", "flat_from_stage1", "flat_matched")
NUM_CLASSES = {
    "flat": len(CLASSES),
    "stage1": len(STAGE1_CLASSES),
    "stage2": len(GLAUCOMA_TYPES),
    "stage2_transfer": len(GLAUCOMA_TYPES),
    "flat_from_stage1": len(CLASSES),
    "flat_matched": len(CLASSES),
}


@dataclass(frozen=True)
class NetworkSettings:
    """The stage networks and how they are trained.

    width : VGG16 channel multiplier (1.0 = VGG16). input_hw : (height, width) px of network input.
    dropout : before the head's linear layer. imagenet : a torchvision-layout VGG16 file to start
    from (torchvision's vgg16-397923af.pth, or training.pretrained's conversion of HED's), or None for
    a seeded random start (``start_seed``). shared_trunk_blocks : 0, or n: the transferred stage-2
    networks keep VGG blocks 1..n frozen at their stage-1 weights. frozen_layers : 0, or n: the
    first n modules of ``features`` keep their starting weights in every network, and their outputs
    are computed once per eye (training.trunk_cache); needs pretrained weights.
    val_fraction : share of the training eyes (whole patients) held out for early stopping.
    """

    width: float
    input_hw: tuple[int, int]
    dropout: float
    fit: FitSettings
    val_fraction: float
    imagenet: Path | None = None
    start_seed: int = 0
    shared_trunk_blocks: int = 0
    frozen_layers: int = 0

    def starting_weights(self) -> str:
        """One line saying which weights every network starts from."""
        if self.imagenet is None:
            return (
                f"random (He-normal trunk, torch seed {self.start_seed} + training seed): one starting "
                "trunk for every network of a run, standing in for pretrained weights (width 1.0 only)"
            )
        info = describe_weights(self.imagenet)
        return f"{info['name']}: {info['file']} (sha256 {info['sha256'][:16]}...)"

    def pretrained_weights(self) -> dict | None:
        """Provenance of the pretrained file (training.pretrained.describe), or None for a random start."""
        return None if self.imagenet is None else describe_weights(self.imagenet)


@dataclass
class StageModels:
    """The networks of one fit and the inputs they see.

    inputs : the fit's network inputs (its normative model and the images or cached trunk outputs).
    networks : {(network name, map name): VGG16}, network names from NETWORK_ORDER; whole VGG16s (with
        the frozen layers), as a checkpoint holds them.
    trained_on : eye indices (validation part included) that shaped the normative model and networks.
    logs : {(network name, map name): FitLog}.
    """

    inputs: FitInputs
    networks: dict[tuple[str, str], VGG16]
    trained_on: np.ndarray
    logs: dict[tuple[str, str], FitLog]
    input_hw: tuple[int, int]
    frozen_layers: int = 0

    @property
    def normative(self) -> Normative:
        return self.inputs.normative

    def features(self, eyes: np.ndarray, approaches) -> dict[str, np.ndarray]:
        """Stacking features (n_eyes, 20) float64 of each approach for cohort eyes ``eyes``. Columns: per
        map in MAP_NAMES order, a flat network's P(normal, FI, GE, MY, SS), or stage-1 P(normal) then
        stage-2 P(FI, GE, MY, SS) (sdk.labels.stacking_features())."""
        x = self.inputs.x(np.asarray(eyes))
        wanted = {name for a in approaches for name in NETWORKS[a]}
        probs = {
            key: predict_proba(trainable(model, self.frozen_layers), x[:, MAP_NAMES.index(key[1])])
            for key, model in self.networks.items()
            if key[0] in wanted
        }
        out = {}
        for approach in approaches:
            columns = []
            for map_name in MAP_NAMES:
                if len(NETWORKS[approach]) == 1:
                    columns.append(probs[(NETWORKS[approach][0], map_name)])
                else:
                    stage1, stage2 = NETWORKS[approach]
                    columns += [probs[(stage1, map_name)][:, :1], probs[(stage2, map_name)]]
            out[approach] = np.hstack(columns)
        return out


def needed_networks(approaches) -> list[str]:
    """The networks ``approaches`` need, with what they start from, in training order."""
    wanted = {name for a in approaches for name in NETWORKS[a]}
    for name in list(wanted):
        wanted |= set(NEEDS.get(name, ()))
    return [name for name in NETWORK_ORDER if name in wanted]


def fit_stage_models(
    inputs: Inputs,
    labels: np.ndarray,
    patients: np.ndarray,
    eyes: np.ndarray,
    approaches,
    settings: NetworkSettings,
    seed: int,
    pool: Executor | None = None,
    start_seed: int | None = None,
) -> StageModels:
    """Fit every network the ``approaches`` need on cohort eyes ``eyes``.

    inputs : the cohort's network inputs (training.inputs); its normative model is fitted on the
    normal eyes among ``eyes`` unless it holds a fixed one. labels : (n_cohort,) class indices into
    CLASSES; patients : (n_cohort,) patient ids. start_seed : torch seed of the starting weights
    (default ``settings.start_seed``). pool : processes that train the four maps' networks in
    parallel (None: in this process); the networks are the same either way, up to the
    floating-point effect of the thread count.
    """
    fit_inputs = inputs.for_fit(np.asarray(eyes))
    x = fit_inputs.x(np.asarray(eyes))
    y = labels[eyes]
    rng = np.random.default_rng(derive_seed(seed, "validation"))
    val = take_patients(y, patients[eyes], round(settings.val_fraction * len(eyes)), rng)
    train = rest(len(eyes), val)
    needed = needed_networks(approaches)
    start = settings.start_seed if start_seed is None else start_seed
    jobs = [
        (x[:, m], y, train, val, needed, settings, derive_seed(seed, map_name), start)
        for m, map_name in enumerate(MAP_NAMES)
    ]
    results = pool.map(_fit_map, *zip(*jobs, strict=True)) if pool else (_fit_map(*job) for job in jobs)
    networks, logs = {}, {}
    for map_name, fitted in zip(MAP_NAMES, results, strict=True):
        for name, (model, log) in fitted.items():
            networks[(name, map_name)], logs[(name, map_name)] = model, log
    return StageModels(
        fit_inputs, networks, np.asarray(eyes), logs, tuple(settings.input_hw), settings.frozen_layers
    )


def _fit_map(
    x, y, train, val, needed, settings: NetworkSettings, seed: int, start_seed: int
) -> dict[str, tuple[VGG16, FitLog]]:
    """The networks ``needed`` of one map, from its inputs x (n_eyes, channels, height, width): images,
    or the frozen layers' outputs; train and val are positions of the training and validation eyes."""
    fitted: dict[str, tuple[VGG16, FitLog]] = {}
    for name in needed:
        max_steps = None
        if name in ("stage2_transfer", "flat_from_stage1"):
            model = transfer_from(fitted["stage1"][0], NUM_CLASSES[name])
            if settings.shared_trunk_blocks and name == "stage2_transfer":
                freeze_blocks(model, settings.shared_trunk_blocks)
        else:
            model = start_network(NUM_CLASSES[name], settings, start_seed)
        if name == "flat_matched":
            max_steps = sum(fitted[n][1].steps for n in NEEDS[name])
        target = _targets(name, y)
        t, v = train[target[train] >= 0], val[target[val] >= 0]
        log = fit_network(
            trainable(model, settings.frozen_layers),
            x[t],
            target[t],
            x[v],
            target[v],
            settings.fit,
            derive_seed(seed, name),
            max_steps=max_steps,
        )
        fitted[name] = (model, log)
    return fitted


def start_network(num_classes: int, settings: NetworkSettings, start_seed: int | None = None) -> VGG16:
    """A network at the starting weights: the same trunk whatever ``num_classes`` (for one start seed)."""
    torch.manual_seed(settings.start_seed if start_seed is None else start_seed)  # trunk before head
    model = VGG16(num_classes, width=settings.width, dropout=settings.dropout)
    if settings.imagenet is not None:
        load_imagenet_features(model, settings.imagenet)
    return model


def _targets(network: str, y: np.ndarray) -> np.ndarray:
    """Class index of each eye for ``network``; -1 for eyes it does not train on (normal eyes in stage 2)."""
    if network == "stage1":
        return (y != NORMAL).astype(int)  # STAGE1_CLASSES: normal, glaucoma
    if network in ("stage2", "stage2_transfer"):
        return np.where(y != NORMAL, y - 1, -1)  # GLAUCOMA_TYPES = CLASSES[1:]
    return y  # the flat networks
