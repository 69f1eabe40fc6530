"""Named settings for the experiment and for training: smoke (CI), cpu (2-core CPU, < 1 h, random start),
cpu-transfer (2-core CPU, pretrained full-width VGG16, frozen early layers), paper (GPU).

Cohort sizes follow the paper (156 normal + 798 glaucoma eyes = 954; 215 test eyes; full training
set 739 eyes, reduced one 185 = a quarter). ``smoke`` shrinks everything to run in CI (its reduced
training set is half the full one: a quarter of its 93 eyes cannot hold every class in every fold); ``cpu``
keeps the paper's cohort and protocol and shrinks the networks (width, input size) and the rendered
volumes (64 B-scans of 256 A-scans: segmentation stays accurate) to fit one hour on 2 cores;
``cpu-transfer`` is full-width VGG16 from natural-image weights (``--imagenet-weights``): the first
12 convolutions frozen and computed once per eye (64 x 64 px input), conv5_3 and the head trained,
one test split of 215 eyes as in the paper (``--splits 3`` for three) with 5 training seeds, a
normative database of 200 separate normal eyes, the clinical cohort;
``cpu-transfer-224`` is ``cpu-transfer`` at the paper's 224 x 224 input (the size at which bf16 runs the
networks several times faster than FP32 on CPUs with bf16 matrix units); ``paper`` is full-width VGG16
at 224 x 224 with every layer trained from those weights, for a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sdk.maps import MAP_SIZE_PX
from training.hierarchy import NetworkSettings
from training.networks.fit import FitSettings

PAPER_TEST_FRACTION = 215 / 954
CPU_TRANSFER_FROZEN_LAYERS = (
    28  # torchvision indices: blocks 1-4 and conv5_1-5_2 frozen; conv5_3 + head trained
)


@dataclass(frozen=True)
class Preset:
    """Cohort, splits and networks of a run.

    n_normal, n_glaucoma, cohort_seed, volume_shape : the phantom cohort (used when no CSV is given);
    volume_shape (n_bscans, depth, n_ascans), None for the phantom's default (128, 496, 512).
    n_splits : random test splits. test_fraction : share of the gradable eyes in each test split.
    reduced_fraction : size of the reduced training set, as a share of the full one.
    k_folds : patient folds for the out-of-fold stacking features.
    needs_imagenet : the networks must start from pretrained weights (--imagenet-weights PATH).
    n_seeds : training seeds per split and training set (start weights, validation part, batch order).
    n_normative : normal eyes of other subjects whose normative model every fit uses (an instrument's
        database); 0: each fit uses its own normal training eyes.
    clinical : the phantom cohort is phantom.clinical_cohort (graded by two simulated specialists, only
        agreed eyes kept, clinical severity spectrum, fellow eyes that differ); else phantom.cohort.
    """

    name: str
    n_normal: int
    n_glaucoma: int
    cohort_seed: int
    volume_shape: tuple[int, int, int] | None
    n_splits: int
    test_fraction: float
    reduced_fraction: float
    k_folds: int
    network: NetworkSettings
    needs_imagenet: bool = False
    n_seeds: int = 1
    n_normative: int = 0
    clinical: bool = False


PRESETS = {
    "smoke": Preset(
        "smoke",
        n_normal=30,
        n_glaucoma=90,
        cohort_seed=7,
        volume_shape=(64, 248, 256),
        n_splits=2,
        test_fraction=PAPER_TEST_FRACTION,
        reduced_fraction=0.5,
        k_folds=3,
        network=NetworkSettings(
            width=1 / 32,
            input_hw=(32, 32),
            dropout=0.3,
            val_fraction=0.2,
            fit=FitSettings(max_epochs=2, patience=1, batch_size=32, learning_rate=1e-3, weight_decay=1e-4),
        ),
    ),
    "cpu": Preset(
        "cpu",
        n_normal=156,
        n_glaucoma=798,
        cohort_seed=0,
        volume_shape=(64, 496, 256),
        n_splits=3,
        test_fraction=PAPER_TEST_FRACTION,
        reduced_fraction=0.25,
        k_folds=3,
        network=NetworkSettings(
            width=1 / 8,
            input_hw=(64, 64),
            dropout=0.3,
            val_fraction=0.15,
            fit=FitSettings(max_epochs=30, patience=4, batch_size=32, learning_rate=3e-4, weight_decay=1e-4),
        ),
    ),
    "cpu-transfer": Preset(
        "cpu-transfer",
        n_normal=156,
        n_glaucoma=798,
        cohort_seed=0,
        volume_shape=(64, 496, 256),
        n_splits=1,  # the paper's one test set; 3 splits x 5 seeds take ~3.3 h on the 2-core AMD EPYC
        test_fraction=PAPER_TEST_FRACTION,
        reduced_fraction=0.25,
        k_folds=3,
        network=NetworkSettings(
            width=1.0,
            input_hw=(64, 64),
            dropout=0.5,
            val_fraction=0.15,
            frozen_layers=CPU_TRANSFER_FROZEN_LAYERS,
            fit=FitSettings(max_epochs=6, patience=2, batch_size=32, learning_rate=1e-4, weight_decay=1e-4),
        ),
        needs_imagenet=True,
        n_seeds=5,
        n_normative=200,
        clinical=True,
    ),
    "paper": Preset(
        "paper",
        n_normal=156,
        n_glaucoma=798,
        cohort_seed=0,
        volume_shape=None,
        n_splits=3,
        test_fraction=PAPER_TEST_FRACTION,
        reduced_fraction=0.25,
        k_folds=3,
        network=NetworkSettings(
            width=1.0,
            input_hw=(MAP_SIZE_PX, MAP_SIZE_PX),
            dropout=0.5,
            val_fraction=0.15,
            fit=FitSettings(max_epochs=30, patience=5, batch_size=32, learning_rate=1e-4, weight_decay=1e-4),
        ),
        needs_imagenet=True,
        n_seeds=5,
        n_normative=200,
        clinical=True,
    ),
}
PRESETS["cpu-transfer-224"] = replace(
    PRESETS["cpu-transfer"],
    name="cpu-transfer-224",
    network=replace(PRESETS["cpu-transfer"].network, input_hw=(MAP_SIZE_PX, MAP_SIZE_PX)),
)
