"""Run a serialized TensorRT engine: :class:`TensorRTModel`, plus the lazy TensorRT/CUDA imports.

The execution path is the one of NVIDIA's ``samples/python/common_runtime.py`` and Polygraphy's
``TrtRunner`` (TensorRT >= 8.5 named-tensor API): deserialize, create one execution context,
allocate pinned host and device memory for every I/O tensor once, bind the device addresses with
``set_tensor_address``, then per call copy in, ``execute_async_v3``, copy out and synchronize the
stream. CUDA is reached through cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` on
cuda-python < 12.6); every call's status is checked.

Neither tensorrt nor cuda-python is imported until a function here needs it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import BackendUnavailable, BundleError, InvalidVolume

MIN_TENSORRT = (8, 5)  # first release with set_tensor_address / execute_async_v3


def version_tuple(version: str) -> tuple[int, ...]:
    """Leading integers of a dotted version: "10.13.2" -> (10, 13, 2), "8.6.1.post1" -> (8, 6, 1)."""
    parts = []
    for part in str(version).split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def import_tensorrt():
    """The ``tensorrt`` module, or :class:`~sdk.errors.BackendUnavailable` saying why not."""
    try:
        import tensorrt
    except (ImportError, OSError) as e:
        raise BackendUnavailable(
            f"TensorRT is not usable here ({e}): TensorRT engines are built and run on a machine "
            "with an NVIDIA GPU and driver; install the 'tensorrt' extra there "
            "(pip install 'octclassify[tensorrt]'), or use the onnxruntime backend"
        ) from None
    if version_tuple(tensorrt.__version__) < MIN_TENSORRT:
        raise BackendUnavailable(
            f"TensorRT {tensorrt.__version__} is too old: the SDK needs TensorRT >= 8.5 "
            "(named-tensor execution API); use the onnxruntime backend on this device"
        )
    return tensorrt


def cuda_runtime():
    """cuda-python's CUDA runtime module (``cuda.bindings.runtime``, or ``cuda.cudart`` when old)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError as e:
            raise BackendUnavailable(
                f"cuda-python is not installed ({e}): install the 'tensorrt' extra "
                "(pip install 'octclassify[tensorrt]') on the GPU machine"
            ) from None
    return runtime


def cuda_check(cudart, result, call: str):
    """Unpack a cuda-python result tuple ``(status, *values)``; raise BackendUnavailable on error.

    Returns the single value, or None for calls that return only a status.
    """
    status, *values = result
    if status != cudart.cudaError_t.cudaSuccess:
        name = cudart.cudaGetErrorName(status)[1]
        name = name.decode() if isinstance(name, bytes) else str(name)
        raise BackendUnavailable(f"CUDA call {call} failed with {name}: is the NVIDIA GPU and driver usable?")
    return values[0] if values else None


@functools.cache
def trt_logger():
    """The process's one TensorRT logger (warnings and errors go to stderr)."""
    trt = import_tensorrt()
    return trt.Logger(trt.Logger.WARNING)


class TensorRTModel:
    """One TensorRT engine of a classifier, loaded and ready to run: (N, 3, H, W) in, (N, C) out.

    Parameters
    ----------
    engine : serialized engine (bytes-like) or the path of an engine file.

    The engine must have exactly one input and one output tensor. Device and pinned host buffers
    for both are allocated once here and reused by every :meth:`infer`; a lock lets several
    threads share one model (calls run one at a time). Call :meth:`close` (or use ``with``) to
    free the GPU memory.

    Attributes
    ----------
    input_name, output_name : tensor names in the engine.
    input_shape : (N, 3, H, W) the engine runs, in pixels for H and W.
    output_shape : (N, C), C the number of classes.
    """

    def __init__(self, engine: bytes | str | os.PathLike):
        trt = import_tensorrt()
        self._cudart = cuda_runtime()
        self._lock = threading.Lock()
        # (free function name, pointer), freed in reverse order by close()
        self._allocations: list[tuple[str, Any]] = []
        self._stream = self._context = None
        self._host: dict[str, np.ndarray] = {}  # pinned buffers by tensor name
        self._device: dict[str, Any] = {}  # device pointers by tensor name
        data = engine if isinstance(engine, (bytes, bytearray, memoryview)) else Path(engine).read_bytes()
        self._runtime = trt.Runtime(trt_logger())
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise BackendUnavailable(
                "TensorRT could not deserialize the engine (see the TensorRT log above): it is corrupt "
                f"or was built by another TensorRT version or GPU; rebuild it with "
                f"python -m sdk.build_engines BUNDLE (this is TensorRT {trt.__version__})"
            )
        try:
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise BackendUnavailable(
                    "TensorRT could not create an execution context (out of GPU memory?)"
                )
            self._bind(trt, self._context)
        except BaseException:
            self.close()
            raise

    def _bind(self, trt, context) -> None:
        engine, cudart = self._engine, self._cudart
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(
                f"engine has inputs {inputs} and outputs {outputs}: a classifier engine needs "
                "exactly one of each"
            )
        self.input_name, self.output_name = inputs[0], outputs[0]
        shape = tuple(engine.get_tensor_shape(self.input_name))
        if any(d < 0 for d in shape):  # dynamic input: run the single shape its profile 0 allows
            shape = tuple(engine.get_tensor_profile_shape(self.input_name, 0)[2])
            if not context.set_input_shape(self.input_name, shape):
                raise BundleError(f"engine rejects input shape {shape} for {self.input_name!r}")
        self.input_shape = shape
        self.output_shape = tuple(context.get_tensor_shape(self.output_name))
        self._stream = cuda_check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        io = ((self.input_name, self.input_shape), (self.output_name, self.output_shape))
        for name, tensor_shape in io:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(tensor_shape)) * dtype.itemsize
            host_ptr = cuda_check(cudart, cudart.cudaMallocHost(nbytes), "cudaMallocHost")
            self._allocations.append(("cudaFreeHost", host_ptr))
            raw = np.ctypeslib.as_array(ctypes.cast(host_ptr, ctypes.POINTER(ctypes.c_uint8)), (nbytes,))
            self._host[name] = raw.view(dtype).reshape(tensor_shape)
            self._device[name] = cuda_check(cudart, cudart.cudaMalloc(nbytes), "cudaMalloc")
            self._allocations.append(("cudaFree", self._device[name]))
            if not context.set_tensor_address(name, int(self._device[name])):
                raise BackendUnavailable(f"TensorRT refused the device address of tensor {name!r}")

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch.

        Parameters
        ----------
        x : float32 array (N, 3, H, W) equal to :attr:`input_shape` (other float dtypes are cast).

        Returns
        -------
        float32 array (N, C), :attr:`output_shape`: one row of probabilities per image.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.shape != self.input_shape:
            raise InvalidVolume(
                f"model input has shape {x.shape}, but the TensorRT engine runs {self.input_shape} "
                f"(N, 3, H, W) for {self.input_name!r}: check the map size and batch size"
            )
        cudart = self._cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            if self._context is None:
                raise BackendUnavailable("this TensorRTModel is closed: load the engine again")
            host_in, host_out = self._host[self.input_name], self._host[self.output_name]
            np.copyto(host_in, x, casting="same_kind")
            cuda_check(
                cudart,
                cudart.cudaMemcpyAsync(
                    self._device[self.input_name], host_in.ctypes.data, host_in.nbytes, h2d, self._stream
                ),
                "cudaMemcpyAsync",
            )
            if not self._context.execute_async_v3(stream_handle=self._stream):
                raise BackendUnavailable("TensorRT execute_async_v3 failed (see the TensorRT log above)")
            cuda_check(
                cudart,
                cudart.cudaMemcpyAsync(
                    host_out.ctypes.data, self._device[self.output_name], host_out.nbytes, d2h, self._stream
                ),
                "cudaMemcpyAsync",
            )
            cuda_check(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            return host_out.astype(np.float32)  # a copy: the pinned buffer is reused

    def close(self) -> None:
        """Free the GPU and pinned memory and the engine; safe to call twice."""
        with self._lock:
            self._context = None
            self._host = {}
            cudart = self._cudart
            while self._allocations:
                free, pointer = self._allocations.pop()
                cuda_check(cudart, getattr(cudart, free)(pointer), free)
            if self._stream is not None:
                stream, self._stream = self._stream, None
                cuda_check(cudart, cudart.cudaStreamDestroy(stream), "cudaStreamDestroy")
            self._engine = None
            self._runtime = None

    def __enter__(self) -> TensorRTModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._context is None else f"{self.input_shape} -> {self.output_shape}"
        return f"TensorRTModel({state})"
