"""Build FP16 TensorRT engines on the device, from a bundle's ONNX models, through the engine cache.

How FP16 is asked for depends on the TensorRT version (:func:`fp16_strategy`):

* TensorRT < 10.12, "builder_flag": parse the FP32 ONNX and set ``BuilderFlag.FP16`` (weak typing:
  TensorRT may pick FP16 per layer).
* TensorRT 10.12+ and 11, "strongly_typed": the FP16 flag is deprecated in 10.12 and gone in 11,
  so the network is parsed strongly typed from the FP16 ONNX variant the bundle ships next to the
  FP32 one, and runs in the types the ONNX states.

The build follows NVIDIA's ``samples/python/introductory_parser_samples/onnx_resnet50.py`` and
Polygraphy's ``backend/trt/loader.py`` (``CreateNetwork``, ``NetworkFromOnnxPath``,
``EngineBytesFromNetwork``) and ``config.py`` (``CreateConfig``: workspace limit, timing cache).
tensorrt is imported only when a build starts. The bundle is the checked :class:`sdk.bundle.Bundle`:
nothing here parses a manifest or opens a model by path.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from sdk.bundle import Bundle
from sdk.engines.cache import EngineCache, engine_key, file_lock, key_material, write_atomic
from sdk.engines.runtime import cuda_check, cuda_runtime, import_tensorrt, trt_logger, version_tuple
from sdk.errors import BackendUnavailable, BundleError

STRATEGIES = ("builder_flag", "strongly_typed")
STRONGLY_TYPED_SINCE = (10, 12)  # BuilderFlag.FP16 deprecated in 10.12, removed in 11.0
DEFAULT_WORKSPACE_BYTES = 1 << 30  # 1 GiB; lower it on 4 GB boards (Jetson Nano)
PRECISION = "fp16"

_LOG = logging.getLogger(__name__)


def fp16_strategy(trt_version: str) -> str:
    """ "builder_flag" for TensorRT < 10.12, "strongly_typed" for 10.12 and later (11 included)."""
    return "strongly_typed" if version_tuple(trt_version)[:2] >= STRONGLY_TYPED_SINCE else "builder_flag"


def tensorrt_usable() -> tuple[bool, str]:
    """(True, what was found) if TensorRT, cuda-python and a GPU are all usable, else (False, why)."""
    try:
        trt = import_tensorrt()
        cudart = cuda_runtime()
        count = cuda_check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except BackendUnavailable as e:
        return False, str(e)
    if count == 0:
        return False, "no NVIDIA GPU is visible (cudaGetDeviceCount is 0): use the onnxruntime backend"
    return True, f"TensorRT {trt.__version__}, {count} GPU(s)"


def device_identity() -> dict:
    """The current GPU and TensorRT build, as used in engine cache keys.

    Returns ``{"gpu_name": str, "compute_capability": [major, minor], "sm_count": int,
    "tensorrt_version": str}`` (the full TensorRT version string, e.g. "10.3.0.30").
    """
    trt = import_tensorrt()
    cudart = cuda_runtime()
    device = cuda_check(cudart, cudart.cudaGetDevice(), "cudaGetDevice")
    props = cuda_check(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return {
        "gpu_name": name.strip(),
        "compute_capability": [int(props.major), int(props.minor)],
        "sm_count": int(props.multiProcessorCount),
        "tensorrt_version": trt.__version__,
    }


def build_engine(
    onnx_model: bytes | str | os.PathLike,
    *,
    strategy: str,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache_path: str | os.PathLike | None = None,
    logger: logging.Logger | None = None,
    input_shapes: dict | None = None,
    source: str | None = None,
) -> bytes:
    """Build a serialized FP16 engine from an ONNX file on the current GPU.

    Parameters
    ----------
    onnx_model : the model's bytes (as :meth:`sdk.bundle.Bundle.read` checked them) or its file: the
        FP32 ONNX for strategy "builder_flag", the FP16 ONNX for "strongly_typed".
    strategy : see :func:`fp16_strategy`.
    workspace_bytes : limit of TensorRT's workspace memory pool, in bytes.
    timing_cache_path : tactic timing cache: loaded if the file exists, and merged and saved
        (atomically, under a file lock) after the build, which makes later builds faster.
    logger : where progress goes (default: this module's logger).
    input_shapes : input name -> shape (N, 3, H, W). When given, every ONNX input must be listed
        and agree with it; dynamic dimensions are fixed to it through one optimization profile.
    source : what to call the model in messages (default: its file, or "ONNX bytes").

    Raises :class:`~sdk.errors.BundleError` if TensorRT cannot parse the ONNX (every parser error
    is in the message) and :class:`~sdk.errors.BackendUnavailable` if the build fails.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is unknown: use one of {STRATEGIES}")
    onnx_path = source or ("ONNX bytes" if isinstance(onnx_model, bytes) else os.fspath(onnx_model))
    trt = import_tensorrt()
    log = logger or _LOG
    major = version_tuple(trt.__version__)[0]
    builder = trt.Builder(trt_logger())
    flags = 0
    if major < 10:  # explicit batch is the only mode from TensorRT 10 on
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strategy == "strongly_typed" and major == 10:  # TensorRT 11 is always strongly typed
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger())
    if isinstance(onnx_model, bytes):
        parsed = parser.parse(onnx_model)
    else:
        parsed = parser.parse_from_file(os.fspath(onnx_model))
    errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
    if not parsed or errors:
        raise BundleError(
            f"TensorRT {trt.__version__} cannot parse {onnx_path}: "
            + ("; ".join(errors) or "no parser error given; is it a valid ONNX file?")
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if strategy == "builder_flag":
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise BackendUnavailable(
                f"TensorRT {trt.__version__} has no FP16 builder flag: use strategy 'strongly_typed' "
                "with the bundle's FP16 ONNX"
            )
        config.set_flag(trt.BuilderFlag.FP16)
    if input_shapes is not None:
        _fix_input_shapes(builder, network, config, input_shapes, onnx_path)
    if timing_cache_path is not None:
        _load_timing_cache(config, Path(timing_cache_path), log)

    log.info(
        "building a TensorRT %s FP16 engine (%s) from %s: this may take several minutes",
        trt.__version__,
        strategy,
        onnx_path,
    )
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None or serialized.nbytes == 0:
        raise BackendUnavailable(
            f"TensorRT {trt.__version__} could not build an engine from {onnx_path} (see the "
            f"TensorRT log above); if it ran out of memory, close other GPU programs or lower "
            f"--workspace-mb (now {int(workspace_bytes) >> 20})"
        )
    log.info("engine built in %.1f s (%.1f MB)", time.perf_counter() - start, serialized.nbytes / 1e6)
    if timing_cache_path is not None:
        _save_timing_cache(config, Path(timing_cache_path), log)
    return bytes(serialized)


def _fix_input_shapes(builder, network, config, input_shapes: dict, onnx_path) -> None:
    """Check the network's inputs against ``input_shapes``; pin dynamic dimensions with a profile."""
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        onnx_shape = tuple(tensor.shape)
        wanted = input_shapes.get(tensor.name)
        if wanted is None:
            raise BundleError(
                f"{onnx_path} has input {tensor.name!r}, but the manifest names {sorted(input_shapes)}"
            )
        wanted = tuple(int(d) for d in wanted)
        if len(wanted) != len(onnx_shape) or any(
            d >= 0 and d != w for d, w in zip(onnx_shape, wanted, strict=True)
        ):
            raise BundleError(
                f"{onnx_path} input {tensor.name!r} has shape {onnx_shape}, the manifest says {wanted}"
            )
        if any(d < 0 for d in onnx_shape):
            profile = profile or builder.create_optimization_profile()
            profile.set_shape(tensor.name, wanted, wanted, wanted)
    if profile is not None:
        config.add_optimization_profile(profile)


def _read_timing_cache(config, path: Path, log: logging.Logger):
    """The timing cache stored at ``path``, or None if there is none or it is unusable."""
    if not path.exists():
        return None
    try:
        return config.create_timing_cache(path.read_bytes())
    except Exception as e:  # a damaged cache must not block the build: TensorRT re-times tactics
        log.warning("ignoring unusable timing cache %s (%s)", path, e)
        return None


def _load_timing_cache(config, path: Path, log: logging.Logger) -> None:
    """Attach the timing cache at ``path`` to ``config`` (an empty one if absent or unusable)."""
    cache = _read_timing_cache(config, path, log)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        if cache is not None:
            log.warning("timing cache %s does not match this TensorRT/GPU; starting an empty one", path)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _save_timing_cache(config, path: Path, log: logging.Logger) -> None:
    """Merge the build's timing cache with the file at ``path`` (Polygraphy's recipe), atomically."""
    cache = config.get_timing_cache()
    with file_lock(path.with_name(path.name + ".lock")):
        previous = _read_timing_cache(config, path, log)  # another build may have saved meanwhile
        if previous is not None:
            cache.combine(previous, ignore_mismatch=True)
        write_atomic(path, cache.serialize())


def build_bundle_engines(
    bundle: Bundle | str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    logger: logging.Logger | None = None,
    *,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> dict[str, Path]:
    """Model name -> engine file of :func:`load_bundle_engines` (same arguments)."""
    engines = load_bundle_engines(bundle, cache_dir, force, logger, workspace_bytes=workspace_bytes)
    return {name: path for name, (path, _) in engines.items()}


def load_bundle_engines(
    bundle: Bundle | str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    logger: logging.Logger | None = None,
    *,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> dict[str, tuple[Path, bytes]]:
    """Build (or find in the engine cache) one FP16 engine per per-stage model of a bundle.

    bundle : a :class:`~sdk.bundle.Bundle` (a path is loaded with ``Bundle.load``, keys from
        ``$OCTC_TRUSTED_KEYS``). The FP16 strategy is chosen from the TensorRT version, and each
        model's engine is looked up in :class:`~sdk.engines.cache.EngineCache` under its
        content+device key (the ONNX sha256 from the manifest) and built on a miss (``force``
        rebuilds) from the bytes :meth:`~sdk.bundle.Bundle.read` checked. A tactic timing cache per
        GPU and TensorRT version, kept in the cache folder, speeds up rebuilds.

    Returns model name -> (engine file, engine bytes): the bytes whose sha256 the cache checked (or
    that were just built), to deserialise without opening the file again. Raises BundleError (bad
    bundle), BackendUnavailable (no TensorRT or GPU, a bundle without the models TensorRT reads, or
    a failed build), FileError (cache folder not writable).
    """
    log = logger or _LOG
    if not isinstance(bundle, Bundle):
        bundle = Bundle.load(bundle)
    usable, reason = tensorrt_usable()
    if not usable:
        raise BackendUnavailable(reason)
    cache = EngineCache(cache_dir)
    device = device_identity()
    strategy = fp16_strategy(device["tensorrt_version"])
    precision = "fp16" if strategy == "strongly_typed" else "fp32"
    if precision not in bundle.model_precisions():
        raise BackendUnavailable(
            f"TensorRT {device['tensorrt_version']} builds FP16 engines from the per-stage {precision} ONNX "
            f"models, which bundle {bundle.bundle_id[:12]} (target {bundle.target}) does not ship: use a "
            "bundle made with --target tensorrt (or all), or the onnxruntime backend"
        )
    timing_cache = cache.directory / f"timing-{engine_key({'timing_cache': device})[:16]}.cache"
    log.info(
        "%s (compute capability %d.%d), TensorRT %s: FP16 by %s",
        device["gpu_name"],
        *device["compute_capability"],
        device["tensorrt_version"],
        strategy,
    )
    engines: dict[str, tuple[Path, bytes]] = {}
    for spec in bundle.models:
        onnx_file = spec.files[precision]
        input_shapes = {spec.input_name: list(spec.input_shape)}
        material = key_material(
            onnx_sha256=bundle.files[onnx_file.as_posix()].sha256,
            device=device,
            precision=PRECISION,
            input_shapes=input_shapes,
            workspace_bytes=workspace_bytes,
            strategy=strategy,
        )

        def build(onnx_file=onnx_file, input_shapes=input_shapes):
            return build_engine(
                bundle.read(onnx_file),
                strategy=strategy,
                workspace_bytes=workspace_bytes,
                timing_cache_path=timing_cache,
                logger=log,
                input_shapes=input_shapes,
                source=f"{bundle.path / onnx_file}",
            )

        engines[spec.name] = cache.load(material, build, force=force)
        log.info("%s: %s", spec.name, engines[spec.name][0])
    return engines
