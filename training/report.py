"""What an experiment writes: results.json, a markdown table (results.md) and a plot (results.png).

Every output states the starting weights, the network width and input size, the cohort (with its
ungradable eyes, left out and never given a class), the command, the machine and the wall time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from pathlib import Path

import numpy as np
import sklearn
import torch

import sdk
from sdk.cpu import cpu_model
from sdk.labels import CLASSES
from sdk.maps import MAP_NAMES
from sdk.nets.vgg16 import VGG16, count_macs
from training.maps_cache import CohortMaps
from training.metrics import WEIGHTED_ACCURACY_NOTE, per_class
from training.networks.fit import DEVICE
from training.presets import Preset
from training.stacking import CALIBRATION, SVM_C, SVM_KERNEL

METRICS = ("kappa", "balanced_accuracy", "accuracy", "brier", "ece")
PAPER = {"kappa": 0.809, "balanced_accuracy": 0.839, "flat_kappa": 0.727}  # An et al. 2021 and press release


def settings_summary(preset: Preset) -> dict:
    """The preset's cohort, split and network settings, with each network's size and cost."""
    net = preset.network
    model = VGG16(2, width=net.width)
    return {
        "volume_shape": list(preset.volume_shape) if preset.volume_shape else None,
        "n_splits": preset.n_splits,
        "test_fraction": preset.test_fraction,
        "reduced_fraction": preset.reduced_fraction,
        "k_folds": preset.k_folds,
        "n_seeds": preset.n_seeds,
        "network": {
            "arch": "VGG16 trunk (torchvision layout), global-average-pool + dropout + linear head",
            "width": net.width,
            "channels": [model.features[i].out_channels for i in (0, 5, 10, 17, 24)],
            "input_hw": list(net.input_hw),
            "dropout": net.dropout,
            "parameters_stage1": sum(p.numel() for p in model.parameters()),
            "macs_per_image": count_macs(model, net.input_hw),
            "shared_trunk_blocks": net.shared_trunk_blocks,
            "frozen_layers": net.frozen_layers,
            "trained_parameters": sum(p.numel() for p in model.features[net.frozen_layers :].parameters())
            + sum(p.numel() for p in model.head.parameters()),
            "val_fraction": net.val_fraction,
            "fit": dataclasses.asdict(net.fit),
            "loss": "cross-entropy weighted by inverse class frequency",
            "optimiser": "AdamW",
        },
        "stacker": f"CalibratedClassifierCV(ConfidenceSVC(kernel={SVM_KERNEL!r}, C={SVM_C}, gamma='scale'), "
        f"method={CALIBRATION!r}) on 20 out-of-fold confidences, calibrated over the same folds on the "
        "summed one-vs-one values per class (continuous; not SVC's vote-counting one-vs-rest scores)",
    }


def describe_cohort(cohort: dict, eyes, labels: np.ndarray, maps: CohortMaps) -> dict:
    """Size, classes and ungradable eyes (with their reasons) of a cohort."""
    ungradable = np.flatnonzero(~maps.gradable)
    return {
        **cohort,
        "n_eyes": len(eyes),
        "n_patients": len({e.patient_id for e in eyes}),
        "class_counts": dict(zip(CLASSES, np.bincount(labels, minlength=len(CLASSES)).tolist(), strict=True)),
        "gradable_class_counts": dict(
            zip(CLASSES, np.bincount(labels[maps.gradable], minlength=len(CLASSES)).tolist(), strict=True)
        ),
        "ungradable": {
            "count": len(ungradable),
            "note": "left out of training and evaluation, never given a class",
            "eyes": {eyes[i].eye_id: list(maps.reasons[i]) for i in ungradable},
        },
    }


def describe_normative(normative_eyes, normative) -> dict:
    """Where the deviation maps' normative model comes from."""
    if normative is None:
        return {"source": "each fit's own normal training eyes (test eyes and held-out folds never shape it)"}
    return {
        "source": "a separate set of normal eyes of other subjects, fitted once (an instrument's database)",
        "n_eyes": len(normative_eyes),
        "n_gradable_eyes_used": int(normative.n_eyes),
    }


def fairness_notes(preset: Preset) -> list[str]:
    """Why the three approaches are compared on equal terms, as stated in every report."""
    return [
        "Same eyes: every approach is trained on the same training eyes and tested on the same test eyes of "
        "each split; splits, the reduced training sets and the stacking folds are drawn by patient "
        "(fellow eyes never straddle a split) and stratified by class.",
        "Same maps: one normative model per fit, from that fit's normal training eyes only, serves every "
        "approach; all inputs come from sdk.maps.to_network_input, as at scan time.",
        "Same networks and budget: same architecture, width, input size and starting weights for every "
        "network; same optimiser, learning rate, batch size, epoch limit and early stopping on the same "
        "validation eyes; the class-weighted loss for all.",
        "Same stacking: every approach gives 20 out-of-fold confidences (flat: 5 probabilities x 4 maps; "
        "hierarchical: P(normal) + 4 type probabilities x 4 maps) to the same SVM on the same folds.",
        "Approaches 2 and 3 share their stage-1 networks: the only difference between them is whether stage "
        "2 starts from the starting weights or from the trained stage-1 network of the same map.",
        "Hierarchical approaches train two networks per map (stage 2 on glaucoma eyes only), the flat one "
        "one: they spend about twice the training compute.",
        f"Starting weights: {preset.network.starting_weights()}. From random weights, transfer from stage 1 "
        "is a larger head start than it is from ImageNet weights, so the gain of approach 3 over approach 2 "
        "measured here need not carry over to the paper preset.",
    ]


def summary_stats(runs: list[dict], approaches, training_sets) -> dict:
    """{approach: {training set: {metric: {mean, sd, values}, stage_accuracy, confusion}}}; sd is the
    sample sd over splits (0 for one split); confusion is summed over splits."""
    out: dict = {}
    for approach in approaches:
        for name in training_sets:
            chosen = [r for r in runs if r["approach"] == approach and r["training_set"] == name]
            if not chosen:
                continue
            entry = {"n_splits": len(chosen), "n_train": [r["n_train"] for r in chosen]}
            for metric in METRICS:
                values = [r[metric] for r in chosen]
                entry[metric] = {
                    "mean": float(np.mean(values)),
                    "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                    "values": values,
                }
            stages = chosen[0].get("stage_accuracy", {})
            entry["stage_accuracy"] = {
                stage: {m: float(np.mean([r["stage_accuracy"][stage][m] for r in chosen])) for m in per_map}
                for stage, per_map in stages.items()
            }
            entry["confusion"] = np.sum([r["confusion"] for r in chosen], axis=0).tolist()
            entry["per_class"] = per_class(np.array(entry["confusion"]))
            out.setdefault(approach, {})[name] = entry
    return out


def compute_summary(workers: int) -> dict:
    """Where the networks were trained: device, training processes and torch threads in each."""
    return {
        "device": DEVICE.type,
        "training_processes": workers,
        "torch_threads_per_process": 1 if workers > 1 else torch.get_num_threads(),
    }


def machine() -> dict:
    """CPU, cores, memory, OS and library versions of this machine."""
    cpu = cpu_model()
    memory_gib = None
    if Path("/proc/meminfo").is_file():
        memory_gib = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "os": platform.platform(),
        **versions(),
    }


def versions() -> dict:
    """Versions of Python, the libraries and the SDK."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "sdk": sdk.__version__,
    }


def write_report(results: dict, out_dir) -> list[Path]:
    """Write results.json, results.md and results.png into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.json", out_dir / "results.md", out_dir / "results.png"]
    predictions = results.get("predictions", [])
    saved = {k: v for k, v in results.items() if k != "predictions"}
    paths[0].write_text(json.dumps(saved, indent=1, sort_keys=False) + "\n")
    paths[1].write_text(markdown(saved))
    plot(saved, paths[2])
    if predictions:
        paths.append(out_dir / "predictions.csv.gz")
        write_predictions(predictions, paths[-1])
    return paths


PREDICTION_COLUMNS = ("split", "training_set", "seed_index", "approach", "eye_id", "cohort_index")


def write_predictions(predictions: list[dict], path: Path) -> None:
    """One row per (split, training set, seed, approach, test eye): its 5 class probabilities (CLASSES
    order, 6 decimals) and the predicted class (the most probable), gzip-compressed CSV."""
    import csv
    import gzip

    with gzip.open(path, "wt", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*PREDICTION_COLUMNS, *(f"p_{c}" for c in CLASSES), "predicted"])
        for p in predictions:
            for eye, index, probs in zip(p["eyes"], p["cohort_index"], p["probabilities"], strict=True):
                key = (p["split"], p["training_set"], p["seed_index"], p["approach"], eye, index)
                writer.writerow([*key, *(f"{v:.6f}" for v in probs), CLASSES[int(np.argmax(probs))]])


def markdown(results: dict) -> str:
    """The report as markdown: settings, the mean +- sd table, per-map stage accuracies, confusion
    matrices, fairness and weighted-accuracy notes."""
    s, cohort, c = results["settings"], results["cohort"], results["compute"]
    net = s["network"]
    fit = net["fit"]
    summary = results["summary"]
    lines = [
        f"# Hierarchical transfer vs flat classification: `{results['preset']}` preset",
        "",
        f"- Command: `{results.get('command', '')}` (seed {results['seed']})",
        f"- Machine: {_machine_line(results.get('machine'))}",
        f"- Compute: {c['device']}, {c['training_processes']} training process(es) x "
        f"{c['torch_threads_per_process']} torch thread(s)",
        f"- Wall time: {results.get('wall_time_s', 0) / 60:.1f} min, maps of new eyes included",
        f"- Starting weights: {results['starting_weights']}",
        f"- Networks: VGG16 width {net['width']:g} (channels {'-'.join(map(str, net['channels']))}), "
        f"input {net['input_hw'][0]} x {net['input_hw'][1]} px, {net['parameters_stage1'] / 1e6:.2f} M "
        f"parameters, {net['macs_per_image'] / 1e6:.1f} M MACs per image; shared trunk blocks "
        f"{net['shared_trunk_blocks']}; frozen layers {net.get('frozen_layers', 0)} (computed once per "
        f"eye), {net.get('trained_parameters', 0) / 1e6:.2f} M parameters trained",
        f"- Training: {net['optimiser']} lr {fit['learning_rate']:g}, batch {fit['batch_size']}, at most "
        f"{fit['max_epochs']} epochs, early stopping (patience {fit['patience']}) on "
        f"{100 * net['val_fraction']:.0f}% of the training eyes; {net['loss']}",
        f"- Stacker: {s['stacker']}, k = {s['k_folds']} patient folds",
        f"- Cohort: {cohort['source']}: {cohort['n_eyes']} eyes of {cohort['n_patients']} patients "
        f"({_counts(cohort['class_counts'])}); {cohort['ungradable']['count']} ungradable eye(s) left out "
        "of training and evaluation (never given a class)",
        f"- Splits: {s['n_splits']} random test splits by patient ({100 * s['test_fraction']:.1f}% of the "
        f"gradable eyes); the reduced training set is {100 * s['reduced_fraction']:.0f}% of each full one, "
        "tested on the same test eyes",
        "",
        f"Mean over {s['n_splits']} splits x {s.get('n_seeds', 1)} training seed(s) (logistic controls: "
        "one seed) with its 95 % bootstrap interval; sd over runs; weighted accuracy = balanced accuracy "
        "(see below).",
        "",
    ]
    lines += results_table(results)
    lines += ["", "## Paired differences (same test eyes, same seeds)", ""] + paired_table(results)
    lines += ["", "## Approach 3 against flat, test by test (per split and seed)", ""] + tests_table(results)
    lines += ["", "## Per-class sensitivity and PPV (test eyes pooled over splits and seeds)", ""]
    lines += per_class_table(results)
    lines += ["", "## Uncertainty", "", results.get("uncertainty", {}).get("method", ""), ""]
    lines += [
        "",
        "## Per-map accuracy of each stage network (test eyes, mean over splits)",
        "",
        "flat: 5-class accuracy; stage1: normal vs glaucoma on all test eyes; stage2: type on glaucoma "
        "test eyes.",
        "",
    ]
    rows = [
        [a, name, stage] + [f"{per_map[m]:.3f}" for m in MAP_NAMES]
        for a, per_set in summary.items()
        for name, e in per_set.items()
        for stage, per_map in e["stage_accuracy"].items()
    ]
    lines += _table(["approach", "training set", "network", *MAP_NAMES], rows)
    lines += ["", "## Confusion matrices (test eyes, summed over splits; rows true, columns predicted)", ""]
    for a, per_set in summary.items():
        for name, e in per_set.items():
            rows = [[c, *map(str, row)] for c, row in zip(CLASSES, e["confusion"], strict=True)]
            lines += [f"{results['approaches'][a]}, {name} training set:", ""]
            lines += _table(["true \\ predicted", *CLASSES], rows) + [""]
    lines += ["## How the comparison is kept fair", ""] + [f"- {note}" for note in results["notes"]]
    lines += ["", "## Weighted accuracy", "", WEIGHTED_ACCURACY_NOTE, ""]
    return "\n".join(lines)


def _ci(entry: dict | None) -> str:
    if not entry:
        return "–"
    return f"{entry['estimate']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def results_table(results: dict) -> list[str]:
    """The main table: per approach and training set, kappa and balanced accuracy with 95 % intervals,
    accuracy, Brier score and ECE, then the paper's figures."""
    intervals = results.get("uncertainty", {}).get("intervals", {})
    rows = []
    for a, per_set in results["summary"].items():
        for name, e in per_set.items():
            ci = intervals.get(a, {}).get(name, {})
            rows.append(
                [
                    results["approaches"][a],
                    name,
                    str(round(np.mean(e["n_train"]))),
                    f"{_ci(ci.get('kappa'))} (sd {e['kappa']['sd']:.3f})",
                    _ci(ci.get("balanced_accuracy")),
                    f"{e['accuracy']['mean']:.3f}",
                    f"{e['brier']['mean']:.3f}",
                    f"{e['ece']['mean']:.3f}",
                    str(e["n_splits"]),
                ]
            )
    rows += [
        [
            "paper: 3 hierarchical transfer",
            "full",
            "739",
            str(PAPER["kappa"]),
            str(PAPER["balanced_accuracy"]),
        ]
        + ["–"] * 4,
        ["paper: 1 flat", "full", "739", f"{PAPER['flat_kappa']} (press release)"] + ["–"] * 5,
        ["paper: 3 hierarchical transfer", "reduced (1/4)", "185", '"same accuracy kept" (press release)']
        + ["–"] * 5,
    ]
    headers = ["approach", "training set", "training eyes", "Cohen's kappa [95 % CI]"]
    headers += ["weighted (balanced) accuracy [95 % CI]", "accuracy", "Brier", "ECE", "runs"]
    return _table(headers, rows)


def paired_table(results: dict) -> list[str]:
    rows = [
        [pair, name, _ci(e["kappa"]), f"{e['kappa']['p_two_sided']:.3f}", _ci(e["balanced_accuracy"])]
        for pair, per_set in results.get("uncertainty", {}).get("paired", {}).items()
        for name, e in per_set.items()
    ]
    headers = ["difference", "training set", "kappa difference [95 % CI]", "bootstrap p"]
    return _table([*headers, "balanced accuracy difference [95 % CI]"], rows)


def tests_table(results: dict) -> list[str]:
    rows = []
    for name, tests in results.get("uncertainty", {}).get("tests", {}).items():
        for t in tests:
            m, sm = t["mcnemar"], t["stuart_maxwell"]
            rows.append(
                [
                    name,
                    str(t["split"] + 1),
                    str(t["seed_index"] + 1),
                    f"{m['a_only']} / {m['b_only']}",
                    f"{m['p']:.3f}",
                    f"{sm['chi2']:.2f} (df {sm['df']})",
                    f"{sm['p']:.3f}",
                ]
            )
    headers = ["training set", "split", "seed", "eyes right only by 3 / only by flat", "McNemar p"]
    return _table([*headers, "Stuart-Maxwell chi2", "Stuart-Maxwell p"], rows)


def per_class_table(results: dict) -> list[str]:
    def f(v):
        return "–" if v is None else f"{v:.2f}"

    rows = [
        [results["approaches"][a], name]
        + [f"{f(e['per_class'][c]['sensitivity'])} / {f(e['per_class'][c]['ppv'])}" for c in CLASSES]
        for a, per_set in results["summary"].items()
        for name, e in per_set.items()
    ]
    return _table(["approach", "training set", *(f"{c} sens / PPV" for c in CLASSES)], rows)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def plot(results: dict, path: Path) -> None:
    """Kappa and balanced accuracy per approach and training set: bars = mean, whiskers = sd,
    dots = single splits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    approaches = list(results["summary"])
    net = results["settings"]["network"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 6), layout="constrained")
    for ax, metric, paper in zip(
        axes, ("kappa", "balanced_accuracy"), (PAPER["kappa"], PAPER["balanced_accuracy"]), strict=True
    ):
        for k, (name, colour) in enumerate((("full", "tab:blue"), ("reduced", "tab:orange"))):
            x = np.arange(len(approaches)) + (k - 0.5) * 0.38
            entries = [results["summary"][a].get(name) for a in approaches]
            means = [e[metric]["mean"] if e else np.nan for e in entries]
            sds = [e[metric]["sd"] if e else 0.0 for e in entries]
            ax.bar(x, means, 0.36, yerr=sds, capsize=4, color=colour, alpha=0.8, label=f"{name} training set")
            for xi, e in zip(x, entries, strict=True):
                if e:
                    ax.plot([xi] * len(e[metric]["values"]), e[metric]["values"], "k.", ms=4)
        ax.axhline(paper, color="green", ls="--", lw=1, label=f"paper, approach 3 ({paper})")
        if metric == "kappa":
            ax.axhline(
                PAPER["flat_kappa"], color="grey", ls=":", lw=1, label=f"paper, flat ({PAPER['flat_kappa']})"
            )
        ax.set_xticks(
            np.arange(len(approaches)),
            [results["approaches"][a].replace(", ", ",\n") for a in approaches],
            fontsize=7,
            rotation=40,
            ha="right",
            rotation_mode="anchor",
        )
        ax.set_ylim(0, 1)
        ax.set_title("Cohen's kappa" if metric == "kappa" else "weighted (balanced) accuracy")
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(
        f"{results['preset']} preset: VGG16 width {net['width']:g}, input {net['input_hw'][0]} px, "
        f"start: {results['starting_weights'].split(':')[0]}; mean ± sd over "
        f"{results['settings']['n_splits']} split(s) x training seeds (dots: single runs)",
        fontsize=8,
    )
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _counts(counts: dict) -> str:
    return ", ".join(f"{c} {n}" for c, n in counts.items())


def _machine_line(m: dict | None) -> str:
    if not m:
        return "unknown"
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB{gpu}; "
        f"{m['os']}; Python {m['python']}, torch {m['torch']}, numpy {m['numpy']}, "
        f"scikit-learn {m['scikit_learn']}"
    )
