"""``python -m sdk.batch INPUT... --bundle DIR --out results.jsonl``: score whole archives.

INPUT: folders (every file under them), globs ("archive/**/*.dcm") or .csv files with a path
column. One JSON line per scan goes to --out (see sdk.batch.results); a rerun with the same --out
skips the scans already there (matched by sha256) and appends the rest, so an interrupted run is
resumed by running it again. Per-scan problems are lines of their own and never stop the run. A
progress bar goes to standard error, a JSON summary to standard output at the end.

Exit codes (of the run, not of its scans: those are in the lines and the summary):
  0  every scan has its line
  2  bad arguments, inputs, bundle, backend or output path (nothing scored)
  4  internal error
  5  the results could not be written (disk full, ...) or the summary could not be printed
  130  interrupted (Ctrl-C): the lines written so far stay; run again to go on
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from sdk.batch.inputs import expand_inputs
from sdk.batch.local import WorkerFailed, run_local
from sdk.batch.progress import Progress
from sdk.batch.results import ResultsFile, error_record
from sdk.batch.scoring import Settings, Skip
from sdk.classify import (
    EXIT_BAD_INPUT,
    EXIT_CLASSES,
    EXIT_OK,
    ArgumentParser,
    OutputFailed,
    add_classifier_arguments,
    add_volume_arguments,
    describe,
    exit_code_of,
    note,
    output_failed,
    print_result,
)
from sdk.errors import FileError

EXIT_INTERRUPTED = 130
DEFAULT_MAX_WORKERS = 8  # one per core up to this; each holds a Classifier (~1.5 GB at full width)
ERROR_CLASSES = ("bad_input", "internal_error")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m sdk.batch",
        description=__doc__.splitlines()[0],
        epilog="exit codes: 0 done, 2 bad input, 4 internal error, 5 output failed, 130 interrupted",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="folders, globs or .csv files of paths")
    parser.add_argument("--out", required=True, type=Path, help="results file (JSON lines), appended to")
    add_classifier_arguments(parser)
    add_volume_arguments(parser)
    parser.add_argument("--reports", type=Path, help="folder for one PNG report per scan (made if missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing report files")
    parser.add_argument(
        "--suffix", action="append", default=[], help="only files with this suffix in folders"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(len(os.sched_getaffinity(0)), DEFAULT_MAX_WORKERS),
        help="processes on this machine, each with its share of the cores (default: one per core, at most 8)",
    )
    parser.add_argument("--threads", type=int, help="network threads per Classifier (default: its cores)")
    parser.add_argument("--ray", metavar="ADDRESS", help="run on Ray Data: 'local', or a cluster address")
    parser.add_argument("--actors", type=int, default=1, help="--ray: Classifier actors (default 1)")
    parser.add_argument("--actor-cpus", type=float, default=1.0, help="--ray: CPUs per actor (default 1)")
    parser.add_argument("--actor-gpus", type=float, default=0.0, help="--ray: GPUs per actor (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.workers, args.actors) < 1 or (args.threads is not None and args.threads < 1):
        note("error: --workers, --actors and --threads must be at least 1")
        return EXIT_BAD_INPUT
    if sys.stdout is None:
        return output_failed("standard output is closed")
    start = time.monotonic()
    try:
        reports = _check_reports_folder(args.reports)
        exclude = [args.out] + ([reports] if reports else [])
        paths, unlisted = expand_inputs(args.inputs, suffixes=args.suffix, exclude=exclude)
        if not paths and not unlisted:
            raise FileError(f"no scan files in {' '.join(args.inputs)}")
        results = ResultsFile(args.out)  # the first thing made: nothing exists before every check
        try:
            tally = _run(args, results, paths, unlisted, reports)
        finally:
            results.close()
    except OutputFailed as failure:
        return output_failed(str(failure))
    except KeyboardInterrupt:
        note(f"interrupted: the lines written so far are in {args.out}; run the same command again to go on")
        return EXIT_INTERRUPTED
    except WorkerFailed as failure:
        note(f"error: {failure}")
        return failure.code
    except Exception as error:  # noqa: BLE001 - every failure of the run gets its exit code and a message
        note(f"error: {describe(error)}")
        return exit_code_of(error)
    summary = tally.summary(args, time.monotonic() - start)
    note(tally.sentence(summary))
    try:
        print_result(json.dumps(summary, indent=2))
    except OutputFailed as failure:
        return output_failed(str(failure))
    return EXIT_OK


def _run(args, results: ResultsFile, paths, unlisted, reports) -> _Tally:
    if reports is not None:
        reports.mkdir(exist_ok=True)
    tally = _Tally(results, len(paths) + len(unlisted), progress=not args.no_progress)
    for folder, problem in unlisted:
        tally.outcome(error_record(str(folder), None, FileError(f"{folder}: {problem}"), None))
    settings = Settings(
        bundle=str(args.bundle),
        backend=args.backend,
        precision=args.precision,
        cache_dir=None if args.cache_dir is None else str(args.cache_dir),
        trusted_keys=None if args.trusted_keys is None else tuple(map(str, args.trusted_keys)),
        threads=args.threads,
        spacing_mm=None if args.spacing is None else tuple(args.spacing),
        laterality=args.laterality,
        protocol=args.protocol,
        reports=None if reports is None else str(reports),
        overwrite=args.overwrite,
    )
    if args.ray:
        from sdk.batch.ray_data import run_ray

        run_ray(
            paths,
            settings,
            results.done,
            args.ray,
            actors=args.actors,
            actor_cpus=args.actor_cpus,
            actor_gpus=args.actor_gpus,
            on_ready=tally.ready,
            on_outcome=tally.outcome,
        )
    else:
        run_local(paths, settings, results.done, args.workers, tally.ready, tally.outcome)
    tally.progress.close()
    return tally


def _check_reports_folder(reports: Path | None) -> Path | None:
    """--reports: an existing folder, or a new one in an existing folder (made once the run starts)."""
    if reports is None:
        return None
    if reports.is_dir():
        return reports
    if reports.exists() or reports.is_symlink():
        raise FileError(f"--reports {reports} is a file, not a folder")
    if not reports.parent.is_dir():
        raise FileError(f"cannot make the reports folder {reports}: {reports.parent} is not a folder")
    return reports


class _Tally:
    """Writes each outcome to the results file and counts it; drives the progress bar."""

    def __init__(self, results: ResultsFile, total: int, progress: bool):
        self.results = results
        self.progress = Progress(total, shown=progress)
        self.classes: Counter[str] = Counter()  # scans per exit class
        self.scored = self.already_done = self.duplicates = self.report_errors = 0
        self.written: dict[str, str] = {}

    def ready(self, bundle_id: str) -> None:
        self.results.check_bundle(bundle_id)

    def outcome(self, outcome) -> None:
        if isinstance(outcome, Skip):
            self.already_done += 1
            self.classes[EXIT_CLASSES[self.results.done[outcome.sha256]]] += 1
            self.progress.advance(scored=False)
            return
        sha256 = outcome["sha256"]
        if sha256 in self.written:
            self.duplicates += 1
            note(f"{outcome['file']} has the same bytes as {self.written[sha256]}: scored once")
        else:
            self.results.append(outcome)
            if sha256:
                self.written[sha256] = outcome["file"]
            self.report_errors += "report_error" in outcome
        self.classes[outcome["class"]] += 1
        self.scored += 1
        self.progress.advance(scored=True, error=outcome["class"] in ERROR_CLASSES)

    def summary(self, args, wall_s: float) -> dict:
        return {
            "output": str(args.out),
            "scans": self.progress.total,
            "classes": {
                name: self.classes[name] for name in EXIT_CLASSES.values() if name != "output_failed"
            },
            "scored_now": self.scored,
            "already_done": self.already_done,
            "duplicates": self.duplicates,
            "report_errors": self.report_errors,
            "wall_s": round(wall_s, 2),
            "scans_per_s": round(self.scored / wall_s, 3) if wall_s > 0 else None,
            "workers": f"ray {args.ray}: {args.actors} actors" if args.ray else args.workers,
        }

    @staticmethod
    def sentence(summary: dict) -> str:
        classes = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in summary["classes"].items() if n)
        return (
            f"sdk.batch: {summary['scans']} scans ({classes or 'none'}); {summary['scored_now']} scored now, "
            f"{summary['already_done']} already in {summary['output']}; {summary['scans_per_s']} scans/s "
            f"over {summary['wall_s']} s"
        )
