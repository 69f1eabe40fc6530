"""Thickness maps of a cohort's eyes, by the scan-time code (sdk.retina + sdk.maps), cached on disk.

The deviation maps are not cached: they depend on the normative model, which each training split
fits on its own normal eyes (see training.data). What is cached per eye is what the volume alone
determines: the RNFL and GCC thickness maps and the quality verdict.

A cache entry is keyed by content: the volume (a phantom eye's full specification, or the bytes of
a volume file and its laterality) together with a fingerprint of the source code that turns it into
maps (the syntax trees of sdk.retina, sdk.maps, sdk.io, sdk.volume, and phantom for phantom eyes).
Changing any of them gives new keys, so a stale entry is never read. Entries are written atomically.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

import phantom
import sdk
from sdk.errors import CohortError, OCTError
from sdk.files import file_sha256, write_atomically
from sdk.maps import MAP_SIZE_PX, extract
from training.cohort import CohortEye

DEFAULT_CACHE_DIR = Path("cache/maps")
_SDK_ROOT = Path(sdk.__file__).parent
MAPS_CODE = (_SDK_ROOT / "retina", _SDK_ROOT / "maps", _SDK_ROOT / "io", _SDK_ROOT / "volume.py")
PHANTOM_CODE = (Path(phantom.__file__).parent,)


@dataclass(frozen=True)
class CohortMaps:
    """Maps of a cohort, in the cohort's eye order.

    thickness_um : (n_eyes, 2, 224, 224) float32, RNFL then GCC thickness in micrometres, OD
        orientation, NaN = masked.
    gradable : (n_eyes,) bool, ``maps.quality.gradable``.
    reasons : per eye, the reasons it is ungradable (empty when gradable).
    """

    thickness_um: np.ndarray
    gradable: np.ndarray
    reasons: tuple[tuple[str, ...], ...]

    def subset(self, eyes: np.ndarray) -> CohortMaps:
        """The maps of eyes ``eyes`` (indices), in that order."""
        return CohortMaps(self.thickness_um[eyes], self.gradable[eyes], tuple(self.reasons[i] for i in eyes))


def load_maps(
    eyes: list[CohortEye], cache_dir=DEFAULT_CACHE_DIR, n_jobs: int | None = None, progress: bool = True
) -> CohortMaps:
    """Maps of every eye: read from the cache, the missing ones computed in ``n_jobs`` processes
    (default: all cores) with a progress bar. A volume file that cannot be read or mapped raises
    CohortError naming it."""
    cache_dir = Path(cache_dir)
    files = [cache_dir / key[:2] / f"{key}.npz" for key in map(cache_key, eyes)]
    todo = [(eye, file) for eye, file in zip(eyes, files, strict=True) if not file.is_file()]
    n_jobs = max(1, min(n_jobs or os.cpu_count() or 1, len(todo)))
    with tqdm(total=len(todo), desc="maps", unit="eye", disable=not progress or not todo) as bar:
        if n_jobs == 1:
            for eye, file in todo:
                _compute(eye, file)
                bar.update()
        elif todo:
            with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn")) as pool:
                for future in as_completed([pool.submit(_compute, eye, file) for eye, file in todo]):
                    future.result()
                    bar.update()
    thickness = np.empty((len(eyes), 2, MAP_SIZE_PX, MAP_SIZE_PX), np.float32)
    reasons = []
    for i, file in enumerate(files):
        with np.load(file, allow_pickle=False) as z:
            thickness[i] = z["rnfl_thickness_um"], z["gcc_thickness_um"]
            reasons.append(tuple(str(r) for r in z["reasons"]))
    gradable = np.array([not r for r in reasons])
    return CohortMaps(thickness, gradable, tuple(reasons))


def cache_key(eye: CohortEye) -> str:
    """sha256 hex of what determines an eye's maps: its volume's content and the code."""
    h = hashlib.sha256()
    if isinstance(eye.source, Path):
        h.update(file_sha256(eye.source).encode())
        h.update(eye.laterality.encode())
        h.update(_code_fingerprint(MAPS_CODE).encode())
    else:
        spec = dataclasses.asdict(eye.source)
        del spec["eye_id"], spec["patient_id"], spec["label"]  # names and grades do not change the volume
        h.update(json.dumps(spec, sort_keys=True).encode())
        h.update(_code_fingerprint(MAPS_CODE + PHANTOM_CODE).encode())
    return h.hexdigest()


def _compute(eye: CohortEye, file: Path) -> None:
    """Make or read one eye's volume, extract its maps and write them to ``file`` atomically."""
    try:
        volume = (
            sdk.read_volume(eye.source, laterality=eye.laterality)
            if isinstance(eye.source, Path)
            else eye.source.make().volume
        )
        maps = extract(volume)
    except OCTError as error:
        raise CohortError(f"eye {eye.eye_id}: its volume cannot be mapped: {error}") from None
    file.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "rnfl_thickness_um": maps.rnfl_thickness,
        "gcc_thickness_um": maps.gcc_thickness,
        "reasons": np.array(maps.quality.reasons, dtype=str),
    }
    write_atomically(file, lambda f: np.savez_compressed(f, **arrays), overwrite=True)


@functools.cache
def _code_fingerprint(roots: tuple[Path, ...]) -> str:
    """sha256 of the syntax trees of the Python files under ``roots``: reformatting or editing a
    comment keeps the key, any change to the code (or a docstring) gives a new one."""
    h = hashlib.sha256()
    for root in roots:
        for file in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            h.update(file.relative_to(root.parent).as_posix().encode())
            h.update(ast.dump(ast.parse(file.read_bytes())).encode())
    return h.hexdigest()
