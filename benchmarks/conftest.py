"""Shared inputs for the latency benchmarks, made once per session outside the timed calls.

The network benchmarks run a bundle of random-weight networks (speed does not depend on the
weights) at ``OCTC_BENCH_WIDTH`` (default 1: full VGG16) and ``OCTC_BENCH_INPUT_PX`` (default 224),
built into ``OCTC_BENCH_BUNDLE`` (default out/bench-bundle-w<width>-<px>) once and reused, by the
converters' command line in child processes (``python -m benchmarks.compare`` uses it too).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import phantom
import sdk
from sdk.bundle import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
WIDTH = float(os.environ.get("OCTC_BENCH_WIDTH", "1"))
INPUT_PX = int(os.environ.get("OCTC_BENCH_INPUT_PX", "224"))
SMALL_PHANTOM = ("32", "248", "128")  # golden and normative eyes of the bench bundle: fast to make


def bench_bundle_dir(target: str = "all") -> Path:
    """The benchmark bundle for ``target`` ("all", or "cpu": the lean bundle a CPU device runs, made
    from the same checkpoint), made if it does not exist yet."""
    default = ROOT / "out" / f"bench-bundle-w{WIDTH:g}-{INPUT_PX}"
    base = Path(os.environ.get("OCTC_BENCH_BUNDLE", default))
    folder = base if target == "all" else base.with_name(f"{base.name}-{target}")
    if not _current(folder):
        checkpoint = base.with_name(base.name + "-checkpoint")
        args = ["--width", str(WIDTH), "--input-px", str(INPUT_PX), "--phantom-shape", *SMALL_PHANTOM]
        commands = (
            []
            if (checkpoint / "checkpoint.json").exists()
            else [["random-checkpoint", str(checkpoint), "--overwrite", *args]]
        )
        commands.append(
            [
                "bundle",
                str(checkpoint),
                str(folder),
                "--overwrite",
                "--phantom-shape",
                *SMALL_PHANTOM,
                "--target",
                target,
            ]
        )
        for command in commands:
            subprocess.run([sys.executable, "-m", "converters", *command], check=True, cwd=ROOT)
    return folder


def _current(folder: Path) -> bool:
    """Whether ``folder`` holds a bundle of this SDK's schema (an older one is made again)."""
    try:
        return json.loads((folder / "manifest.json").read_text())["schema_version"] == SCHEMA_VERSION
    except (OSError, ValueError, KeyError, TypeError):
        return False


@pytest.fixture(scope="session")
def wide_volume():
    """The default wide-field phantom volume: 128 B-scans x 496 x 512 A-scans, 12 x 9 mm."""
    return phantom.make_eye("FI", seed=11).volume


@pytest.fixture(scope="session")
def wide_volume_npz(wide_volume, tmp_path_factory) -> Path:
    """The wide volume as an .npz file that ``sdk.read_volume`` and the C API worker read."""
    path = tmp_path_factory.mktemp("volume") / "wide.npz"
    np.savez(
        path,
        data=wide_volume.data,
        spacing_mm=np.array(wide_volume.spacing_mm),
        laterality=wide_volume.laterality,
        protocol=wide_volume.protocol,
    )
    return path


@pytest.fixture(scope="session")
def bundle():
    return sdk.bundle.Bundle.load(bench_bundle_dir())


@pytest.fixture(scope="session")
def network_input(bundle, wide_volume):
    maps = sdk.maps.extract(wide_volume, bundle.normative)
    return sdk.maps.to_network_input(maps.stack(), bundle.input_hw).astype(np.float32)
