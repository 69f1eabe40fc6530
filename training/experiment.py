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

from phantom import EyeSpec
from sdk.labels import CLASSES
from training.cohort import CohortEye
from training.controls import fit_logistic, oracle_features, summary_features
from training.hierarchy import APPROACH_TITLES, APPROACHES, CONTROL_NETWORK_APPROACHES
from training.inputs import fixed_normative, make_inputs
from training.maps_cache import load_maps
from training.metrics import stage_accuracies, summarise_probabilities
from training.networks.fit import configure_torch, training_pool
from training.options import add_arguments, resolve
from training.pipeline import plan_folds, require_classes, train_stacked
from training.presets import Preset
from training.report import (
    compute_summary,
    describe_cohort,
    describe_normative,
    fairness_notes,
    machine,
    settings_summary,
    summary_stats,
    write_report,
)
from training.seeds import derive_seed
from training.splits import take_patients
from training.uncertainty import (
    METRICS,
    UNCERTAINTY_NOTE,
    SplitPredictions,
    bootstrap,
    mcnemar,
    paired_bootstrap,
    stuart_maxwell,
)

log = logging.getLogger(__name__)
TRAINING_SETS = ("full", "reduced")
NETWORK_APPROACHES = APPROACHES + CONTROL_NETWORK_APPROACHES
BALANCED = "transfer_balanced"  # approach 3's features, class-weighted SVM
TITLES = {
    **APPROACH_TITLES,
    BALANCED: "control: approach 3 with a class-weighted stacker",
    "summary_logistic": "control: logistic regression on 10 summary numbers",
    "oracle_logistic": "ceiling: logistic regression on 10 generator parameters",
}


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
    normative_eyes: list[CohortEye] = (),
) -> dict:
    """Run the comparison; returns the results (JSON-serialisable) that training.report writes, with
    ``predictions``: one record per (split, training set, seed, approach) with its test eyes'
    probabilities.

    normative_eyes : normal eyes of other subjects whose normative model every fit uses (an
    instrument's database); none: each fit uses its own normal training eyes.
    n_jobs : processes computing maps; workers : processes training networks (training_pool).
    """
    labels = np.array([CLASSES.index(e.label) for e in eyes])
    patients = np.array([e.patient_id for e in eyes])
    require_classes(labels, "the cohort")
    all_maps = load_maps(list(eyes) + list(normative_eyes), cache_dir, n_jobs, progress)
    maps = all_maps.subset(np.arange(len(eyes)))
    normative = fixed_normative(all_maps, len(eyes)) if normative_eyes else None
    start = time.perf_counter()
    inputs = make_inputs(maps.thickness_um, labels, preset.network, normative)
    log.info("network inputs ready in %.0f s", time.perf_counter() - start)
    controls = control_features(eyes, maps, normative)
    plans = plan_splits(labels, patients, np.flatnonzero(maps.gradable), preset, seed)
    runs, predictions = [], []
    with training_pool(workers) or nullcontext() as pool:
        for plan in plans:
            for seed_index in range(preset.n_seeds):
                r, p = _run_plan(plan, inputs, labels, patients, eyes, preset, seed, seed_index, pool)
                runs, predictions = runs + r, predictions + p
            r, p = _run_controls(plan, controls, labels, eyes)
            runs, predictions = runs + r, predictions + p
    approaches = [a for a in TITLES if any(r["approach"] == a for r in runs)]
    return {
        "preset": preset.name,
        "seed": seed,
        "settings": settings_summary(preset),
        "starting_weights": preset.network.starting_weights(),
        "pretrained_weights": preset.network.pretrained_weights(),
        "compute": compute_summary(workers),
        "cohort": describe_cohort(cohort, eyes, labels, maps),
        "normative": describe_normative(normative_eyes, normative),
        "approaches": {a: TITLES[a] for a in approaches},
        "runs": runs,
        "summary": summary_stats(runs, approaches, TRAINING_SETS),
        "uncertainty": uncertainty(predictions, labels, patients, approaches, TRAINING_SETS),
        "notes": fairness_notes(preset),
        "predictions": predictions,
    }


def control_features(eyes, maps, normative) -> dict[str, np.ndarray]:
    """Features of the logistic-regression controls: the 10 summary numbers (with the fixed normative
    database, or None without one) and, for phantom eyes, the generator parameters."""
    out = {}
    if normative is not None:
        out["summary_logistic"] = summary_features(maps.thickness_um, normative)
    if all(isinstance(e.source, EyeSpec) for e in eyes):
        out["oracle_logistic"] = oracle_features([e.source.params() for e in eyes])
    return out


def _record(plan, approach, seed_index, test, labels, eyes, probabilities, n_train) -> tuple[dict, dict]:
    """The run's metrics and its per-eye prediction record."""
    run = {
        "split": plan["split"],
        "training_set": plan["training_set"],
        "seed_index": seed_index,
        "approach": approach,
        "n_train": n_train,
        "n_test": len(test),
        **summarise_probabilities(labels[test], probabilities),
    }
    prediction = {
        "split": plan["split"],
        "training_set": plan["training_set"],
        "seed_index": seed_index,
        "approach": approach,
        "eyes": [eyes[i].eye_id for i in test],
        "cohort_index": test.tolist(),
        "probabilities": probabilities.round(6).tolist(),
    }
    return run, prediction


def in_class_order(model, x: np.ndarray) -> np.ndarray:
    """predict_proba of a classifier whose classes_ are class names, columns in CLASSES order."""
    proba = model.predict_proba(x)
    return proba[:, [list(model.classes_).index(c) for c in CLASSES]]


def _run_plan(plan: dict, inputs, labels, patients, eyes, preset: Preset, seed: int, seed_index: int, pool):
    """Train every network approach on one plan's training eyes with one training seed; one result and
    one prediction record per approach on its test eyes."""
    log.info(
        "split %d/%d, %s training set, seed %d/%d: %d training eyes, %d test eyes",
        plan["split"] + 1,
        preset.n_splits,
        plan["training_set"],
        seed_index + 1,
        preset.n_seeds,
        len(plan["train"]),
        len(plan["test"]),
    )
    trained = train_stacked(
        inputs,
        labels,
        patients,
        plan["train"],
        plan["folds"],
        NETWORK_APPROACHES,
        preset.network,
        derive_seed(seed, "train", plan["split"], plan["training_set"], seed_index),
        pool,
        start_seed=preset.network.start_seed + seed_index,
        balanced_stacker="transfer",
    )
    test = plan["test"]
    features = trained.final.features(test, NETWORK_APPROACHES)
    runs, predictions = [], []
    for approach, stacker in trained.stackers.items():
        probabilities = in_class_order(stacker, features[approach.removesuffix("_balanced")])
        run, prediction = _record(
            plan, approach, seed_index, test, labels, eyes, probabilities, len(plan["train"])
        )
        if approach in NETWORK_APPROACHES:
            run["stage_accuracy"] = stage_accuracies(features[approach], labels[test], approach)
        run["training"] = _training_log(trained.final.logs)
        runs.append(run)
        predictions.append(prediction)
    return runs, predictions


def _run_controls(plan: dict, controls: dict[str, np.ndarray], labels, eyes):
    """The logistic-regression controls on one plan (deterministic: one seed)."""
    runs, predictions = [], []
    names = np.array(CLASSES)[labels]
    for approach, x in controls.items():
        model = fit_logistic(x[plan["train"]], names[plan["train"]])
        probabilities = in_class_order(model, x[plan["test"]])
        run, prediction = _record(
            plan, approach, 0, plan["test"], labels, eyes, probabilities, len(plan["train"])
        )
        runs.append(run)
        predictions.append(prediction)
    return runs, predictions


def uncertainty(predictions: list[dict], labels, patients, approaches, training_sets) -> dict:
    """Bootstrap intervals of kappa and balanced accuracy per approach and training set; paired
    differences of every approach against the flat one and of each training set's approach 3 against
    the full set's; McNemar and Stuart-Maxwell of approach 3 against flat per split and seed."""
    table = {(p["approach"], p["training_set"]): [] for p in predictions}
    for p in predictions:
        table[(p["approach"], p["training_set"])].append(p)

    def splits(approach, name) -> list[SplitPredictions]:
        records = table.get((approach, name), [])
        out = []
        for split in sorted({r["split"] for r in records}):
            chosen = sorted((r for r in records if r["split"] == split), key=lambda r: r["seed_index"])
            test = np.array(chosen[0]["cohort_index"])
            pred = np.array([np.argmax(r["probabilities"], axis=1) for r in chosen])
            out.append(SplitPredictions(pred, labels[test], patients[test]))
        return out

    out: dict = {"method": UNCERTAINTY_NOTE, "intervals": {}, "paired": {}, "tests": {}}
    for approach in approaches:
        for name in training_sets:
            if (approach, name) in table:
                out["intervals"].setdefault(approach, {})[name] = {
                    m: bootstrap(splits(approach, name), m) for m in METRICS
                }
    for name in training_sets:
        for approach in approaches:
            if approach != "flat" and (approach, name) in table and ("flat", name) in table:
                out["paired"].setdefault(f"{approach} - flat", {})[name] = {
                    m: paired_bootstrap(splits(approach, name), splits("flat", name), m) for m in METRICS
                }
    for approach in ("transfer", "flat"):
        if (approach, "reduced") in table and (approach, "full") in table:
            out["paired"][f"{approach}: reduced - full"] = {
                "reduced": {
                    m: paired_bootstrap(splits(approach, "reduced"), splits(approach, "full"), m)
                    for m in METRICS
                }
            }
    for name in training_sets:
        a, b = table.get(("transfer", name), []), table.get(("flat", name), [])
        for ra in a:
            rb = next(r for r in b if (r["split"], r["seed_index"]) == (ra["split"], ra["seed_index"]))
            y = labels[np.array(ra["cohort_index"])]
            pa, pb = np.argmax(ra["probabilities"], axis=1), np.argmax(rb["probabilities"], axis=1)
            out["tests"].setdefault(name, []).append(
                {
                    "split": ra["split"],
                    "seed_index": ra["seed_index"],
                    "mcnemar": mcnemar(pa == y, pb == y),
                    "stuart_maxwell": stuart_maxwell(pa, pb, len(CLASSES)),
                }
            )
    return out


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


def _training_log(logs: dict) -> dict[str, dict[str, float]]:
    """Mean best epoch, epochs run and optimiser steps of each network kind over the maps (final fit)."""
    by_name: dict[str, list] = {}
    for (name, _), fit_log in logs.items():
        by_name.setdefault(name, []).append(fit_log)
    return {
        name: {
            "best_epoch": float(np.mean([f.best_epoch for f in fits])),
            "epochs": float(np.mean([f.epochs for f in fits])),
            "steps": float(np.mean([f.steps for f in fits])),
        }
        for name, fits in by_name.items()
    }


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m training.experiment", description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--out", type=Path, help="output folder (default out/experiment-<preset>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    preset, eyes, cohort, normative_eyes = resolve(parser, args)
    configure_torch(1 if args.workers > 1 else None)
    start = time.perf_counter()
    results = run_experiment(
        preset,
        eyes,
        cohort,
        cache_dir=args.cache_dir,
        seed=args.seed,
        n_jobs=args.jobs,
        workers=args.workers,
        normative_eyes=normative_eyes,
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
