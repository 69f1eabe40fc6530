"""``python -m demo [--out DIR] [--kind FI] [--seed N]``: classify a synthetic OCT scan end to end.

1. A demo bundle, made on the first run only and reused afterwards: a synthetic cohort rendered as
   wide-field volumes, mapped by the scan-time front end (cached by content), the paper's method
   trained on it (hierarchical transfer learning, out-of-fold SVM stacking; the ``cpu`` preset's
   networks on a smaller cohort, to fit about a quarter of an hour on a 2-core CPU), converted to a
   bundle (ONNX FP32/FP16, numpy stacker, golden set) and verified.
2. A new wide-field phantom eye of the chosen class (not in the training cohort), written as a DICOM
   Ophthalmic Tomography file and read back with ``sdk.read_volume``.
3. ``sdk.Classifier`` on ONNX Runtime: the answer, the networks' confidences, quality and timings,
   and a one-page PNG report.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import phantom
import sdk
import sdk.io
import sdk.report

DEMO_COHORT = {
    "n_normal": 80,
    "n_glaucoma": 240,
    "cohort_seed": 11,
}  # the cpu preset's networks on fewer eyes
DEMO_SEED = 2026  # the demo's training run


def build_demo_bundle(folder: Path) -> Path:
    """Train the demo checkpoint and convert it into ``folder/bundle``; both are kept for later runs."""
    from converters.bundle import build_bundle
    from training.cohort import from_phantom
    from training.networks.fit import configure_torch
    from training.presets import PRESETS
    from training.train import train_checkpoint

    preset = dataclasses.replace(PRESETS["cpu"], name="demo", **DEMO_COHORT)
    specs = phantom.cohort(
        preset.n_normal, preset.n_glaucoma, seed=preset.cohort_seed, shape=preset.volume_shape
    )
    cohort = {
        "source": f"phantom.cohort(n_normal={preset.n_normal}, n_glaucoma={preset.n_glaucoma}, "
        f"seed={preset.cohort_seed}, shape={preset.volume_shape})"
    }
    print(
        f"[1/3] demo bundle (first run only): {len(specs)} synthetic eyes -> maps -> training -> bundle",
        flush=True,
    )
    configure_torch(None)
    checkpoint = train_checkpoint(
        preset,
        from_phantom(specs),
        cohort,
        folder / "checkpoint",
        cache_dir=folder / "maps-cache",
        seed=DEMO_SEED,
        overwrite=True,
        command="python -m demo",
    )
    return build_bundle(checkpoint, folder / "bundle", overwrite=True, phantom_shape=preset.volume_shape)


def load_demo_classifier(folder: Path) -> sdk.Classifier:
    """The Classifier of the demo bundle in ``folder`` (loaded once), the bundle made first if it is
    missing, and made again if the kept one does not load (an older SDK's: its networks learnt
    another front end's maps)."""
    bundle_dir = folder / "bundle"
    if not (bundle_dir / "manifest.json").exists():
        build_demo_bundle(folder)
        return sdk.Classifier.load(bundle_dir, backend="onnxruntime")
    try:
        return sdk.Classifier.load(bundle_dir, backend="onnxruntime")
    except sdk.BundleError as stale:
        print(f"[1/3] the demo bundle in {bundle_dir} does not load ({stale}): making it again", flush=True)
        build_demo_bundle(folder)
        return sdk.Classifier.load(bundle_dir, backend="onnxruntime")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the demo's files")
    parser.add_argument("--kind", default="FI", choices=phantom.KINDS, help="class of the scanned eye")
    parser.add_argument("--seed", type=int, default=7, help="seed of the scanned eye")
    parser.add_argument("--laterality", default="OD", choices=("OD", "OS"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    classifier = load_demo_classifier(args.out)
    print(f"[1/3] demo bundle: {args.out / 'bundle'}", flush=True)

    eye = phantom.make_eye(args.kind, args.seed + 100_000, laterality=args.laterality)  # not a training eye
    scan = args.out / f"scan-{args.kind}-{args.laterality}.dcm"
    sdk.io.write_dicom(eye.volume, scan, overwrite=True)
    volume = sdk.read_volume(scan)
    print(f"[2/3] scan: {scan} (true class {eye.truth.label}) -> {volume}", flush=True)

    with classifier:
        dx = classifier.classify(volume)
    print(f"[3/3] {dx.summary()}")
    if dx.gradable:
        for name, confidences in dx.per_map.items():
            types = ", ".join(f"{k} {v:.2f}" for k, v in confidences["stage2"].items())
            print(f"      {name:15s} P(normal) {confidences['stage1']['normal']:.2f}; types: {types}")
    print(
        f"      quality: signal-to-noise {dx.quality['signal_to_noise']}, "
        f"boundary confidence {dx.quality['boundary_confidence']}; backend {dx.backend} {dx.precision} "
        f"on {dx.device}; bundle {dx.bundle_id[:12]}"
    )
    print("      timings (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in dx.timings_ms.items()))
    report = sdk.report.write_report(volume, dx, args.out / "report.png", overwrite=True)
    print(f"report: {report}; demo took {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
