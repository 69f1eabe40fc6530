"""Build the FP16 TensorRT engines of a bundle on this device, ahead of the first scan.

Usage::

    python -m sdk.build_engines BUNDLE [--cache-dir DIR] [--workspace-mb N] [--force]

Checks the bundle, then builds (or finds in the engine cache) one engine per model and prints
where each is. The first build takes minutes on a Jetson; later runs only check the cache.
Exit status: 0 done, 1 a problem with the bundle or the cache folder, 2 TensorRT or an NVIDIA
GPU is missing here (or the command line is wrong).
"""

from __future__ import annotations

import argparse
import logging
import sys

from sdk.engines.build import DEFAULT_WORKSPACE_BYTES, build_bundle_engines
from sdk.engines.cache import ENV_VAR
from sdk.errors import BackendUnavailable, OCTError


def main(argv: list[str] | None = None, prog: str = "python -m sdk.build_engines") -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Build the FP16 TensorRT engines of a model bundle on this device."
    )
    parser.add_argument("bundle", metavar="BUNDLE", help="bundle folder (with manifest.json)")
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=f"engine cache folder (default: ${ENV_VAR}, else ~/.cache/octclassify/engines)",
    )
    parser.add_argument(
        "--workspace-mb",
        metavar="N",
        type=int,
        default=DEFAULT_WORKSPACE_BYTES >> 20,
        help="TensorRT builder workspace limit in MiB (default %(default)s; lower it on 4 GB boards)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if a valid engine is cached")
    args = parser.parse_args(argv)
    if args.workspace_mb <= 0:
        parser.error("--workspace-mb must be a positive number of MiB")

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        engines = build_bundle_engines(
            args.bundle, cache_dir=args.cache_dir, force=args.force, workspace_bytes=args.workspace_mb << 20
        )
    except BackendUnavailable as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OCTError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    for name, path in engines.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
