"""ONNX Runtime's optimised CPU models kept on the device, so that later processes start faster.

    folder, reason = cpu_cache_folder(cache_dir)     # None (and why) unless a cache folder is configured
    session, how = cached_session(ort, folder, data_of, sha256, precision, options_of)

Building a CPU session optimises the model's graph (``ORT_ENABLE_ALL``: fusions, then the NCHWc
layouts of this CPU), which allocates and touches several copies of the weights: for the four
merged full-width FP32 models of a cpu bundle, 2.4-4.1 s in a fresh process on the 2-core AMD EPYC
of 2026-12-03, against 0.7-1.2 s for the same four sessions made from the optimised models an earlier
process saved (``optimized_model_filepath``), loaded with optimisation off; same outputs to the bit.

The saved model holds this CPU's layouts and this ONNX Runtime build's fused operators (ONNX Runtime
itself warns it "should only be used in the same environment"), so an entry is keyed by the bundle
file's sha256 (from the manifest, which its signature covers), the precision, the ONNX Runtime
version, the CPU model and a digest of its instruction flags, and the SDK version
(:func:`key_material`); the store is :class:`sdk.engines.cache.EngineCache` (atomic writes, a lock per
key, each entry's sha256 checked on the bytes that run, anything stale or damaged discarded and made
again). On a hit the bundle's model file is not read at all: the entry was made from bytes that
matched the manifest's sha256.

Opt-in: only where a cache folder is configured (``cache_dir``, ``--cache-dir``, the C options'
``engine_cache_dir``, or ``$OCTC_ENGINE_CACHE``), never a default folder under $HOME. An entry decides
what runs as much as the bundle does, so a folder that users other than its owner may write (group or
others write permission) is not used; the reason goes into the backend's details.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sdk.cpu import cpu_flags, cpu_model
from sdk.engines.cache import CACHE_FORMAT, ENV_VAR, EngineCache, engine_key
from sdk.errors import FileError

if TYPE_CHECKING:  # imported by the caller, only when the backend is used
    from onnxruntime import GraphOptimizationLevel, SessionOptions

SUBFOLDER = "onnxruntime-cpu"
ORT_ERRORS_ONLY = 3  # SessionOptions.log_severity_level: 0 verbose ... 3 error

_LOG = logging.getLogger(__name__)


def cpu_cache_folder(cache_dir: str | os.PathLike | None) -> tuple[Path | None, str]:
    """The folder for optimised CPU models and "", or None and why none is used: no cache folder
    configured (``cache_dir`` None and ``$OCTC_ENGINE_CACHE`` unset), or one others may write."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(ENV_VAR)
    if not chosen:
        return None, f"off: no cache folder configured (--cache-dir or ${ENV_VAR})"
    base = Path(chosen).expanduser()
    for folder in (base, base / SUBFOLDER):
        try:
            mode = folder.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as e:
            return None, f"off: cache folder {folder} cannot be read ({e.strerror or e})"
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            mode_text = stat.filemode(mode)
            return None, f"off: cache folder {folder} may be written by other users (mode {mode_text})"
    return base / SUBFOLDER, ""


def key_material(onnx_sha256: str, precision: str, onnxruntime_version: str) -> dict:
    """Everything a saved optimised CPU model depends on, as plain JSON-able values."""
    import sdk

    flags = " ".join(sorted(cpu_flags()))
    return {
        "cache_format": CACHE_FORMAT,
        "kind": "onnxruntime-cpu-optimised-model",
        "onnx_sha256": onnx_sha256.lower(),
        "precision": precision,
        "onnxruntime_version": onnxruntime_version,
        "graph_optimization": "ORT_ENABLE_ALL",
        "cpu_model": cpu_model(),
        "cpu_flags_sha256": hashlib.sha256(flags.encode("ascii")).hexdigest(),
        "sdk_version": sdk.__version__,
    }


def cached_session(
    ort,
    folder: Path,
    data_of: Callable[[], bytes],
    onnx_sha256: str,
    precision: str,
    options_of: Callable[[GraphOptimizationLevel], SessionOptions],
):
    """An ``InferenceSession`` on the CPU provider from the cached optimised model, or, on a miss, from
    the bundle's bytes (``data_of()``) fully optimised, its optimised model stored for the next process.

    options_of(level) : the backend's SessionOptions with graph optimisation ``level``.
    Returns the session and "hit" or "stored"; on a store that fails (a full disk), the session and
    "not stored: <why>" (logged).
    """
    cache = EngineCache(folder)
    material = key_material(onnx_sha256, precision, ort.__version__)
    built = []

    def build() -> bytes:
        options = options_of(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        saved = folder / f".{engine_key(material)}.{os.getpid()}.optimised.tmp"  # swept by EngineCache
        options.optimized_model_filepath = os.fspath(saved)
        options.log_severity_level = ORT_ERRORS_ONLY  # not its warning that the saved model is CPU-specific
        try:
            built.append(ort.InferenceSession(data_of(), options, providers=["CPUExecutionProvider"]))
            return saved.read_bytes()
        finally:
            saved.unlink(missing_ok=True)

    try:
        _, optimised = cache.load(material, build)
    except (OSError, FileError) as e:
        if not built:
            raise
        _LOG.warning("optimised model not stored in %s: %s", folder, e)
        return built[0], f"not stored: {e}"
    if built:
        return built[0], "stored"
    options = options_of(ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(optimised, options, providers=["CPUExecutionProvider"]), "hit"
