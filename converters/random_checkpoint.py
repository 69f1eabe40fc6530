"""A checkpoint with random networks: for tests, and for the demo before a trained one exists.

``make_random_checkpoint(path)`` writes a checkpoint directory in the format of
:mod:`training.checkpoint` that converts and runs like a trained one:

* networks: per map a stage-1 VGG16 (torchvision's He initialisation) and a stage-2 VGG16 that
  starts from its trunk (``transfer_from``, as in training). A fresh head (normal(0, 0.01)) gives
  near-uniform probabilities, where a top-class comparison means nothing; so each head is rescaled
  on phantom inputs (the normal eyes and one eye of each glaucoma type): logits =
  W (f - mean f) / spread f + b, W and b standard normal, which spreads the logits by about 1
  around per-class offsets and makes the outputs depend on the input.
* stacker: ``CalibratedClassifierCV(SVC(kernel="rbf"))`` fitted on synthetic stacking features
  (stage-1 P(normal) high for normal eyes, stage-2 probabilities peaked on the true type).
* normative: :class:`sdk.maps.Normative` of a few normal phantom eyes.
* calibration: the thickness maps of those eyes and the glaucoma ones (what int8 calibrates on).

``python -m converters random-checkpoint OUT_DIR`` runs it from the command line.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.svm import SVC

import phantom
import sdk
from converters.svm import export_svm
from sdk import maps
from sdk.labels import CLASSES, GLAUCOMA_TYPES, STAGE1_CLASSES, STAGE2_CLASSES
from sdk.maps import MAP_NAMES, Normative
from sdk.nets.vgg16 import VGG16, freeze_blocks, transfer_from
from training.checkpoint import write_checkpoint

STACKER_EYES_PER_CLASS = 30  # synthetic stacking samples per class
TRAINING_DRIFT = 0.01  # fine-tuned stage-2 weights differ from stage 1 by this share of their spread
LOGIT_SPREAD = 1.0  # sd of the input-dependent part of the rescaled logits


def make_random_checkpoint(
    path: str | os.PathLike,
    *,
    width: float = 0.125,
    input_hw: tuple[int, int] = (224, 224),
    seed: int = 0,
    n_normals: int = 4,
    phantom_shape: tuple[int, int, int] | None = None,
    shared_trunk_blocks: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint with random networks, a synthetic stacker and a phantom normative database.

    Parameters
    ----------
    path : checkpoint folder (new or empty, unless ``overwrite``).
    width : VGG16 channel scale (0.125: 8 to 64 channels per conv).
    input_hw : network input (height, width) in px.
    seed : seeds torch, numpy and the phantom eyes; the checkpoint is deterministic for it.
    n_normals : normal phantom eyes (OD) behind the normative database (>= 2); they and one eye of
        each glaucoma type rescale the heads.
    phantom_shape : (n_bscans, depth, n_ascans) of those eyes (default: phantom's full size; a small
        shape such as (32, 248, 128) is 30x faster, for tests).
    shared_trunk_blocks : stage-2 VGG blocks 1..N keep the stage-1 weights; the later blocks are
        perturbed a little, as training them would (0: every block differs).

    Returns the checkpoint path.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    normals = [
        phantom.make_eye("normal", seed=seed + i, shape=phantom_shape).volume for i in range(n_normals)
    ]
    thickness = [maps.extract(volume) for volume in normals]
    normative = Normative.fit([m.rnfl_thickness for m in thickness], [m.gcc_thickness for m in thickness])
    glaucoma = [phantom.make_eye(kind, seed=seed, shape=phantom_shape).volume for kind in GLAUCOMA_TYPES]
    extracted = [maps.extract(v, normative) for v in normals + glaucoma]
    inputs = np.stack(
        [maps.to_network_input(m.stack(), input_hw) for m in extracted]
    )  # (n_normals + 4, 4, 3, H, W)
    calibration = (
        np.stack([(m.rnfl_thickness, m.gcc_thickness) for m in extracted]),
        np.array([0] * n_normals + [CLASSES.index(kind) for kind in GLAUCOMA_TYPES]),
    )

    networks = {}
    for m, map_name in enumerate(MAP_NAMES):
        stage1 = VGG16(len(STAGE1_CLASSES), width=width)
        stage2 = transfer_from(stage1, len(STAGE2_CLASSES))
        _as_if_trained(stage2, shared_trunk_blocks)
        for stage, model in ((1, stage1), (2, stage2)):
            _spread_head(model.eval(), torch.from_numpy(inputs[:, m]))
            networks[(map_name, stage)] = model.state_dict()

    features, labels = synthetic_stacking_features(STACKER_EYES_PER_CLASS, rng)
    stacker = CalibratedClassifierCV(SVC(kernel="rbf", C=1.0), method="sigmoid", cv=3).fit(features, labels)
    provenance = {
        "kind": "random weights (converters.random_checkpoint): no training, for tests and demos",
        "seeds": {
            "torch": seed,
            "numpy": seed,
            "phantom_normals": list(range(seed, seed + n_normals)),
            "phantom_glaucoma": seed,
        },
        "cohort": {
            "normative": f"{n_normals} normal phantom eyes, shape {phantom_shape or 'default'}",
            "stacker": f"{STACKER_EYES_PER_CLASS} synthetic feature vectors per class",
        },
        "metrics": {},
        "starting_weights": "torchvision initialisation, heads rescaled on phantom eyes of every class",
        "versions": {
            "sdk": sdk.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "python": platform.python_version(),
        },
    }
    return write_checkpoint(
        path,
        networks,
        export_svm(stacker),
        normative,
        width=width,
        input_hw=input_hw,
        dropout=0.5,
        shared_trunk_blocks=shared_trunk_blocks,
        provenance=provenance,
        overwrite=overwrite,
        calibration=calibration,
    )


@torch.no_grad()
def _as_if_trained(stage2: VGG16, shared_trunk_blocks: int) -> None:
    """Perturb the stage-2 trunk beyond its first ``shared_trunk_blocks`` blocks by 1 % of each
    tensor's spread, as fine-tuning would change it (frozen blocks stay the stage-1 weights)."""
    frozen = set(freeze_blocks(stage2, shared_trunk_blocks))
    for name, p in stage2.features.named_parameters():
        p.requires_grad_(True)
        if f"features.{name}" not in frozen:
            p.add_(TRAINING_DRIFT * (p.std() + 1e-3) * torch.randn_like(p))


@torch.no_grad()
def _spread_head(model: VGG16, x: torch.Tensor) -> None:
    """Replace the head so its logits on ``x`` (n, 3, H, W) vary by about LOGIT_SPREAD around offsets.

    The pooled features are centred on their mean over ``x`` and scaled by their root-mean-square
    spread over all channels (not per channel: a nearly constant channel would get a huge weight).
    """
    features = model.pool(model.features(x)).flatten(1)  # (n, channels)
    mean = features.mean(0)
    spread = features.std(0, unbiased=False).square().mean().sqrt() + 1e-6
    weight = LOGIT_SPREAD * torch.randn_like(model.head.weight) / (spread * features.shape[1] ** 0.5)
    model.head.weight.copy_(weight)
    model.head.bias.copy_(torch.randn_like(model.head.bias) - weight @ mean)


def synthetic_stacking_features(n_per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stacking features (n, 20) in ``sdk.labels.stacking_features()`` order and labels (n,) from CLASSES.

    Per map: stage-1 P(normal) uniform in [0.6, 1] for normal eyes and [0, 0.4] otherwise, then the
    four stage-2 probabilities from a Dirichlet peaked on the eye's type (flat for normal eyes).
    """
    rows, labels = [], []
    for label in CLASSES:
        alpha = np.ones(len(GLAUCOMA_TYPES))
        if label != "normal":
            alpha[GLAUCOMA_TYPES.index(label)] = 6.0
        for _ in range(n_per_class):
            row = []
            for _map in MAP_NAMES:
                row.append(rng.uniform(0.6, 1.0) if label == "normal" else rng.uniform(0.0, 0.4))
                row.extend(rng.dirichlet(alpha))
            rows.append(row)
            labels.append(label)
    return np.array(rows), np.array(labels)
