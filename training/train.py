"""Train the product, approach 3 (hierarchical transfer learning), and write the checkpoint directory.

    python -m training.train --preset smoke|cpu|paper --out CHECKPOINT_DIR [--csv COHORT.csv]
                             [--imagenet vgg16.pth] [--shared-trunk-blocks N] [--seed S] [--overwrite]

Every gradable eye of the cohort trains (no test split: ``training.experiment`` measures accuracy).
The stacker is fitted on out-of-fold confidences over k patient folds; the 8 stage networks and the
normative model are then fitted on all eyes. The checkpoint (training.checkpoint) records the
cohort, seeds, versions, settings, starting weights and out-of-fold metrics: per-map stage
accuracies of the fold networks, and the stacked 5-class result of a stacker refitted without each
fold (nested, so no eye is scored by a stacker that saw its features).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from converters.svm import export_svm
from sdk.errors import FileError
from sdk.labels import CLASSES
from sdk.maps import MAP_NAMES
from training.checkpoint import write_checkpoint
from training.cohort import CohortEye
from training.inputs import fixed_normative, make_inputs
from training.maps_cache import load_maps
from training.metrics import stage_accuracies, summarise
from training.networks.fit import configure_torch, training_pool
from training.options import add_arguments, resolve
from training.pipeline import Trained, plan_folds, require_classes, train_stacked
from training.presets import Preset
from training.report import compute_summary, describe_cohort, describe_normative, settings_summary, versions
from training.seeds import derive_seed
from training.splits import patient_folds, rest
from training.stacking import fit_stacker

APPROACH = "transfer"
STAGE_NETWORKS = {1: "stage1", 2: "stage2_transfer"}
CALIBRATION_EYES = 64  # training eyes whose thickness maps the checkpoint keeps for int8 calibration


def train_checkpoint(
    preset: Preset,
    eyes: list[CohortEye],
    cohort: dict,
    out,
    *,
    cache_dir,
    seed: int,
    n_jobs: int | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
    normative_eyes=(),
) -> Path:
    """Train approach 3 on every gradable eye and write the checkpoint directory ``out``.

    n_jobs : processes computing maps; workers : processes training networks (training_pool).
    Raises FileError (``out`` holds files and not ``overwrite``) or CohortError before training."""
    start = time.perf_counter()
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileError(f"{out} exists and is not empty; choose a new folder or pass --overwrite")
    labels = np.array([CLASSES.index(e.label) for e in eyes])
    patients = np.array([e.patient_id for e in eyes])
    require_classes(labels, "the cohort")
    all_maps = load_maps(list(eyes) + list(normative_eyes), cache_dir, n_jobs, progress)
    maps = all_maps.subset(np.arange(len(eyes)))
    normative = fixed_normative(all_maps, len(eyes)) if normative_eyes else None
    inputs = make_inputs(maps.thickness_um, labels, preset.network, normative)
    train = np.flatnonzero(maps.gradable)
    folds = plan_folds(
        labels, patients, train, preset.k_folds, derive_seed(seed, "folds"), "the gradable eyes"
    )
    with training_pool(workers) or nullcontext() as pool:
        trained = train_stacked(
            inputs,
            labels,
            patients,
            train,
            folds,
            (APPROACH,),
            preset.network,
            derive_seed(seed, "train"),
            pool,
        )
    networks = {
        (map_name, stage): _state(trained, name, map_name)
        for map_name in MAP_NAMES
        for stage, name in STAGE_NETWORKS.items()
    }
    provenance = {
        "approach": "3 hierarchical transfer: each map's stage 2 starts from its trained stage-1 network",
        "preset": preset.name,
        "command": command,
        "cohort": describe_cohort(cohort, eyes, labels, maps),
        "training_eyes": len(train),
        "seeds": {"run": seed, "start": preset.network.start_seed},
        "compute": compute_summary(workers),
        "starting_weights": preset.network.starting_weights(),
        "pretrained_weights": preset.network.pretrained_weights(),
        "normative": describe_normative(normative_eyes, normative),
        "settings": settings_summary(preset),
        "versions": versions(),
        "metrics": out_of_fold_metrics(trained, labels, patients, preset.k_folds, seed),
        "best_epochs": {f"{name}.{m}": log.best_epoch for (name, m), log in trained.final.logs.items()},
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    net = preset.network
    calibration = calibration_eyes(labels, train, derive_seed(seed, "calibration"))
    return write_checkpoint(
        out,
        networks,
        export_svm(trained.stackers[APPROACH]),
        trained.final.normative,
        width=net.width,
        input_hw=net.input_hw,
        dropout=net.dropout,
        shared_trunk_blocks=net.shared_trunk_blocks,
        provenance=provenance,
        overwrite=overwrite,
        calibration=(maps.thickness_um[calibration], labels[calibration]),
    )


def calibration_eyes(
    labels: np.ndarray, eyes: np.ndarray, seed: int, n: int = CALIBRATION_EYES
) -> np.ndarray:
    """Up to ``n`` of the training ``eyes`` (cohort indices), as many per class as the class allows
    and an equal share otherwise (what int8 calibration sees of every class), sorted."""
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(eyes[labels[eyes] == c]) for c in range(len(CLASSES))]
    turns = [members[rank] for rank in range(len(eyes)) for members in by_class if rank < len(members)]
    return np.sort(np.array(turns[:n], dtype=int))


def out_of_fold_metrics(
    trained: Trained, labels: np.ndarray, patients: np.ndarray, k_folds: int, seed: int
) -> dict:
    """Out-of-fold estimates: per-map stage accuracies of the fold networks, and the 5-class result of
    stackers each fitted without the fold it scores (on that fold's own inner patient folds)."""
    features = trained.oof_features[APPROACH]
    y, p = labels[trained.eyes], patients[trained.eyes]
    names = np.array(CLASSES)[y]
    predicted = np.empty(len(y), dtype=int)
    for j, held in enumerate(trained.folds):
        inner = rest(len(y), held)
        stacker = fit_stacker(
            features[inner],
            names[inner],
            patient_folds(y[inner], p[inner], k_folds, derive_seed(seed, "inner", j)),
        )
        predicted[held] = [CLASSES.index(c) for c in stacker.predict(features[held])]
    return {
        "out_of_fold": {
            "stacked": summarise(y, predicted),
            "stage_accuracy": stage_accuracies(features, y, APPROACH),
        }
    }


def _state(trained: Trained, network: str, map_name: str) -> dict:
    return {k: v.contiguous() for k, v in trained.final.networks[(network, map_name)].state_dict().items()}


def main(argv: list[str] | None = None) -> Path:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument(
        "--out", type=Path, required=True, help="checkpoint directory to write (new or empty)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the files of an existing checkpoint"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    preset, eyes, cohort, normative_eyes = resolve(parser, args)
    configure_torch(1 if args.workers > 1 else None)
    path = train_checkpoint(
        preset,
        eyes,
        cohort,
        args.out,
        cache_dir=args.cache_dir,
        seed=args.seed,
        n_jobs=args.jobs,
        workers=args.workers,
        overwrite=args.overwrite,
        command=" ".join(["python -m training.train", *argv]),
        normative_eyes=normative_eyes,
    )
    print(path)
    return path


if __name__ == "__main__":
    main()
