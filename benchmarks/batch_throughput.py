"""``python -m benchmarks.batch_throughput``: sdk.batch against a plain loop of Classifier.classify.

In one run, on the same scan files and bundle (default: the full-width benchmark bundle and
default wide phantom volumes, 128 x 496 x 512), each as its own process, in rounds that take
the settings in turn so that a change of load on a shared machine falls on all of them:

  loop      one process: Classifier.load once, then ``classify(read_volume(path))`` per file
            (``python -m benchmarks.batch_throughput loop BUNDLE SCAN...``: one line per scan)
  batch wN  ``python -m sdk.batch --workers N`` (each worker its share of the cores)
  ray       ``python -m sdk.batch --ray local`` (--actors 1, one CPU each; the rest runs the front end)

For each run: the whole process's throughput (scans / wall time, start-up and bundle loading
included) and the steady throughput (scans after the first / time from the first scan's answer
to the last's: what an archive of thousands of scans sees). The ratios to the loop are taken
within each round; the medians over the rounds are printed as a table and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sdk.cpu import cpu_model

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.01
LOOP = "loop"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [LOOP]:
        return plain_loop(*argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.batch_throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--scans", type=int, default=24, help="scan files (default 24)")
    parser.add_argument(
        "--shape", type=int, nargs=3, metavar=("B", "D", "A"), help="phantom shape (default: full)"
    )
    parser.add_argument(
        "--bundle", type=Path, help="default: the benchmarks' bundle (full-width VGG16, 224 px)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2, 4], help="sdk.batch settings (default 1 2 4)"
    )
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray local run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "batch-throughput.json")
    args = parser.parse_args(argv)
    if args.bundle is None:
        from benchmarks.conftest import bench_bundle_dir

        args.bundle = bench_bundle_dir()
    settings = [LOOP, *(f"w{n}" for n in args.workers)] + ([] if args.no_ray else ["ray"])
    with tempfile.TemporaryDirectory(prefix="octc-batch-bench-") as folder:
        scans = make_scans(Path(folder) / "scans", args.scans, args.shape)
        load_before = os.getloadavg()
        rounds = []
        for number in range(args.rounds):
            runs = {
                name: run_setting(name, scans, args.bundle, Path(folder) / f"{name}-{number}.jsonl")
                for name in settings
            }
            rounds.append(runs)
            print(
                f"round {number + 1}: "
                + ", ".join(f"{n} {r['steady_per_s']:.3f}/s" for n, r in runs.items()),
                flush=True,
            )
    record = summarise(rounds, settings, args, load_before, argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))
    print(f"written to {args.out}")
    return 0


def plain_loop(bundle, *scans) -> int:
    """The loop sdk.batch is measured against; prints one line per scan as it finishes."""
    import sdk

    with sdk.Classifier.load(bundle) as classifier:
        for path in scans:
            print(classifier.classify(sdk.read_volume(path)).label, flush=True)
    return 0


def make_scans(folder: Path, n: int, shape) -> list[Path]:
    """``n`` wide phantom volumes of the five classes in turn, as .npz files."""
    import phantom
    import sdk

    folder.mkdir(parents=True)
    kwargs = {} if shape is None else {"shape": tuple(shape)}
    paths = []
    for i in range(n):
        eye = phantom.make_eye(phantom.KINDS[i % len(phantom.KINDS)], seed=500 + i, **kwargs)
        paths.append(sdk.io.write_npz(eye.volume, folder / f"eye{i:03d}.npz"))
    return paths


def run_setting(name: str, scans: list[Path], bundle: Path, out: Path) -> dict:
    """One process of one setting: {"n", "wall_s", "whole_per_s", "steady_per_s"}."""
    if name == LOOP:
        command = [sys.executable, "-m", "benchmarks.batch_throughput", LOOP, str(bundle), *map(str, scans)]
    else:
        command = [sys.executable, "-m", "sdk.batch", str(scans[0].parent), "--bundle", str(bundle)]
        command += ["--out", str(out), "--no-progress"]
        command += ["--ray", "local"] if name == "ray" else ["--workers", name[1:]]
    start = time.monotonic()
    stamps = []
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        if name == LOOP:  # the loop prints one line per scan as it finishes
            stamps = [time.monotonic() for _ in proc.stdout]
        else:  # sdk.batch: watch its results file grow
            while proc.poll() is None:
                seen = out.read_bytes().count(b"\n") if out.exists() else 0
                stamps += [time.monotonic()] * (seen - len(stamps))
                time.sleep(POLL_S)
            proc.stdout.read()
    wall_s = time.monotonic() - start
    if proc.returncode != 0 or len(stamps) != len(scans):
        raise RuntimeError(f"{name}: exit code {proc.returncode}, {len(stamps)} of {len(scans)} scans")
    steady_s = stamps[-1] - stamps[0]
    return {
        "n": len(stamps),
        "wall_s": round(wall_s, 2),
        "whole_per_s": round(len(stamps) / wall_s, 4),
        "steady_per_s": round((len(stamps) - 1) / steady_s, 4) if steady_s > 0 else None,
    }


def summarise(rounds: list[dict], settings: list[str], args, load_before, argv) -> dict:
    per_setting = {}
    for name in settings:
        runs = [r[name] for r in rounds]
        per_setting[name] = {
            "whole_per_s": statistics.median(r["whole_per_s"] for r in runs),
            "steady_per_s": statistics.median(r["steady_per_s"] for r in runs),
            "whole_vs_loop": statistics.median(
                r[name]["whole_per_s"] / r[LOOP]["whole_per_s"] for r in rounds
            ),
            "steady_vs_loop": statistics.median(
                r[name]["steady_per_s"] / r[LOOP]["steady_per_s"] for r in rounds
            ),
            "runs": runs,
        }
    return {
        "command": " ".join(["python -m benchmarks.batch_throughput", *argv]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_model(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "bundle": str(args.bundle),
        "scans": args.scans,
        "shape": args.shape or "default wide (128 x 496 x 512)",
        "rounds": args.rounds,
        "settings": per_setting,
    }


def table(record: dict) -> str:
    rows = [
        "| setting | whole run (scans/s) | steady (scans/s) | whole vs loop | steady vs loop |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, s in record["settings"].items():
        rows.append(
            f"| {name} | {s['whole_per_s']:.3f} | {s['steady_per_s']:.3f} | {s['whole_vs_loop']:.2f} | "
            f"{s['steady_vs_loop']:.2f} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
