"""Command-line options shared by training.experiment and training.train, and what they resolve to."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import phantom
from sdk.errors import OCTError
from training.cohort import CohortEye, from_phantom, read_csv
from training.maps_cache import DEFAULT_CACHE_DIR
from training.networks.fit import default_workers
from training.presets import PRESETS, Preset
from training.pretrained import describe as describe_weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        required=True,
        help="smoke (CI, minutes), cpu (2-core CPU, < 1 h, random start), cpu-transfer (2-core CPU, "
        "pretrained VGG16, frozen early layers, 64 px, about an hour), cpu-transfer-224 (the same at "
        "224 px), paper (full VGG16 at 224, every layer trained, GPU)",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        help="cohort of your own labelled wide-field volumes: a CSV with "
        "columns path, label, laterality (optional patient_id); default: the preset's phantom cohort",
    )
    parser.add_argument(
        "--imagenet-weights",
        "--imagenet",
        dest="imagenet",
        type=Path,
        help="a torchvision-layout VGG16 file: torchvision's vgg16-397923af.pth, or HED's natural-image "
        "weights converted by python -m training.pretrained convert; every network starts from its trunk "
        "(required by --preset cpu-transfer and paper; fits width 1.0 only)",
    )
    parser.add_argument(
        "--normative-csv",
        type=Path,
        help="with --csv: normal eyes of other subjects (same columns, label normal) whose normative "
        "model every fit uses; default for the phantom: the preset's separate normative eyes",
    )
    parser.add_argument(
        "--shared-trunk-blocks",
        type=int,
        default=0,
        choices=range(6),
        metavar="N",
        help="stage-2 networks keep VGG blocks 1..N frozen at their stage-1 weights (0 = off)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="run seed: splits, folds, training order (default 0)"
    )
    parser.add_argument(
        "--splits", type=int, help="test splits (default: the preset's), e.g. 1 for a quick check"
    )
    parser.add_argument("--seeds", type=int, help="training seeds per split (default: the preset's)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"where maps are cached by content (default {DEFAULT_CACHE_DIR})",
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count(), help="processes computing maps (default: all cores)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="processes training the four maps' networks in parallel, one torch thread each "
        f"(default {default_workers()}: one per core, or 1 with a GPU)",
    )


def resolve(parser: argparse.ArgumentParser, args) -> tuple[Preset, list[CohortEye], dict, list[CohortEye]]:
    """The preset with the options applied, the cohort's eyes, a description of the cohort, and the
    separate normative eyes (empty: each fit uses its own normal training eyes).

    Refuses (parser.error, exit status 2) a pretrained preset without --imagenet-weights, a missing or
    wrong weights file, or pretrained weights with a preset of width other than 1.0.
    """
    preset = PRESETS[args.preset]
    if preset.needs_imagenet and args.imagenet is None:
        parser.error(
            f"--preset {preset.name} starts every network from pretrained weights: give "
            "--imagenet-weights PATH to torchvision's vgg16-397923af.pth or to HED's converted weights "
            "(python -m training.pretrained convert; nothing is downloaded)"
        )
    if args.imagenet is not None:
        if not args.imagenet.is_file():
            parser.error(f"--imagenet-weights {args.imagenet}: no such file")
        if preset.network.width != 1.0:
            parser.error(
                f"pretrained weights fit width 1.0 only; --preset {preset.name} uses width "
                f"{preset.network.width:g}: use --preset cpu-transfer or paper"
            )
        try:
            describe_weights(args.imagenet)
        except OCTError as error:
            parser.error(f"--imagenet-weights: {error}")
    network = dataclasses.replace(
        preset.network, imagenet=args.imagenet, shared_trunk_blocks=args.shared_trunk_blocks
    )
    preset = dataclasses.replace(
        preset,
        network=network,
        n_splits=args.splits or preset.n_splits,
        n_seeds=args.seeds or preset.n_seeds,
    )
    if args.csv is not None:
        normative = read_csv(args.normative_csv) if args.normative_csv else []
        if any(e.label != "normal" for e in normative):
            parser.error(f"--normative-csv {args.normative_csv}: every eye must be labelled normal")
        return preset, read_csv(args.csv), {"source": f"CSV {args.csv}"}, normative
    shape = preset.volume_shape or phantom.DEFAULT_SHAPE
    make = phantom.clinical_cohort if preset.clinical else phantom.cohort
    specs = make(preset.n_normal, preset.n_glaucoma, seed=preset.cohort_seed, shape=preset.volume_shape)
    normative = (
        phantom.normative_eyes(preset.n_normative, seed=preset.cohort_seed, shape=preset.volume_shape)
        if preset.n_normative
        else []
    )
    return (
        preset,
        from_phantom(specs),
        {
            "source": f"phantom.{make.__name__}(n_normal={preset.n_normal}, n_glaucoma={preset.n_glaucoma}, "
            f"seed={preset.cohort_seed}, shape={tuple(shape)}), wide-field 12 x 9 mm volumes",
        },
        from_phantom(normative),
    )
