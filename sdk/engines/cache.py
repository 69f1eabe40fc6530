"""A folder of TensorRT engines keyed by what they were built from and where.

An engine is only valid for the exact ONNX bytes, TensorRT build, GPU and build settings that made
it, so its cache key is the sha256 of canonical JSON of all of them (:func:`key_material`). Each
entry is two files in the cache folder::

    <key>.engine   the serialized engine
    <key>.json     sidecar: the key, the full key material, the engine's sha256 and size in bytes
    <key>.lock     fcntl lock file: one process at a time looks up, builds or stores this key

A lookup re-checks the sidecar against the requested key material and the engine bytes against
the recorded sha256; anything stale, truncated, corrupt or half-written is deleted and reported as
a miss, so it is rebuilt and never run. Writes are atomic (temp file in the same folder, fsync,
``os.replace``), engine first and sidecar last, so an entry with a sidecar is always complete.

The folder is the ``cache_dir`` argument, else the ``OCTC_ENGINE_CACHE`` environment variable,
else ``~/.cache/octclassify/engines``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from sdk.errors import FileError

ENV_VAR = "OCTC_ENGINE_CACHE"
DEFAULT_DIR = Path("~/.cache/octclassify/engines")
CACHE_FORMAT = 1  # bump when the entry layout or the key material changes meaning

_LOG = logging.getLogger(__name__)


def key_material(
    *,
    onnx_sha256: str,
    device: dict,
    precision: str,
    input_shapes: dict,
    workspace_bytes: int,
    strategy: str,
    sdk_version: str | None = None,
) -> dict:
    """Everything an engine depends on, as plain JSON-able values.

    Parameters
    ----------
    onnx_sha256 : hex sha256 of the ONNX file the engine is built from.
    device : :func:`sdk.engines.build.device_identity` of the building GPU: ``tensorrt_version``
        (full string), ``gpu_name``, ``compute_capability`` (major, minor), ``sm_count``.
    precision : "fp16" (or "fp32").
    input_shapes : input tensor name -> shape, e.g. ``{"input": (1, 3, 224, 224)}``.
    workspace_bytes : builder workspace memory-pool limit in bytes.
    strategy : how FP16 is obtained, see :func:`sdk.engines.build.fp16_strategy`.
    sdk_version : defaults to ``sdk.__version__``.
    """
    if sdk_version is None:
        import sdk

        sdk_version = sdk.__version__
    major, minor = device["compute_capability"]
    return {
        "cache_format": CACHE_FORMAT,
        "onnx_sha256": onnx_sha256.lower(),
        "tensorrt_version": str(device["tensorrt_version"]),
        "gpu_name": str(device["gpu_name"]),
        "compute_capability": [int(major), int(minor)],
        "sm_count": int(device["sm_count"]),
        "precision": precision,
        "input_shapes": {str(name): [int(d) for d in shape] for name, shape in input_shapes.items()},
        "builder": {"workspace_bytes": int(workspace_bytes), "strategy": strategy},
        "sdk_version": str(sdk_version),
    }


def canonical_json(obj) -> str:
    """Deterministic JSON: sorted keys, no whitespace, ASCII only, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def engine_key(material: dict) -> str:
    """Cache key of ``material``: hex sha256 of its canonical JSON (64 characters)."""
    return hashlib.sha256(canonical_json(material).encode("ascii")).hexdigest()


def write_atomic(path: str | os.PathLike, data) -> None:
    """Write bytes-like ``data`` to ``path`` so that readers see the old file or the whole new one.

    The bytes go to a temp file in the same folder, which is fsynced and renamed over ``path``;
    the folder is then fsynced so the rename survives a power cut. On any error the temp file is
    removed and the error re-raised. The file is readable by everyone (mode 0644).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if missing) for the ``with`` block.

    flock locks belong to the open file, so the lock excludes other threads of this process as
    well as other processes. The lock file is left in place: deleting it would race with waiters.
    """
    with open(path, "ab") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$OCTC_ENGINE_CACHE``, else ``~/.cache/octclassify/engines``."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(ENV_VAR) or DEFAULT_DIR
    return Path(chosen).expanduser()


class EngineCache:
    """Content- and device-keyed store of serialized TensorRT engines (see the module docstring).

    Parameters
    ----------
    cache_dir : folder for the engines; see :func:`resolve_cache_dir`. It is created if missing
        and must be writable, else :class:`~sdk.errors.FileError` is raised.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.directory = resolve_cache_dir(cache_dir)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.directory, prefix=".probe.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise FileError(
                f"engine cache folder {self.directory} is not writable ({e.strerror or e}): choose "
                f"another with --cache-dir DIR, EngineCache(cache_dir=...) or the {ENV_VAR} "
                "environment variable"
            ) from None

    def paths(self, key: str) -> tuple[Path, Path]:
        """(engine file, sidecar file) of ``key``."""
        return self.directory / f"{key}.engine", self.directory / f"{key}.json"

    def lookup(self, material: dict) -> Path | None:
        """Path of a valid engine for ``material``, or None (any invalid entry is deleted)."""
        key = engine_key(material)
        with file_lock(self.directory / f"{key}.lock"):
            found = self._valid_entry(key, material)
            return None if found is None else found[0]

    def store(self, material: dict, engine_bytes) -> Path:
        """Store a serialized engine for ``material`` atomically; return the engine's path."""
        key = engine_key(material)
        with file_lock(self.directory / f"{key}.lock"):
            return self._write(key, material, engine_bytes)

    def get_or_build(self, material: dict, build: Callable[[], bytes], *, force: bool = False) -> Path:
        """Path of the engine for ``material``, calling ``build()`` (-> engine bytes) on a miss.

        The key's lock is held throughout, so a second process asking for the same key waits for
        the first build and then finds it. ``force`` rebuilds even when a valid entry exists.
        """
        return self.load(material, build, force=force)[0]

    def load(self, material: dict, build: Callable[[], bytes], *, force: bool = False) -> tuple[Path, bytes]:
        """As :meth:`get_or_build`, with the engine's bytes: those whose sha256 was checked against
        the sidecar (or that were just built), to deserialise without opening the file again."""
        key = engine_key(material)
        with file_lock(self.directory / f"{key}.lock"):
            found = None if force else self._valid_entry(key, material)
            if found is not None:
                _LOG.info("engine cache hit: %s", found[0])
                return found
            data = bytes(build())
            return self._write(key, material, data), data

    def _valid_entry(self, key: str, material: dict) -> tuple[Path, bytes] | None:
        """Call with the key's lock held. Removes leftover temp files and any invalid entry."""
        for leftover in self.directory.glob(f".{key}.*.tmp"):
            _LOG.warning("removing %s left by an interrupted write", leftover)
            leftover.unlink(missing_ok=True)
        engine, sidecar = self.paths(key)
        problem, data = _read_entry(engine, sidecar, material)
        if data is not None:  # (problem is None): the entry serves material
            return engine, data
        if engine.exists() or sidecar.exists():
            _LOG.warning("discarding cached engine %s (%s); it will be rebuilt", engine, problem)
            engine.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
        return None

    def _write(self, key: str, material: dict, engine_bytes) -> Path:
        """Call with the key's lock held. Engine first, sidecar last; on error neither is left."""
        engine, sidecar = self.paths(key)
        view = memoryview(engine_bytes)
        record = {
            "key": key,
            "key_material": material,
            "engine_sha256": hashlib.sha256(view).hexdigest(),
            "engine_size_bytes": view.nbytes,
        }
        try:
            write_atomic(engine, view)
            write_atomic(sidecar, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("ascii"))
        except BaseException:
            engine.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            raise
        _LOG.info("stored engine %s (%d bytes)", engine, view.nbytes)
        return engine


def _read_entry(engine: Path, sidecar: Path, material: dict) -> tuple[str | None, bytes | None]:
    """(None, the engine's bytes) if the entry (engine, sidecar) can serve ``material``, else (why
    not, None). The engine is read once and its sha256 checked on those bytes."""
    if not sidecar.exists():
        return ("no entry" if not engine.exists() else "its sidecar is missing"), None
    if not engine.exists():
        return "the engine file is missing", None
    try:
        record = json.loads(sidecar.read_text(encoding="ascii"))
        recorded_material = canonical_json(record["key_material"])
        recorded_sha256, recorded_size = record["engine_sha256"], record["engine_size_bytes"]
    except (OSError, ValueError, TypeError, KeyError):
        return "its sidecar is unreadable", None
    if recorded_material != canonical_json(material):
        return "its sidecar records different key material", None
    try:
        data = engine.read_bytes()
    except OSError as e:
        return f"the engine cannot be read ({e.strerror or e})", None
    if len(data) != recorded_size:
        return f"the engine is {len(data)} bytes, its sidecar records {recorded_size}", None
    if hashlib.sha256(data).hexdigest() != recorded_sha256:
        return "the engine's sha256 differs from its sidecar (corrupt)", None
    return None, data
