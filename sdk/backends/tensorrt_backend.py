"""TensorRT backend: FP16 engines from :mod:`sdk.engines`, built on this device on first use.

``sdk.engines.build_bundle_engines`` finds each model's engine in the engine cache (keyed by the
ONNX sha256, TensorRT version, GPU and build settings) or builds it, which takes minutes on a
Jetson: a log line says so before the first build. ``python -m sdk.build_engines BUNDLE`` builds
them ahead of time. Each engine runs in an :class:`sdk.engines.TensorRTModel`: buffers allocated
once, the named-tensor API, a lock per model, so several threads may share the backend.
"""

from __future__ import annotations

import logging

import numpy as np

from sdk.backends import Backend
from sdk.bundle import Bundle

_LOG = logging.getLogger(__name__)


class TensorRTBackend(Backend):
    """The bundle's networks as FP16 TensorRT engines on the current GPU.

    Parameters
    ----------
    bundle : a loaded :class:`~sdk.bundle.Bundle`.
    precision : "fp16" only.
    cache_dir : engine cache folder; see :func:`sdk.engines.cache.resolve_cache_dir`.
    threads : unused (the GPU runs the networks).

    Raises BackendUnavailable without TensorRT, cuda-python or a GPU, or if a build fails.
    """

    name = "tensorrt"
    precisions = ("fp16",)

    def __init__(self, bundle: Bundle, precision: str = "fp16", *, cache_dir=None, threads=None):
        super().__init__(bundle, precision)
        from sdk.engines import TensorRTModel, device_identity
        from sdk.engines.build import load_bundle_engines

        _LOG.info(
            "TensorRT engines for bundle %s: from the engine cache, or built now (first use: this may "
            "take several minutes)",
            bundle.bundle_id[:12],
        )
        engines = load_bundle_engines(bundle, cache_dir=cache_dir, logger=_LOG)
        paths = {name: path for name, (path, _) in engines.items()}
        self._models = []
        try:
            for spec in bundle.models:  # from the bytes the cache checked: the file is not read again
                self._models.append(TensorRTModel(engines.pop(spec.name)[1]))
        except BaseException:
            self._release()
            raise
        identity = device_identity()
        self.device = f"cuda ({identity['gpu_name']})"
        self.details = {
            "tensorrt": identity["tensorrt_version"],
            "engines": {k: str(p) for k, p in paths.items()},
            "compute_capability": identity["compute_capability"],
        }

    def _infer(self, index: int, x: np.ndarray) -> np.ndarray:
        return self._models[index].infer(x)

    def _release(self) -> None:
        while self._models:
            self._models.pop().close()
