"""PyTorch backend: the reference the converters check against, rebuilt from the bundle's ONNX files.

A bundle holds no PyTorch files (no pickle), so each network is rebuilt as
:class:`sdk.nets.vgg16.VGG16` from its FP32 ONNX file's initializers. The names map onto the
PyTorch state dict as ``converters.onnx_export`` wrote them: it exports
``nn.Sequential(model, nn.Softmax(dim=1))``, so every parameter is prefixed "0."
("0.features.0.weight" -> "features.0.weight"), and the exporter stores equal tensors once (the
zero biases of a fresh network, say), naming the others through Identity nodes, which are
followed here. The state dict is loaded strictly: a missing, extra or misshapen tensor is a
BundleError.
"""

from __future__ import annotations

import os

import numpy as np

from sdk.backends import Backend
from sdk.bundle import Bundle
from sdk.errors import BackendUnavailable, BundleError

ONNX_PREFIX = "0."  # converters.onnx_export wraps the model in nn.Sequential(model, Softmax)


class TorchBackend(Backend):
    """The bundle's networks as PyTorch VGG16 modules, FP32, in eval mode.

    Parameters
    ----------
    bundle : a loaded :class:`~sdk.bundle.Bundle`.
    precision : "fp32" only.
    device : "cpu", "cuda", "cuda:1", ...; default: "cuda" when torch sees a GPU, else "cpu".
    threads : sets torch's intra-op threads, a process-wide setting (default: left as it is). On a
        small CPU shared with other jobs, 1 can be 100 times faster than torch's default.
    cache_dir : unused (nothing is cached).

    Forward passes in inference mode hold no state, so several threads may run one backend at once.
    """

    name = "torch"
    precisions = ("fp32",)

    def __init__(
        self,
        bundle: Bundle,
        precision: str = "fp32",
        *,
        device: str | None = None,
        threads=None,
        cache_dir=None,
    ):
        super().__init__(bundle, precision)
        try:
            import torch

            from sdk.nets.vgg16 import VGG16
        except ImportError as e:
            raise BackendUnavailable(
                f"the torch backend needs PyTorch and onnx ({e}): pip install 'octclassify[train]'"
            ) from None
        self._torch = torch
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if threads:
            torch.set_num_threads(threads)
        width = float(bundle.manifest["network"]["width"])
        self._models = []
        for spec in bundle.models:
            model = VGG16(len(spec.classes), width=width)
            state = {
                name: torch.from_numpy(array)
                for name, array in state_dict_from_onnx(spec.files["fp32"]).items()
            }
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise BundleError(
                    f"{spec.files['fp32'].name} does not hold a VGG16 of width {width} with "
                    f"{len(spec.classes)} classes: {e}"
                ) from None
            self._models.append(model.eval().to(self._device))
        self.device = str(self._device)
        self.details = {"torch": torch.__version__, "threads": torch.get_num_threads()}

    def _infer(self, index: int, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            logits = self._models[index](torch.from_numpy(x).to(self._device))
            return torch.softmax(logits, dim=1).cpu().numpy()

    def _release(self) -> None:
        self._models = []


def state_dict_from_onnx(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """PyTorch state dict (name -> float32 array) of a network exported by ``converters.onnx_export``.

    Initializers, plus the names Identity nodes give them, with the "0." prefix removed.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(os.fspath(path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in arrays:
            arrays[node.output[0]] = arrays[node.input[0]]
    return {
        name.removeprefix(ONNX_PREFIX): np.array(a, np.float32)
        for name, a in arrays.items()
        if name.startswith(ONNX_PREFIX)
    }
