"""``python -m sdk.classify VOLUME... --bundle DIR``: classify OCT volumes from files.

Prints one line per volume (or JSON with --json) and optionally writes a PNG report per volume.
Exit codes: 0 every volume classified; 3 a scan was ungradable; 2 bad input (file, volume, bundle,
backend or arguments); 4 internal error. With several volumes the most severe code wins, in the order
4, 2, 3, 0. A user's mistake never prints a Python traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sdk.errors import OCTError

EXIT_OK, EXIT_BAD_INPUT, EXIT_UNGRADABLE, EXIT_INTERNAL = 0, 2, 3, 4
SEVERITY = (EXIT_OK, EXIT_UNGRADABLE, EXIT_BAD_INPUT, EXIT_INTERNAL)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 on bad arguments, as documented above
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m sdk.classify",
        description=__doc__.splitlines()[0],
        epilog="exit codes: 0 classified, 3 ungradable scan, 2 bad input, 4 internal error",
    )
    parser.add_argument("volumes", nargs="+", type=Path, metavar="VOLUME", help=".dcm, .npz or .npy volumes")
    parser.add_argument("--bundle", required=True, type=Path, help="model bundle folder")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "torch"))
    parser.add_argument("--precision", choices=("fp32", "fp16"), help="default: the backend's own")
    parser.add_argument("--cache-dir", type=Path, help="writable folder for engines / optimised models")
    parser.add_argument(
        "--spacing",
        nargs=3,
        type=float,
        metavar=("BSCAN", "AXIAL", "ASCAN"),
        help="sample spacing in mm, for files without it (.npy)",
    )
    parser.add_argument("--laterality", help="OD or OS, for files without it")
    parser.add_argument("--protocol", choices=("wide",), help="scan protocol if the file lacks it")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a line per volume")
    parser.add_argument(
        "--report",
        type=Path,
        help="PNG report: a file for one volume, a folder (one PNG per volume) for several",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing report files")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import sdk

        classifier = sdk.Classifier.load(
            args.bundle, backend=args.backend, precision=args.precision, cache_dir=args.cache_dir
        )
    except OCTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - reported, not hidden: an internal error has its own code
        print(f"internal error while loading the bundle: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    results, codes = [], []
    with classifier:
        for i, path in enumerate(args.volumes):
            if len(args.volumes) > 1:
                print(f"[{i + 1}/{len(args.volumes)}] {path}", file=sys.stderr, flush=True)
            result, code = _classify_one(classifier, path, args)
            results.append(result)
            codes.append(code)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return max(codes, key=SEVERITY.index)


def _classify_one(classifier, path: Path, args) -> tuple[dict, int]:
    import sdk

    try:
        volume = sdk.read_volume(
            path, spacing_mm=args.spacing, laterality=args.laterality, protocol=args.protocol
        )
        diagnosis = classifier.classify(volume)
        if args.report is not None:
            sdk.report.write_report(volume, diagnosis, _report_path(args, path), overwrite=args.overwrite)
    except OCTError as exc:
        print(f"{path}: error: {exc}", file=sys.stderr)
        return {"file": str(path), "error": str(exc), "exit_code": EXIT_BAD_INPUT}, EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - reported with its own exit code
        print(f"{path}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return {"file": str(path), "error": f"internal: {exc}", "exit_code": EXIT_INTERNAL}, EXIT_INTERNAL
    code = EXIT_OK if diagnosis.gradable else EXIT_UNGRADABLE
    if not args.json:
        print(f"{path}: {diagnosis.summary()}")
    return {"file": str(path), **diagnosis.to_dict(), "exit_code": code}, code


def _report_path(args, volume_path: Path) -> Path:
    if len(args.volumes) == 1 and args.report.suffix.lower() == ".png":
        return args.report
    args.report.mkdir(parents=True, exist_ok=True)
    return args.report / f"{volume_path.stem}.report.png"


if __name__ == "__main__":
    sys.exit(main())
