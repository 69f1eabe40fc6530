"""Inference backends: a bundle's eight networks behind one small interface.

::

    from sdk.backends import make_backend
    backend = make_backend(bundle, "auto")    # tensorrt if usable, else onnxruntime (reason in details)
    stage1, stage2 = backend.run(x)           # x (4, 3, H, W) float32 -> (4, 2), (4, 4) float32
    backend.name, backend.precision, backend.device, backend.details
    backend.close()

Backends (each module imports its library only when the backend is made):

* ``onnxruntime`` (:mod:`sdk.backends.onnxruntime_backend`): the embedded default; CPU, or CUDA /
  TensorRT execution providers when present. FP32 or FP16 ONNX.
* ``tensorrt`` (:mod:`sdk.backends.tensorrt_backend`): FP16 engines from :mod:`sdk.engines`.
* ``torch`` (:mod:`sdk.backends.torch_backend`): the PyTorch reference, FP32 on CPU or CUDA; FP16
  with CUDA graphs on CUDA; bf16 on CPUs with bfloat16 instructions.

Every backend may be called from several threads at once.
"""

from __future__ import annotations

import logging
import os
from importlib import import_module
from typing import Protocol

import numpy as np

from sdk.bundle import DERIVED, FLOAT_PRECISIONS, PRECISIONS, Bundle
from sdk.errors import BackendUnavailable, InvalidVolume
from sdk.labels import STAGE1_CLASSES, STAGE2_CLASSES
from sdk.maps import MAP_NAMES

BACKENDS = {
    "onnxruntime": ("sdk.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "tensorrt": ("sdk.backends.tensorrt_backend", "TensorRTBackend"),
    "torch": ("sdk.backends.torch_backend", "TorchBackend"),
}

_LOG = logging.getLogger(__name__)


class Backend:
    """Runs a bundle's networks on one eye's network input.

    Subclasses load their models in ``__init__`` (after calling this one), fill in ``device`` and
    ``details`` and implement :meth:`_infer` and :meth:`_release`.

    Attributes
    ----------
    name : "onnxruntime", "tensorrt" or "torch".
    precision : "fp32", "fp16", "int8" or "bf16".
    device : where the networks run, e.g. "cpu", "cuda:0 (NVIDIA Jetson Orin)".
    details : JSON-able facts for reports: providers attached, threads, why ``auto`` chose this, ...
    warm_up_runs : passes on zeros ``sdk.Classifier`` runs after loading, so that the first scan
        does not pay what a backend's first run costs more than the next (CUDA contexts, kernel
        selection, engine memory); zero where the first run measures as fast as the next.
    """

    name = ""
    precisions: tuple[str, ...] = FLOAT_PRECISIONS

    def __init__(self, bundle: Bundle, precision: str):
        if precision not in self.precisions:
            raise BackendUnavailable(
                f"the {self.name} backend runs {' or '.join(self.precisions)}, not {precision!r}: "
                f"choose --precision {self.precisions[0]} or another backend"
            )
        self.bundle = bundle
        self.precision = precision
        self.device = "cpu"
        self.details: dict = {}
        self.closed = False
        self._shape = (len(MAP_NAMES), 3, *bundle.input_hw)

    @property
    def warm_up_runs(self) -> int:
        """One pass on zeros after loading, unless a backend says otherwise."""
        return 1

    def run(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities of every network for one eye.

        inputs : float32 (4, 3, H, W), one image per map in MAP_NAMES order (``sdk.maps.to_network_input``).
        Returns stage-1 probabilities (4, 2) (normal, glaucoma) and stage-2 probabilities (4, 4)
        (FI, GE, MY, SS), float32, one row per map.
        """
        if self.closed:
            raise BackendUnavailable(f"this {self.name} backend is closed: make a new one with make_backend")
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        if x.shape != self._shape:
            raise InvalidVolume(
                f"network input has shape {x.shape}; this bundle's networks take {self._shape}"
            )
        return self._infer_all(x)

    def _infer_all(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stage-1 (4, 2) and stage-2 (4, 4) probabilities, float32, for a checked input x (4, 3, H, W)
        float32. By default: :meth:`_infer_map` map by map."""
        stage1 = np.empty((len(MAP_NAMES), len(STAGE1_CLASSES)), np.float32)
        stage2 = np.empty((len(MAP_NAMES), len(STAGE2_CLASSES)), np.float32)
        for m in range(len(MAP_NAMES)):
            stage1[m], stage2[m] = self._infer_map(m, x[m : m + 1])
        return stage1, stage2

    def _infer_map(self, index: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stage-1 (2,) and stage-2 (4,) probabilities, float32, of map ``MAP_NAMES[index]`` for its
        input x (1, 3, H, W) float32. By default: the map's two models one after the other."""
        first, second = stage_indices(self.bundle)[index]
        return self._infer(first, x)[0], self._infer(second, x)[0]

    def _infer(self, index: int, x: np.ndarray) -> np.ndarray:
        """Probabilities (1, C) float32 of ``bundle.models[index]`` for x (1, 3, H, W) float32."""
        raise NotImplementedError

    def _release(self) -> None:
        """Free the models and any device memory."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the models (and device memory); the backend cannot run afterwards. Idempotent."""
        if not self.closed:
            self.closed = True
            self._release()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.precision} on {self.device}, bundle {self.bundle.bundle_id[:12]}>"
        )


def stage_indices(bundle: Bundle) -> list[tuple[int, int]]:
    """Per map in MAP_NAMES order: the indices in ``bundle.models`` of its stage-1 and stage-2 networks."""
    where = {(spec.map_name, spec.stage): i for i, spec in enumerate(bundle.models)}
    return [(where[(m, 1)], where[(m, 2)]) for m in MAP_NAMES]


class BackendClass(Protocol):
    """What :func:`make_backend` needs of a backend class: its precisions, and that it is made from a
    bundle and a precision, with the ``cache_dir`` and ``threads`` keywords."""

    @property
    def precisions(self) -> tuple[str, ...]: ...

    def __call__(
        self,
        bundle: Bundle,
        precision: str,
        *,
        cache_dir: str | os.PathLike | None = None,
        threads: int | None = None,
    ) -> Backend: ...


def backend_class(name: str) -> BackendClass:
    """The class of backend ``name``, importing its module (not its library)."""
    if name not in BACKENDS:
        raise ValueError(f"backend {name!r} is unknown: use auto or one of {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name]
    return getattr(import_module(module), cls)


def make_backend(
    bundle: Bundle,
    name: str = "auto",
    precision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    threads: int | None = None,
) -> Backend:
    """Load ``bundle``'s networks into backend ``name``.

    name : "auto" (tensorrt when TensorRT and a GPU are usable and it loads, else onnxruntime, with
        the reason in ``details["auto"]``; torch for bf16), "onnxruntime", "tensorrt" or "torch".
    precision : "fp32", "fp16", "int8" (onnxruntime on the CPU, bundles converted with --int8) or
        "bf16" (torch on the CPU, bundles converted with --bf16); default: fp16 for tensorrt, fp32
        otherwise.
    cache_dir : engine cache folder (tensorrt, and ONNX Runtime's TensorRT provider); default as in
        :mod:`sdk.engines.cache`.
    threads : CPU threads per network (onnxruntime and torch); default: every core.

    Raises :class:`~sdk.errors.BackendUnavailable` saying why the backend cannot run here.
    """
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is unknown: use one of {', '.join(PRECISIONS)}")
    if name == "auto" and precision == DERIVED:
        name = "torch"  # the one backend that runs bf16
    if name != "auto":
        cls = backend_class(name)
        return cls(bundle, precision or cls.precisions[0], cache_dir=cache_dir, threads=threads)
    if precision in (None, "fp16"):
        from sdk.engines import tensorrt_usable

        usable, reason = tensorrt_usable()
        if usable:
            try:
                return backend_class("tensorrt")(bundle, "fp16", cache_dir=cache_dir, threads=threads)
            except BackendUnavailable as e:
                reason = f"TensorRT is present but failed: {e}"
    else:
        reason = "TensorRT runs fp16 only and fp32 was asked for"
    _LOG.info("auto backend: onnxruntime (%s)", reason)
    backend = backend_class("onnxruntime")(bundle, precision or "fp32", cache_dir=cache_dir, threads=threads)
    backend.details["auto"] = f"onnxruntime, not tensorrt: {reason}"
    return backend
