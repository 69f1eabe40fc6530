"""Command line of the converters.

::

    python -m converters bundle CHECKPOINT_DIR OUT_DIR [--target cpu|tensorrt|all] [--signing-key KEY]
                                [--int8] [--bf16] [--overwrite] [--phantom-shape B D A]
    python -m converters keygen OUT_PREFIX         # OUT_PREFIX.key.pem (private, 0600) and .pub.pem
    python -m converters sign BUNDLE --signing-key KEY
    python -m converters verify BUNDLE [--backend onnxruntime|tensorrt|torch|auto]
                                       [--precision fp32|fp16|int8|bf16] [--trusted-keys PATH]
                                       [--cache-dir DIR] [--threads N]
    python -m converters random-checkpoint OUT_DIR [--width W] [--input-px N] [--seed S] [--overwrite]
                                                   [--phantom-shape B D A]

Exit status: 0 done (verify: every agreement within the manifest's tolerances); 1 verify found an
agreement beyond the tolerances, or ``bundle`` could not convert the checkpoint (a model beyond its
tolerance, a weight beyond float16's range, an unreadable checkpoint); 2 the command could not run
(bad command line, bundle or key, backend unavailable, folder not empty).
Each subcommand imports only what it needs: ``verify`` runs without torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sdk.bundle import PRECISIONS
from sdk.errors import OCTError

PROG = "python -m converters"


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Checkpoint -> model bundle, and its verification."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    bundle = commands.add_parser("bundle", help="convert a checkpoint directory into a model bundle")
    bundle.add_argument("checkpoint", metavar="CHECKPOINT_DIR")
    bundle.add_argument("out", metavar="OUT_DIR", help="new or empty folder for the bundle")
    bundle.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it is not empty")
    bundle.add_argument(
        "--target",
        default="all",
        choices=("cpu", "tensorrt", "all"),
        help="ship only what this target runs: cpu the merged FP32 models, tensorrt the per-stage FP32 "
        "and FP16 models the engine builder reads (default %(default)s: both)",
    )
    bundle.add_argument(
        "--int8",
        action="store_true",
        help="also ship int8 merged models, calibrated on the checkpoint's calibration eyes and refused "
        "(nothing written) unless they agree with FP32 within the int8 gate (target cpu or all)",
    )
    bundle.add_argument(
        "--bf16",
        action="store_true",
        help="declare bf16 (the torch backend on a CPU with bfloat16 instructions; no extra files) after "
        "checking it against FP32 on the calibration and golden eyes; refused (nothing written) beyond "
        "the bf16 gate",
    )
    _signing_key_option(bundle, required=False)
    _phantom_shape_option(bundle, "golden phantom eyes")

    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    keygen.add_argument(
        "prefix", metavar="OUT_PREFIX", help="writes OUT_PREFIX.key.pem and OUT_PREFIX.pub.pem"
    )

    sign = commands.add_parser("sign", help="sign a bundle (writes its manifest.sig)")
    sign.add_argument("bundle", metavar="BUNDLE")
    _signing_key_option(sign, required=True)

    verify = commands.add_parser("verify", help="run a bundle's golden eyes through a backend")
    verify.add_argument("bundle", metavar="BUNDLE")
    verify.add_argument(
        "--backend", default="onnxruntime", choices=("onnxruntime", "tensorrt", "torch", "auto")
    )
    verify.add_argument("--precision", choices=PRECISIONS, help="default: fp16 for tensorrt, fp32 otherwise")
    verify.add_argument(
        "--trusted-keys",
        metavar="PATH",
        action="append",
        help="public key file or folder the bundle must be signed by (repeatable; "
        "default: $OCTC_TRUSTED_KEYS)",
    )
    verify.add_argument("--cache-dir", metavar="DIR", help="TensorRT engine cache folder")
    verify.add_argument(
        "--threads", type=int, metavar="N", help="CPU threads per network (default: all cores)"
    )

    random_checkpoint = commands.add_parser(
        "random-checkpoint", help="a checkpoint with random networks (tests, demos)"
    )
    random_checkpoint.add_argument("out", metavar="OUT_DIR")
    random_checkpoint.add_argument(
        "--width", type=float, default=0.125, help="VGG16 channel scale (default %(default)s)"
    )
    random_checkpoint.add_argument(
        "--input-px", type=int, default=224, help="network input side (default %(default)s)"
    )
    random_checkpoint.add_argument("--seed", type=int, default=0)
    random_checkpoint.add_argument(
        "--shared-trunk-blocks",
        type=int,
        default=0,
        choices=range(6),
        metavar="N",
        help="stage-2 VGG blocks 1..N equal stage 1's, as trained with a shared trunk (default 0)",
    )
    random_checkpoint.add_argument("--overwrite", action="store_true")
    _phantom_shape_option(random_checkpoint, "phantom eyes it is made from")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "bundle":
            from converters.bundle import build_bundle

            print(
                build_bundle(
                    args.checkpoint,
                    args.out,
                    overwrite=args.overwrite,
                    phantom_shape=args.phantom_shape,
                    target=args.target,
                    signing_key=args.signing_key,
                    int8=args.int8,
                    bf16=args.bf16,
                )
            )
        elif args.command == "keygen":
            from converters.keys import write_key_pair

            private, public, key_id = write_key_pair(args.prefix)
            print(f"key id {key_id}\nprivate key {private} (keep it off devices)\npublic key {public}")
        elif args.command == "sign":
            from converters.bundle import sign_bundle
            from sdk.signing import read_private_key

            print(f"signed by key {sign_bundle(args.bundle, read_private_key(args.signing_key))}")
        elif args.command == "verify":
            from converters.verify import verify as run_verify

            result = run_verify(
                args.bundle,
                args.backend,
                args.precision,
                cache_dir=args.cache_dir,
                threads=args.threads,
                trusted_keys=args.trusted_keys,
            )
            print(result.report())
            return 0 if result.passed else 1
        else:
            from converters.random_checkpoint import make_random_checkpoint

            print(
                make_random_checkpoint(
                    args.out,
                    width=args.width,
                    input_hw=(args.input_px, args.input_px),
                    seed=args.seed,
                    phantom_shape=args.phantom_shape,
                    shared_trunk_blocks=args.shared_trunk_blocks,
                    overwrite=args.overwrite,
                )
            )
    except OCTError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # the checkpoint could not be converted
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 1 if args.command == "bundle" else 2
    return 0


def _signing_key_option(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--signing-key",
        metavar="KEY",
        required=required,
        help="Ed25519 private key (PEM) from 'keygen': the bundle is signed with it",
    )


def _phantom_shape_option(parser: argparse.ArgumentParser, eyes: str) -> None:
    parser.add_argument(
        "--phantom-shape",
        nargs=3,
        type=int,
        metavar=("B", "D", "A"),
        help=f"(n_bscans, depth, n_ascans) of the {eyes} (default: full size; 32 248 128 is 30x faster)",
    )


if __name__ == "__main__":
    sys.exit(main())
