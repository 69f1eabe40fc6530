"""The stage networks of the paper's three approaches (An et al. 2021, Fig. 2), fitted on one set of eyes.

    approach       networks per map (4 maps)                          stacking features per map
    flat           flat: 5 classes, from the start weights           its P(normal, FI, GE, MY, SS)
    hierarchical   stage1: normal vs glaucoma, from the start;       stage-1 P(normal),
                   stage2: FI/GE/MY/SS on glaucoma eyes, from start  stage-2 P(FI, GE, MY, SS)
    transfer       stage1 (the same network as hierarchical's);      stage-1 P(normal),
                   stage2_transfer: initialised from stage1          stage-2 P(FI, GE, MY, SS)

Approach 3 (transfer) is the product. Approaches 2 and 3 share their stage-1 network, so the only
difference between them is where stage 2 starts. Every network of every approach starts from the
same weights (ImageNet, or one seeded random initialisation standing in for it), is trained with the
same settings on the same eyes, and every approach gives 4 x 5 = 20 stacking features.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sdk.files import file_sha256
from sdk.labels import CLASSES, GLAUCOMA_TYPES, STAGE1_CLASSES
from sdk.maps import MAP_NAMES, Normative
from sdk.nets.vgg16 import VGG16, freeze_blocks, load_imagenet_features, transfer_from
from training.data import NORMAL, fit_normative, network_inputs
from training.networks.fit import FitLog, FitSettings, fit_network, predict_proba
from training.seeds import derive_seed
from training.splits import rest, take_patients

APPROACHES = ("flat", "hierarchical", "transfer")
APPROACH_TITLES = {
    "flat": "1 flat 5-class",
    "hierarchical": "2 hierarchical, stage 2 from the start weights",
    "transfer": "3 hierarchical transfer (product)",
}
NETWORKS = {
    "flat": ("flat",),
    "hierarchical": ("stage1", "stage2"),
    "transfer": ("stage1", "stage2_transfer"),
}
NETWORK_ORDER = ("flat", "stage1", "stage2", "stage2_transfer")  # stage1 before the transfer from it
NUM_CLASSES = {
    "flat": len(CLASSES),
    "stage1": len(STAGE1_CLASSES),
    "stage2": len(GLAUCOMA_TYPES),
    "stage2_transfer": len(GLAUCOMA_TYPES),
}


@dataclass(frozen=True)
class NetworkSettings:
    """The stage networks and how they are trained.

    width : VGG16 channel multiplier (1.0 = VGG16). input_hw : (height, width) px of network input.
    dropout : before the head's linear layer. imagenet : torchvision vgg16-397923af.pth to start
    from, or None for a seeded random start (``start_seed``). shared_trunk_blocks : 0, or n: the
    transferred stage-2 networks keep VGG blocks 1..n frozen at their stage-1 weights.
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

    def starting_weights(self) -> str:
        """One line saying which weights every network starts from."""
        if self.imagenet is None:
            return (
                f"random (He-normal trunk, torch seed {self.start_seed}): one starting trunk for every "
                f"network, standing in for ImageNet, whose weights fit width 1.0 only"
            )
        digest = file_sha256(Path(self.imagenet))[:16]
        return f"ImageNet VGG16 trunk from {self.imagenet} (sha256 {digest}...)"


@dataclass
class StageModels:
    """The networks of one fit and the normative model their deviation maps use.

    networks : {(network name, map name): VGG16}, network names from NETWORK_ORDER.
    trained_on : eye indices (validation part included) that shaped the normative model and networks.
    logs : {(network name, map name): FitLog}.
    """

    normative: Normative
    networks: dict[tuple[str, str], VGG16]
    trained_on: np.ndarray
    logs: dict[tuple[str, str], FitLog]
    input_hw: tuple[int, int]

    def features(self, thickness_um: np.ndarray, approaches) -> dict[str, np.ndarray]:
        """Stacking features (n_eyes, 20) float64 of each approach, for eyes with thickness maps
        (n_eyes, 2, 224, 224) um. Columns: per map in MAP_NAMES order, the flat network's P(normal, FI,
        GE, MY, SS), or stage-1 P(normal) then stage-2 P(FI, GE, MY, SS) (sdk.labels.stacking_features())."""
        x = network_inputs(thickness_um, self.normative, self.input_hw)
        probs = {
            key: predict_proba(model, x[:, MAP_NAMES.index(key[1])]) for key, model in self.networks.items()
        }
        out = {}
        for approach in approaches:
            columns = []
            for map_name in MAP_NAMES:
                if approach == "flat":
                    columns.append(probs[("flat", map_name)])
                else:
                    stage1, stage2 = NETWORKS[approach]
                    columns += [probs[(stage1, map_name)][:, :1], probs[(stage2, map_name)]]
            out[approach] = np.hstack(columns)
        return out


def fit_stage_models(
    thickness_um: np.ndarray,
    labels: np.ndarray,
    patients: np.ndarray,
    eyes: np.ndarray,
    approaches,
    settings: NetworkSettings,
    seed: int,
    pool: Executor | None = None,
) -> StageModels:
    """Fit the normative model and every network the ``approaches`` need on ``eyes``.

    thickness_um : (n_cohort, 2, 224, 224) um; labels : (n_cohort,) class indices into CLASSES;
    patients : (n_cohort,) patient ids; eyes : indices of the training eyes.
    pool : processes that train the four maps' networks in parallel (None: in this process); the
    networks are the same either way, up to the floating-point effect of the thread count.
    """
    normative = fit_normative(thickness_um, labels, eyes)
    x = network_inputs(thickness_um[eyes], normative, settings.input_hw)
    y = labels[eyes]
    rng = np.random.default_rng(derive_seed(seed, "validation"))
    val = take_patients(y, patients[eyes], round(settings.val_fraction * len(eyes)), rng)
    train = rest(len(eyes), val)
    needed = [name for name in NETWORK_ORDER if any(name in NETWORKS[a] for a in approaches)]
    jobs = [
        (x[:, m], y, train, val, needed, settings, derive_seed(seed, map_name))
        for m, map_name in enumerate(MAP_NAMES)
    ]
    results = pool.map(_fit_map, *zip(*jobs, strict=True)) if pool else (_fit_map(*job) for job in jobs)
    networks, logs = {}, {}
    for map_name, fitted in zip(MAP_NAMES, results, strict=True):
        for name, (model, log) in fitted.items():
            networks[(name, map_name)], logs[(name, map_name)] = model, log
    return StageModels(normative, networks, np.asarray(eyes), logs, tuple(settings.input_hw))


def _fit_map(
    x, y, train, val, needed, settings: NetworkSettings, seed: int
) -> dict[str, tuple[VGG16, FitLog]]:
    """The networks ``needed`` of one map, from its images x (n_eyes, 3, height, width); train and val
    are positions of the training and validation eyes."""
    fitted: dict[str, tuple[VGG16, FitLog]] = {}
    for name in needed:
        if name == "stage2_transfer":
            model = transfer_from(fitted["stage1"][0], NUM_CLASSES[name])
            if settings.shared_trunk_blocks:
                freeze_blocks(model, settings.shared_trunk_blocks)
        else:
            model = start_network(NUM_CLASSES[name], settings)
        target = _targets(name, y)
        t, v = train[target[train] >= 0], val[target[val] >= 0]
        log = fit_network(model, x[t], target[t], x[v], target[v], settings.fit, derive_seed(seed, name))
        fitted[name] = (model, log)
    return fitted


def start_network(num_classes: int, settings: NetworkSettings) -> VGG16:
    """A network at the starting weights: the same trunk whatever ``num_classes``."""
    torch.manual_seed(settings.start_seed)  # the trunk is initialised before the head
    model = VGG16(num_classes, width=settings.width, dropout=settings.dropout)
    if settings.imagenet is not None:
        load_imagenet_features(model, settings.imagenet)
    return model


def _targets(network: str, y: np.ndarray) -> np.ndarray:
    """Class index of each eye for ``network``; -1 for eyes it does not train on (normal eyes in stage 2)."""
    if network == "flat":
        return y
    if network == "stage1":
        return (y != NORMAL).astype(int)  # STAGE1_CLASSES: normal, glaucoma
    return np.where(y != NORMAL, y - 1, -1)  # GLAUCOMA_TYPES = CLASSES[1:]
