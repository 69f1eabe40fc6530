"""``python -m sdk.classify VOLUME... --bundle DIR``: classify OCT volumes from files.

Prints one line per volume (or JSON with --json) and optionally writes a PNG report per volume.

Exit codes:
  0  every volume classified
  3  a scan was ungradable (no class given; the reasons are printed)
  2  bad input: a volume file, the bundle, the backend, the arguments or a report path; the message
     names the path and the problem. A report that cannot be written still prints the diagnosis.
  4  internal error (a fault of the SDK: the message says what failed)
  5  the results could not be written to standard output (closed, full, a broken pipe)
With several volumes the most severe code wins, in the order 5, 4, 2, 3, 0. No error prints a
Python traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sdk.errors import BundleError, FileError, OCTError

EXIT_OK, EXIT_BAD_INPUT, EXIT_UNGRADABLE, EXIT_INTERNAL, EXIT_OUTPUT = 0, 2, 3, 4, 5
SEVERITY = (EXIT_OK, EXIT_UNGRADABLE, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OUTPUT)
EXIT_CLASSES = {
    EXIT_OK: "classified",
    EXIT_UNGRADABLE: "ungradable",
    EXIT_BAD_INPUT: "bad_input",
    EXIT_INTERNAL: "internal_error",
    EXIT_OUTPUT: "output_failed",
}
EXIT_CODES_HELP = (
    "exit codes: 0 classified, 3 ungradable scan, 2 bad input, 4 internal error, 5 output failed"
)


class OutputFailed(Exception):
    """The results could not be written to standard output; the message is the reason."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a bad argument exits EXIT_BAD_INPUT (2) with the usage, as documented."""

    def error(self, message):
        self.print_usage(sys.stderr)
        note(f"error: {message}")
        sys.exit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    from sdk.io import supported_formats

    parser = ArgumentParser(
        prog="python -m sdk.classify", description=__doc__.splitlines()[0], epilog=EXIT_CODES_HELP
    )
    formats = "; ".join(supported_formats())
    parser.add_argument(
        "volumes", nargs="+", type=Path, metavar="VOLUME", help=f"volume files, read by content: {formats}"
    )
    add_classifier_arguments(parser)
    add_volume_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a line per volume")
    parser.add_argument(
        "--report",
        type=Path,
        help="PNG report: a .png file for one volume, else a folder (made if missing) of VOLUME.report.png",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing report files")
    return parser


def add_classifier_arguments(parser: argparse.ArgumentParser) -> None:
    """--bundle, --backend, --precision, --cache-dir, --trusted-keys: what :func:`load_classifier` takes."""
    from sdk.bundle import PRECISIONS

    parser.add_argument("--bundle", required=True, type=Path, help="model bundle folder")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "torch"))
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="default: the backend's own; int8 where the bundle ships it (onnxruntime, CPU); bf16 where "
        "the bundle declares it (torch, a CPU with bfloat16 instructions)",
    )
    parser.add_argument("--cache-dir", type=Path, help="writable folder for engines / optimised models")
    parser.add_argument(
        "--trusted-keys",
        action="append",
        type=Path,
        metavar="KEYS",
        help="public key file or folder of *.pem keys the bundle must be signed by (repeatable; "
        "default: $OCTC_TRUSTED_KEYS, else any bundle loads)",
    )


def add_volume_arguments(parser: argparse.ArgumentParser) -> None:
    """--spacing, --laterality, --protocol: what :func:`read_args_volume` passes to sdk.read_volume."""
    parser.add_argument(
        "--spacing",
        nargs=3,
        type=float,
        metavar=("BSCAN", "AXIAL", "ASCAN"),
        help="sample spacing in mm, for files without it (.npy)",
    )
    parser.add_argument("--laterality", help="OD or OS, for files without it")
    parser.add_argument("--protocol", choices=("wide",), help="scan protocol if the file lacks it")


def load_classifier(args, first_volume: Path | None = None):
    """The sdk.Classifier the parsed arguments ask for (raises as Classifier.load does), and a
    Future of :func:`prepare_volume` of ``first_volume`` (None without one).

    That volume is read and its maps made in a second thread while the networks load: ONNX Runtime
    builds its sessions with the GIL released, so the front end runs beside it and a one-volume
    process answers sooner (docs/ARCHITECTURE.md, "Start-up"). The thread's errors are the volume's,
    reported when its result is asked for."""
    import sdk
    from sdk.bundle import Bundle

    with naming_the_bundle(args.bundle):
        bundle = Bundle.load(args.bundle, trusted_keys=args.trusted_keys)
        if first_volume is None:
            return sdk.Classifier.of_bundle(bundle, args.backend, args.precision, args.cache_dir), None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="octc-first-volume") as pool:
            first = pool.submit(prepare_volume, first_volume, bundle, args)
            classifier = sdk.Classifier.of_bundle(bundle, args.backend, args.precision, args.cache_dir)
        return classifier, first


def prepare_volume(path: Path, bundle, args):
    """(volume, its maps with ``bundle``'s normative database, front-end seconds) of file ``path``."""
    from sdk import maps

    volume = read_args_volume(path, args)
    start = time.perf_counter()
    extracted = maps.extract(volume, bundle.normative)
    return volume, extracted, time.perf_counter() - start


@contextlib.contextmanager
def naming_the_bundle(bundle):
    """Re-raise a BundleError whose message does not name the bundle folder with it in front."""
    try:
        yield
    except BundleError as error:
        if str(bundle) in str(error):
            raise
        raise BundleError(f"bundle {bundle}: {error}") from error


def read_args_volume(path: Path, args):
    """sdk.read_volume of ``path`` with the parsed --spacing, --laterality and --protocol."""
    import sdk

    return sdk.read_volume(path, spacing_mm=args.spacing, laterality=args.laterality, protocol=args.protocol)


def exit_code_of(error: BaseException) -> int:
    """EXIT_BAD_INPUT for the user's side (an sdk.errors error, an OS error on a named path), else
    EXIT_INTERNAL."""
    if isinstance(error, OCTError) or (isinstance(error, OSError) and error.filename is not None):
        return EXIT_BAD_INPUT
    return EXIT_INTERNAL


def describe(error: BaseException) -> str:
    """One line naming the problem (and the path, for a file)."""
    if isinstance(error, OCTError):
        return str(error)
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return f"internal error: {type(error).__name__}: {error}"


def most_severe(codes) -> int:
    return max(codes, key=SEVERITY.index, default=EXIT_OK)


def note(message: str) -> None:
    """A message on standard error; dropped if standard error is closed or failing (never to stdout)."""
    if sys.stderr is None:
        return
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def print_result(text: str) -> None:
    """One result on standard output, flushed now; raises OutputFailed if it cannot be written."""
    if sys.stdout is None:
        raise OutputFailed("standard output is closed")
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError) as error:
        raise OutputFailed(getattr(error, "strerror", None) or str(error)) from None


def output_failed(reason: str) -> int:
    """Say why the results were lost, point standard output at /dev/null (so that Python's flush at
    exit cannot fail again with a traceback), and return EXIT_OUTPUT."""
    note(f"error: the results could not be written to standard output ({reason})")
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass  # stdout closed, or not a real file (a test's capture)
    return EXIT_OUTPUT


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if sys.stdout is None:
        return output_failed("standard output is closed")
    try:
        reports = _report_paths(args)
        classifier, first = load_classifier(args, args.volumes[0])
    except Exception as error:  # noqa: BLE001 - every failure gets its exit code and a message
        note(f"error: {describe(error)}")
        return exit_code_of(error)
    results, codes = [], []
    try:
        with classifier:
            for i, (path, report) in enumerate(zip(args.volumes, reports, strict=True)):
                if len(args.volumes) > 1:
                    note(f"[{i + 1}/{len(args.volumes)}] {path}")
                result = _classify_one(classifier, path, report, args, first if i == 0 else None)
                results.append(result)
                codes.append(result["exit_code"])
        if args.json:
            print_result(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    except OutputFailed as failure:
        return output_failed(str(failure))
    return most_severe(codes)


def _classify_one(classifier, path: Path, report: Path | None, args, prepared=None) -> dict:
    """The result of one volume as the --json output holds it; the line printed without --json.
    ``prepared``: a Future of :func:`prepare_volume` of ``path``, else it is prepared here."""
    try:
        volume, maps, front_end_s = (
            prepared.result() if prepared else prepare_volume(path, classifier.bundle, args)
        )
        started = time.perf_counter() - front_end_s
        diagnosis = classifier.classify_maps(maps, volume.protocol, {"scan": volume.provenance}, started)
    except Exception as error:  # noqa: BLE001 - reported with its own exit code
        note(f"{path}: error: {describe(error)}")
        return {"file": str(path), "error": describe(error), "exit_code": exit_code_of(error)}
    result = {"file": str(path), **diagnosis.to_dict()}
    result["exit_code"] = EXIT_OK if diagnosis.gradable else EXIT_UNGRADABLE
    if not args.json:
        print_result(f"{path}: {diagnosis.summary()}")
    if report is not None:
        try:
            _write_report(volume, diagnosis, report, args)
        except Exception as error:  # noqa: BLE001 - the diagnosis stands; the report's failure is added
            note(f"{path}: report not written: {describe(error)}")
            result["report_error"] = describe(error)
            result["exit_code"] = most_severe([result["exit_code"], exit_code_of(error)])
    return result


def _report_paths(args) -> list[Path | None]:
    """Each volume's report file: --report itself (one volume, a .png), else VOLUME.report.png in it."""
    if args.report is None:
        return [None] * len(args.volumes)
    if not _report_is_folder(args):
        return [args.report]
    paths = [args.report / f"{volume.stem}.report.png" for volume in args.volumes]
    first: dict[Path, Path] = {}  # report path: the volume writing it
    for volume, path in zip(args.volumes, paths, strict=True):
        if path in first:
            raise FileError(
                f"{first[path]} and {volume} would both write the report {path}: report them apart"
            )
        first[path] = volume
    return paths


def _report_is_folder(args) -> bool:
    return len(args.volumes) > 1 or args.report.suffix.lower() != ".png"


def _write_report(volume, diagnosis, path: Path, args) -> None:
    import sdk

    if _report_is_folder(args):
        try:
            args.report.mkdir(exist_ok=True)
        except FileExistsError:
            raise FileError(
                f"{args.report} is a file, not a folder: --report takes a .png path (one volume) or a folder"
            ) from None
        except OSError as error:
            raise FileError(
                f"cannot make the report folder {args.report}: {error.strerror or error}"
            ) from None
    sdk.report.write_report(volume, diagnosis, path, overwrite=args.overwrite)


if __name__ == "__main__":
    sys.exit(main())
