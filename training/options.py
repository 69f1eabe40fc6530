"""Command-line options shared by training.experiment and training.train, and what they resolve to."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import phantom
from training.cohort import CohortEye, from_phantom, read_csv
from training.maps_cache import DEFAULT_CACHE_DIR
from training.networks.fit import default_workers
from training.presets import PRESETS, Preset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        required=True,
        help="smoke (CI, minutes), cpu (2-core CPU, < 1 h), paper (full VGG16 at 224, GPU)",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        help="cohort of your own labelled wide-field volumes: a CSV with "
        "columns path, label, laterality (optional patient_id); default: the preset's phantom cohort",
    )
    parser.add_argument(
        "--imagenet",
        type=Path,
        help="torchvision's vgg16-397923af.pth: start every network "
        "from its ImageNet trunk (required by --preset paper; fits width 1.0 only)",
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


def resolve(parser: argparse.ArgumentParser, args) -> tuple[Preset, list[CohortEye], dict]:
    """The preset with the options applied, the cohort's eyes and a description of the cohort.

    Refuses (parser.error, exit status 2) a paper run without --imagenet, a missing weights file, or
    ImageNet weights with a preset of width other than 1.0.
    """
    preset = PRESETS[args.preset]
    if preset.needs_imagenet and args.imagenet is None:
        parser.error(
            f"--preset {preset.name} starts every network from ImageNet weights: give "
            "--imagenet PATH to torchvision's vgg16-397923af.pth (nothing is downloaded)"
        )
    if args.imagenet is not None:
        if not args.imagenet.is_file():
            parser.error(f"--imagenet {args.imagenet}: no such file")
        if preset.network.width != 1.0:
            parser.error(
                f"ImageNet weights fit width 1.0 only; --preset {preset.name} uses width "
                f"{preset.network.width:g}: use --preset paper"
            )
    network = dataclasses.replace(
        preset.network, imagenet=args.imagenet, shared_trunk_blocks=args.shared_trunk_blocks
    )
    preset = dataclasses.replace(preset, network=network)
    if args.csv is not None:
        return preset, read_csv(args.csv), {"source": f"CSV {args.csv}"}
    specs = phantom.cohort(
        preset.n_normal, preset.n_glaucoma, seed=preset.cohort_seed, shape=preset.volume_shape
    )
    shape = preset.volume_shape or phantom.DEFAULT_SHAPE
    return (
        preset,
        from_phantom(specs),
        {
            "source": f"phantom.cohort(n_normal={preset.n_normal}, n_glaucoma={preset.n_glaucoma}, "
            f"seed={preset.cohort_seed}, shape={tuple(shape)}), wide-field 12 x 9 mm volumes",
        },
    )
