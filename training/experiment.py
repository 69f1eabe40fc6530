"""The paper's comparison on a cohort: 3 approaches x {full, reduced training set} x random test splits.

    python -m training.experiment --preset smoke|cpu|paper [--csv COHORT.csv] [--imagenet vgg16.pth]
                                  [--shared-trunk-blocks N] [--seed S] [--out DIR]

Writes DIR/results.json, results.md (mean +- sd table) and results.png. Per split: the gradable eyes
are split by patient into a test set (215 of 954 eyes, as in the paper) and a full training set
(739); the reduced training set (a quarter: 185) is drawn from the full one by patient; both are
evaluated on the same test eyes. Every split and fold is planned and checked before any network is trained.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from sdk.labels import CLASSES
from training.cohort import CohortEye
from training.hierarchy import APPROACH_TITLES, APPROACHES
from training.maps_cache import load_maps
from training.metrics import stage_accuracies, summarise
from training.networks.fit import configure_torch, training_pool
from training.options import add_arguments, resolve
from training.pipeline import plan_folds, require_classes, train_stacked
from training.presets import Preset
from training.report import (
    compute_summary,
    describe_cohort,
    fairness_notes,
    machine,
    settings_summary,
    summary_stats,
    write_report,
)
from training.seeds import derive_seed
from training.splits import take_patients

log = logging.getLogger(__name__)
TRAINING_SETS = ("full", "reduced")


def run_experiment(
    preset: Preset,
    eyes: list[CohortEye],
    cohort: dict,
    *,
    cache_dir,
    seed: int,
    n_jobs: int | None = None,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Run the comparison; returns the results (JSON-serialisable) that training.report writes.

    n_jobs : processes computing maps; workers : processes training networks (training_pool).
    """
    labels = np.array([CLASSES.index(e.label) for e in eyes])
    patients = np.array([e.patient_id for e in eyes])
    require_classes(labels, "the cohort")
    maps = load_maps(eyes, cache_dir, n_jobs, progress)
    plans = plan_splits(labels, patients, np.flatnonzero(maps.gradable), preset, seed)
    runs = []
    with training_pool(workers) or nullcontext() as pool:
        for plan in plans:
            runs += _run_plan(plan, maps, labels, patients, preset, seed, pool)
    return {
        "preset": preset.name,
        "seed": seed,
        "settings": settings_summary(preset),
        "starting_weights": preset.network.starting_weights(),
        "compute": compute_summary(workers),
        "cohort": describe_cohort(cohort, eyes, labels, maps),
        "approaches": APPROACH_TITLES,
        "runs": runs,
        "summary": summary_stats(runs, APPROACHES, TRAINING_SETS),
        "notes": fairness_notes(preset),
    }


def _run_plan(plan: dict, maps, labels, patients, preset: Preset, seed: int, pool) -> list[dict]:
    """Train every approach on one plan's training eyes; one result per approach on its test eyes."""
    log.info(
        "split %d/%d, %s training set: %d training eyes, %d test eyes",
        plan["split"] + 1,
        preset.n_splits,
        plan["training_set"],
        len(plan["train"]),
        len(plan["test"]),
    )
    trained = train_stacked(
        maps.thickness_um,
        labels,
        patients,
        plan["train"],
        plan["folds"],
        APPROACHES,
        preset.network,
        derive_seed(seed, "train", plan["split"], plan["training_set"]),
        pool,
    )
    test = plan["test"]
    features = trained.final.features(maps.thickness_um[test], APPROACHES)
    runs = []
    for approach in APPROACHES:
        predicted = np.array(
            [CLASSES.index(c) for c in trained.stackers[approach].predict(features[approach])]
        )
        runs.append(
            {
                "split": plan["split"],
                "training_set": plan["training_set"],
                "approach": approach,
                "n_train": len(plan["train"]),
                "n_test": len(test),
                **summarise(labels[test], predicted),
                "stage_accuracy": stage_accuracies(features[approach], labels[test], approach),
                "best_epochs": _best_epochs(trained.final.logs),
            }
        )
    return runs


def plan_splits(
    labels: np.ndarray, patients: np.ndarray, gradable: np.ndarray, preset: Preset, seed: int
) -> list[dict]:
    """Every (split, training set) of the run with its training eyes, test eyes and folds (cohort
    indices; folds as positions into the training eyes). CohortError if any lacks a class."""
    plans = []
    n_test = round(preset.test_fraction * len(gradable))
    for split in range(preset.n_splits):
        rng = np.random.default_rng(derive_seed(seed, "split", split))
        test = gradable[take_patients(labels[gradable], patients[gradable], n_test, rng)]
        full = np.setdiff1d(gradable, test)
        reduced = full[
            take_patients(labels[full], patients[full], round(preset.reduced_fraction * len(full)), rng)
        ]
        for name, train in zip(TRAINING_SETS, (full, reduced), strict=True):
            where = f"the {name} training set of split {split + 1} ({len(train)} eyes)"
            folds = plan_folds(
                labels, patients, train, preset.k_folds, derive_seed(seed, "folds", split, name), where
            )
            plans.append({"split": split, "training_set": name, "train": train, "test": test, "folds": folds})
    return plans


def _best_epochs(logs: dict) -> dict[str, float]:
    """Mean best epoch of each network kind over the maps."""
    by_name: dict[str, list[int]] = {}
    for (name, _), fit_log in logs.items():
        by_name.setdefault(name, []).append(fit_log.best_epoch)
    return {name: float(np.mean(epochs)) for name, epochs in by_name.items()}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m training.experiment", description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--out", type=Path, help="output folder (default out/experiment-<preset>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    preset, eyes, cohort = resolve(parser, args)
    configure_torch(1 if args.workers > 1 else None)
    start = time.perf_counter()
    results = run_experiment(
        preset, eyes, cohort, cache_dir=args.cache_dir, seed=args.seed, n_jobs=args.jobs, workers=args.workers
    )
    results["command"] = " ".join(["python -m training.experiment", *argv])
    results["machine"] = machine()
    results["wall_time_s"] = round(time.perf_counter() - start, 1)
    out = args.out or Path("out") / f"experiment-{preset.name}"
    for path in write_report(results, out):
        print(path)
    return results


if __name__ == "__main__":
    main()
