"""Fixtures of the C tests: a small signed bundle, phantom volumes as raw files, the Python API's
answers, and broken copies of the library's runtime folder.

    python bindings/tests/make_fixtures.py OUT_DIR LIBRARY     # ctest runs this first (fixture "c_api")

LIBRARY is the built liboctclassify.so.0, with its runtime folder ``octclassify/`` next to it.
Writes into OUT_DIR (replaced):

* ``bundle/``: random networks, 64 px input (seconds to make), signed with
  ``signing/vendor.key.pem``; ``signing/vendor.pub.pem`` is its public key, also alone in the folder
  ``trusted/``, and ``signing/other.pub.pem`` one that did not sign it;
* one raw file per volume (C order (n_bscans, depth, n_ascans), native byte order) and
  ``fixtures.txt``, one line per volume::

      file dtype n_bscans depth n_ascans spacing_bscan spacing_axial spacing_ascan laterality gradable
      label p_normal p_FI p_GE p_MY p_SS

  label is "-" and the probabilities "nan" for an ungradable scan. The answers come from
  ``sdk.Classifier`` (ONNX Runtime, no trusted keys) on the volumes read back from the raw files;
* ``bundle.txt``: ``bundle_id``, ``signer`` (the vendor key's id) and ``sdk_version`` lines;
* broken runtimes, each a copy of LIBRARY whose ``octclassify/`` links to the real runtime's parts:
  ``incomplete_runtime/`` (libpython only, no standard library) and ``broken_sdk/`` (an ``sdk``
  package that raises ImportError).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

import phantom
import sdk
from converters.bundle import build_bundle
from converters.keys import write_key_pair
from converters.random_checkpoint import make_random_checkpoint
from sdk.labels import CLASSES

HERE = Path(__file__).resolve().parent
SHAPE = (32, 248, 128)  # (n_bscans, depth, n_ascans): ~70 ms a volume
SPACING_MM = (0.28125, 0.0078, 0.09375)  # the phantom's wide field (9 x 1.93 x 12 mm) over SHAPE
VOLUMES = (  # file, phantom kind, seed, laterality, dtype, phantom overrides
    ("normal_od.raw", "normal", 11, "OD", "uint8", {}),  # CMakeLists.txt's example test classifies this one
    ("fi_os.raw", "FI", 12, "OS", "uint16", {}),
    ("ge_od.raw", "GE", 13, "OD", "float32", {}),
    ("my_os.raw", "MY", 14, "OS", "uint8", {}),
    ("weak_od.raw", "normal", 15, "OD", "float32", {"signal_db": 12}),  # ungradable
)


def make_fixtures(out_dir: str | Path, library: str | Path) -> Path:
    """Write every fixture into ``out_dir`` (replaced); return fixtures.txt."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    (out_dir / "signing").mkdir(parents=True)
    (out_dir / "trusted").mkdir()
    private_key, public_key, key_id = write_key_pair(out_dir / "signing" / "vendor")
    shutil.copy2(public_key, out_dir / "trusted")
    write_key_pair(out_dir / "signing" / "other")
    checkpoint = make_random_checkpoint(
        out_dir / "checkpoint", input_hw=(64, 64), n_normals=4, phantom_shape=SHAPE
    )
    build_bundle(checkpoint, out_dir / "bundle", phantom_shape=SHAPE, signing_key=private_key)
    classifier = sdk.Classifier.load(out_dir / "bundle", backend="onnxruntime", trusted_keys=())
    lines = []
    for name, kind, seed, laterality, dtype, overrides in VOLUMES:
        eye = phantom.make_eye(kind, seed, laterality, shape=SHAPE, spacing_mm=SPACING_MM, **overrides)
        data = _as_dtype(eye.volume.data, dtype)
        data.tofile(out_dir / name)
        read_back = np.fromfile(out_dir / name, dtype).reshape(SHAPE)
        dx = classifier.classify(sdk.OCTVolume(read_back, SPACING_MM, laterality))
        probabilities = [dx.probabilities[c] if dx.gradable else float("nan") for c in CLASSES]
        fields = [name, dtype, *SHAPE, *SPACING_MM, laterality, int(dx.gradable), dx.label or "-"]
        lines.append(" ".join(map(str, fields + probabilities)))  # str(float) round-trips exactly
    (out_dir / "bundle.txt").write_text(
        f"bundle_id {dx.bundle_id}\nsigner {key_id}\nsdk_version {dx.versions['sdk']}\n"
    )
    classifier.close()
    _broken_runtimes(out_dir, Path(library))
    fixtures = out_dir / "fixtures.txt"
    fixtures.write_text("\n".join(lines) + "\n")
    return fixtures


def _as_dtype(data: np.ndarray, dtype: str) -> np.ndarray:
    """The phantom's uint8 voxels as ``dtype``, spread over its range (uint16) or scaled to [0, 1]."""
    scale = {"uint8": 1, "uint16": 257, "float32": 1 / 255}[dtype]
    return (data.astype(np.float64) * scale).astype(dtype)


def _broken_runtimes(out_dir: Path, library: Path) -> None:
    runtime = library.resolve().parent / "octclassify"
    (libpython,) = runtime.glob("libpython*.so*")
    parts = {
        "incomplete_runtime": [libpython],
        "broken_sdk": [
            libpython,
            runtime / "lib",
            *(p for p in (runtime / "site-packages").iterdir() if p.name != "sdk"),
        ],
    }
    for name, links in parts.items():
        folder = out_dir / name / "octclassify"
        (folder / "site-packages").mkdir(parents=True)
        shutil.copy2(library.resolve(), out_dir / name / library.name)
        for target in links:
            inside = "site-packages/" if target.parent.name == "site-packages" else ""
            (folder / f"{inside}{target.name}").symlink_to(target)
    (out_dir / "broken_sdk" / "octclassify" / "site-packages" / "sdk").symlink_to(HERE / "broken_sdk" / "sdk")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", metavar="OUT_DIR")
    parser.add_argument("library", metavar="LIBRARY")
    args = parser.parse_args()
    print(make_fixtures(args.out_dir, args.library))
