"""PyTorch backend: the reference the converters check against, rebuilt from the bundle's FP32 ONNX models.

A bundle holds no PyTorch files (no pickle), so each network is rebuilt as
:class:`sdk.nets.vgg16.VGG16` from its FP32 ONNX file's initializers. The names map onto the
PyTorch state dict as ``converters.onnx_export`` wrote them: it exports
``nn.Sequential(model, nn.Softmax(dim=1))``, so every parameter is prefixed "0."
("0.features.0.weight" -> "features.0.weight"), and the exporter stores equal tensors once (the
zero biases of a fresh network, say), naming the others through Identity nodes, which are
followed here. A cpu bundle ships no per-stage files: both networks of a map are then rebuilt from
its merged FP32 model (``converters.shared_trunk``: the stage-1 tensors, and stage 2's own under a
"stage2/" prefix where its layers differ). The state dict is loaded strictly: a missing, extra or
misshapen tensor is a BundleError.

bf16 (CPU): the FP32 weights rounded to bfloat16 and the networks run in bfloat16, channels-last
(oneDNN's AVX-512 BF16 / AMX kernels), softmax in FP32: :func:`bf16_network` and
:func:`probabilities`, the same functions ``converters.bf16`` gates at conversion.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import numpy as np

from sdk.backends import Backend, stage_indices
from sdk.bundle import DERIVED, MERGED_STAGE2_PREFIX, Bundle
from sdk.cpu import bf16_unsupported
from sdk.errors import BackendUnavailable, BundleError
from sdk.maps import MAP_NAMES

ONNX_PREFIX = "0."  # converters.onnx_export wraps the model in nn.Sequential(model, Softmax)


class TorchBackend(Backend):
    """The bundle's networks as PyTorch VGG16 modules in eval mode: FP32 (CPU or CUDA), FP16 on CUDA,
    bf16 on a CPU with bfloat16 instructions.

    Parameters
    ----------
    bundle : a loaded :class:`~sdk.bundle.Bundle`.
    precision : "fp32", "fp16" (CUDA only: the FP32 weights cast to half; softmax in FP32) or "bf16"
        (CPU only, a bundle that declares it, :func:`sdk.cpu.bf16_unsupported` satisfied).
        FP32 on CUDA is true FP32: TF32 is switched off for cuDNN and cuBLAS (process-wide settings).
    device : "cpu", "cuda", "cuda:1", ...; default: "cuda" when torch sees a GPU, else "cpu".
    threads : sets torch's intra-op threads, a process-wide setting (default: left as it is). On a
        small CPU shared with other jobs, 1 can be 100 times faster than torch's default.
    cache_dir : unused (nothing is cached).
    cuda_graphs : on CUDA, capture the eight networks once as one CUDA graph and replay it for every
        eye (default True): one launch instead of about 300 kernel launches from Python. False runs them
        eagerly, one after the other. Ignored on the CPU.

    Eager forward passes in inference mode hold no state, so several threads may run one backend at
    once; a CUDA graph's input and output buffers are shared, so its replays take a lock.
    """

    name = "torch"
    precisions = ("fp32", "fp16", DERIVED)
    dtypes = {"fp32": "float32", "fp16": "float16", DERIVED: "bfloat16"}

    def __init__(
        self,
        bundle: Bundle,
        precision: str = "fp32",
        *,
        device: str | None = None,
        threads=None,
        cache_dir=None,
        cuda_graphs: bool = True,
    ):
        super().__init__(bundle, precision)
        try:
            import onnx  # noqa: F401 - the networks are rebuilt from the bundle's ONNX files
            import torch
        except ImportError as e:
            raise BackendUnavailable(
                f"the torch backend needs PyTorch and onnx ({e}): pip install 'octclassify[train]'"
            ) from None
        self._torch = torch
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        on_cuda = self._device.type == "cuda"
        if precision == "fp16" and not on_cuda:
            raise BackendUnavailable(
                "the torch backend runs fp16 on CUDA only; on the CPU choose --precision fp32 "
                "or the onnxruntime backend"
            )
        if precision == DERIVED:
            _check_bf16(bundle, on_cuda)
        if on_cuda and not torch.cuda.is_available():
            raise BackendUnavailable(f"torch {torch.__version__} sees no CUDA GPU for device {device!r}")
        if on_cuda and precision == "fp32":
            float32_means_float32()
        if threads:
            torch.set_num_threads(threads)
        self._dtype = getattr(torch, self.dtypes[precision])
        self._models = [
            bf16_network(model) if precision == DERIVED else model.to(self._device, self._dtype)
            for model in fp32_networks(bundle)
        ]
        self._maps = _shared_layers(self._models, stage_indices(bundle))
        self._graph = _EightNetworkGraph(self) if on_cuda and cuda_graphs else None
        self.device = str(self._device)
        if on_cuda:
            self.device += f" ({torch.cuda.get_device_name(self._device)})"
        self.details = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda_graphs": self._graph is not None,
            "shared_layers_run_once": [shared for _, _, shared in self._maps],
        }

    def _forward_map(self, index: int, x):
        """Stage-1 (N, 2) and stage-2 (N, 4) probabilities, float32 torch tensors, of map ``MAP_NAMES[index]``
        for x (N, 3, H, W) float32 on the device: the layers the two networks share run once."""
        first, second, shared = self._maps[index]
        z = self._models[first].features[:shared](prepared(x, self._dtype))
        stage1, stage2 = (self._models[i].forward_from(z, shared).float() for i in (first, second))
        return self._torch.softmax(stage1, dim=1), self._torch.softmax(stage2, dim=1)

    def _infer_map(self, index: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            stage1, stage2 = self._forward_map(index, self._torch.from_numpy(x).to(self._device))
            return stage1.cpu().numpy()[0], stage2.cpu().numpy()[0]

    def _infer_all(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._graph is None:
            return super()._infer_all(x)
        return self._graph.replay(x)

    def _release(self) -> None:
        self._models = []
        self._graph = None
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()


class _EightNetworkGraph:
    """The eight networks of a CUDA :class:`TorchBackend` captured as one CUDA graph.

    A static input (4, 3, H, W) on the GPU and static outputs (4, 2) and (4, 4) float32; ``replay``
    copies an eye's input in, replays and copies the probabilities out, under a lock.
    """

    WARMUP_PASSES = 3  # on a side stream before capture, as PyTorch's CUDA graph notes ask

    def __init__(self, backend: TorchBackend):
        torch = backend._torch
        self._torch = torch
        self._lock = threading.Lock()
        self._input = torch.zeros((len(MAP_NAMES), 3, *backend.bundle.input_hw), device=backend._device)

        def forward():
            stage1, stage2 = zip(
                *(backend._forward_map(m, self._input[m : m + 1]) for m in range(len(MAP_NAMES))), strict=True
            )
            return torch.cat(stage1), torch.cat(stage2)

        with torch.cuda.device(backend._device), torch.inference_mode():
            side = torch.cuda.Stream(backend._device)
            side.wait_stream(torch.cuda.current_stream(backend._device))
            with torch.cuda.stream(side):
                for _ in range(self.WARMUP_PASSES):
                    forward()
            torch.cuda.current_stream(backend._device).wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._stage1, self._stage2 = forward()
        self._host_input = torch.empty(self._input.shape, pin_memory=True)

    def replay(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock, self._torch.cuda.device(self._input.device), self._torch.inference_mode():
            self._host_input.numpy()[...] = x
            self._input.copy_(self._host_input, non_blocking=True)
            self._graph.replay()
            return self._stage1.cpu().numpy(), self._stage2.cpu().numpy()


def fp32_networks(bundle: Bundle) -> Iterator:
    """The bundle's eight networks (``bundle.models`` order) as FP32 :class:`sdk.nets.vgg16.VGG16`
    modules on the CPU in eval mode, rebuilt one at a time from the bundle's FP32 ONNX files;
    BundleError where a file does not hold the network its manifest entry describes."""
    import torch

    from sdk.nets.vgg16 import VGG16

    try:
        width = float(bundle.manifest["network"]["width"])
    except (KeyError, TypeError, ValueError):
        raise BundleError("manifest.json: network.width is missing or not a number") from None
    for spec, (state, file) in zip(bundle.models, _fp32_state_dicts(bundle), strict=True):
        model = VGG16(len(spec.classes), width=width)
        try:
            model.load_state_dict({k: torch.from_numpy(a) for k, a in state.items()}, strict=True)
        except RuntimeError as e:
            raise BundleError(
                f"{file} does not hold {spec.name}, a VGG16 of width {width} with "
                f"{len(spec.classes)} classes: {e}"
            ) from None
        yield model.eval()


def float32_means_float32() -> None:
    """Switch TF32 off for this process's CUDA convolutions and matrix products (torch allows it for
    convolutions by default): FP32 results are then float32's, as the bundle's tolerances assume."""
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def bf16_network(model):
    """``model`` (an FP32 module on the CPU) with its weights rounded to bfloat16, channels-last."""
    import torch

    return model.to(torch.bfloat16).to(memory_format=torch.channels_last)


def probabilities(model, x, dtype):
    """Softmax probabilities (N, C) float32 of ``model`` (of ``dtype``) for x (N, 3, H, W) float32,
    a torch tensor on the model's device; bfloat16 runs channels-last."""
    import torch

    return torch.softmax(model(prepared(x, dtype)).float(), dim=1)


def prepared(x, dtype):
    """x (N, 3, H, W) float32 as a network of ``dtype`` takes it: cast, and channels-last for bfloat16."""
    import torch

    x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if dtype == torch.bfloat16 else x


def _shared_layers(models: list, pairs: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Per map: its stage-1 and stage-2 indices in ``models`` and how many leading feature modules the
    two share (:func:`sdk.nets.vgg16.shared_prefix`); stage 2 is given stage 1's modules for those,
    so that they are held once."""
    from sdk.nets.vgg16 import shared_prefix

    maps = []
    for first, second in pairs:
        shared = shared_prefix(models[first], models[second])
        for i in range(shared):
            models[second].features[i] = models[first].features[i]
        maps.append((first, second, shared))
    return maps


def _check_bf16(bundle: Bundle, on_cuda: bool) -> None:
    """BackendUnavailable unless bf16 may run here: on the CPU, declared by the bundle, with the
    instructions :func:`sdk.cpu.bf16_unsupported` looks for."""
    if on_cuda:
        raise BackendUnavailable("the torch backend runs bf16 on the CPU only: on CUDA choose fp16")
    if DERIVED not in bundle.derived_precisions():
        raise BackendUnavailable(
            f"bundle {bundle.bundle_id[:12]} declares no {DERIVED} gate: convert it with python -m "
            f"converters bundle --{DERIVED} (which checks bf16 against fp32), or choose --precision fp32"
        )
    reason = bf16_unsupported()
    if reason:
        raise BackendUnavailable(f"{reason}: choose --precision fp32")


def _fp32_state_dicts(bundle: Bundle) -> Iterator[tuple[dict[str, np.ndarray], str]]:
    """Per ``bundle.models`` entry, in order: its FP32 state dict and the bundle file it came from, from
    the per-stage FP32 files where the bundle ships them, else from each map's merged FP32 model (whose
    two stages follow each other in ``bundle.models``). One file's tensors in memory at a time."""
    if "fp32" in bundle.model_precisions():
        files = [spec.files["fp32"] for spec in bundle.models]
        for data, file in zip(bundle.read_many(files), files, strict=True):
            yield state_dict_from_onnx(data), file.name
        return
    if "fp32" not in bundle.merged_precisions():
        raise BackendUnavailable(
            f"bundle {bundle.bundle_id[:12]} (target {bundle.target}) ships no FP32 ONNX models to rebuild "
            "the networks from: use another backend"
        )
    files = [spec.files["fp32"] for spec in bundle.merged]  # one per map, in MAP_NAMES order
    for data, file in zip(bundle.read_many(files), files, strict=True):
        for state in state_dicts_from_merged(data):
            yield state, file.name


def _initializers(model: bytes | str | os.PathLike) -> dict[str, np.ndarray]:
    """An ONNX model's initializers by name, plus the names Identity nodes give them."""
    import onnx
    from onnx import numpy_helper

    graph = (onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(os.fspath(model))).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in arrays:
            arrays[node.output[0]] = arrays[node.input[0]]
    return arrays


def state_dict_from_onnx(model: bytes | str | os.PathLike) -> dict[str, np.ndarray]:
    """PyTorch state dict (name -> float32 array) of a network exported by ``converters.onnx_export``,
    from the model's bytes (or its file).

    Initializers, plus the names Identity nodes give them, with the "0." prefix removed.
    """
    return {
        name.removeprefix(ONNX_PREFIX): np.array(a, np.float32)
        for name, a in _initializers(model).items()
        if name.startswith(ONNX_PREFIX)
    }


def state_dicts_from_merged(model: bytes | str | os.PathLike) -> tuple[dict, dict]:
    """The stage-1 and stage-2 state dicts (name -> float32 array) of a map's merged model: stage 1's
    tensors, and for stage 2 its own ("stage2/" + name) where it has one, else stage 1's (a shared
    layer, identical by construction)."""
    arrays = _initializers(model)
    stage1 = {
        name.removeprefix(ONNX_PREFIX): np.array(a, np.float32)
        for name, a in arrays.items()
        if name.startswith(ONNX_PREFIX)
    }
    stage2 = {
        name: np.array(arrays.get(MERGED_STAGE2_PREFIX + ONNX_PREFIX + name, stage1[name]), np.float32)
        for name in stage1
    }
    return stage1, stage2
