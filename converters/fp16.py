"""FP32 ONNX classifier -> FP16 ONNX variant, for strongly typed TensorRT builds and FP16 runtimes.

Weights and compute become float16; the graph's input and output stay float32, so callers feed and
read the same arrays as with the FP32 model. The softmax runs in float32: the logits are cast up
before it and its float32 probabilities are the graph output, so they keep float32 resolution
(float16 steps are 5e-4 near 1.0). The result for an exported VGG16 is::

    input (float32) -> Cast(float16) -> Conv, Relu, MaxPool ... Gemm (float16) -> Cast(float32)
    -> Softmax -> probabilities (float32)

The conversion is written here rather than taken from onnxconverter-common: its
``convert_float_to_float16(keep_io_types=True)`` with Softmax kept in float32 (1.16) declares the
graph output float16, and ONNX Runtime's copy of it rounds the float32 softmax through float16 and
leaves the nodes unsorted. Only the op types of the exported classifiers are accepted (see
``FP16_OPS``); any other op raises ValueError rather than being converted blindly.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from converters.onnx_export import describe_onnx
from sdk.errors import FileError

FP32_OPS = frozenset({"Softmax"})
"""Op types computed in float32 (numerically sensitive)."""

FP16_OPS = frozenset(
    {"Conv", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape"}
    | {"Gemm", "MatMul", "Add", "Identity"}
)
"""Op types computed in float16: those torch's exporters emit for the classifiers."""

FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504


def convert_to_fp16(onnx_path: str | os.PathLike, out_path: str | os.PathLike) -> dict:
    """Write the FP16 variant of the FP32 model at ``onnx_path`` to ``out_path``.

    Float initializers are rounded to float16 (IEEE round-to-nearest; magnitudes below 6e-8 become
    0); float inputs and outputs keep float32 through Cast nodes. The result is checked with
    ``onnx.checker`` (full check) before it is written.

    Raises :class:`~sdk.errors.FileError` if ``onnx_path`` is missing or ``out_path`` already exists
    (nothing is overwritten), ValueError for an op outside ``FP16_OPS | FP32_OPS`` or a weight
    beyond float16's range (+-65504). Returns :func:`converters.onnx_export.describe_onnx` of the
    new file.
    """
    if not os.path.isfile(onnx_path):
        raise FileError(f"ONNX model {os.fspath(onnx_path)!r} does not exist: export the FP32 model first")
    if os.path.exists(out_path):
        raise FileError(
            f"{os.fspath(out_path)!r} already exists: remove it or choose another path for the FP16 model"
        )
    model = onnx.shape_inference.infer_shapes(onnx.load(os.fspath(onnx_path)), strict_mode=True)
    _convert_graph(model.graph)
    onnx.checker.check_model(model, full_check=True)
    tmp_path = f"{os.fspath(out_path)}.tmp"
    try:
        onnx.save(model, tmp_path)
        os.replace(tmp_path, out_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    return describe_onnx(out_path)


def _convert_graph(graph: onnx.GraphProto) -> None:
    """Rewrite a shape-inferred, topologically sorted FP32 graph in place as described above."""
    unsupported = {node.op_type for node in graph.node} - FP16_OPS - FP32_OPS
    if unsupported:
        raise ValueError(
            f"ops {sorted(unsupported)} have no FP16 rule here: add them to FP16_OPS or FP32_OPS "
            "after checking their float16 behaviour"
        )
    is_float = {
        v.name
        for v in (*graph.input, *graph.value_info, *graph.output)
        if v.type.tensor_type.elem_type == TensorProto.FLOAT
    }
    precision = {name: TensorProto.FLOAT for name in is_float & {v.name for v in graph.input}}
    for tensor in graph.initializer:
        if tensor.data_type == TensorProto.FLOAT:
            tensor.CopyFrom(_to_float16(tensor))
            precision[tensor.name] = TensorProto.FLOAT16
    output_names = {v.name for v in graph.output} & is_float
    nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        """Name of ``name`` in precision ``to``, adding one Cast node the first time it is needed."""
        if precision[name] == to:
            return name
        if (name, to) not in casts:
            casts[name, to] = f"{name}_as_{'fp16' if to == TensorProto.FLOAT16 else 'fp32'}"
            nodes.append(
                helper.make_node("Cast", [name], [casts[name, to]], name=f"Cast_{casts[name, to]}", to=to)
            )
        return casts[name, to]

    for node in graph.node:
        to = TensorProto.FLOAT if node.op_type in FP32_OPS else TensorProto.FLOAT16
        for i, name in enumerate(node.input):
            if name in precision:
                node.input[i] = cast(name, to)
        nodes.append(node)
        for i, name in enumerate(node.output):
            if name not in is_float:
                continue
            if name in output_names and to == TensorProto.FLOAT16:
                node.output[i] = f"{name}_fp16"
                precision[node.output[i]] = to
                nodes.append(
                    helper.make_node(
                        "Cast", [node.output[i]], [name], name=f"Cast_{name}", to=TensorProto.FLOAT
                    )
                )
            precision[name] = TensorProto.FLOAT if name in output_names else to
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # float32 types of intermediate tensors are stale; the checker re-infers them


def _to_float16(tensor: onnx.TensorProto) -> onnx.TensorProto:
    array = numpy_helper.to_array(tensor)
    largest = float(np.max(np.abs(array), initial=0.0))
    if not largest <= FLOAT16_MAX:
        raise ValueError(
            f"weight {tensor.name!r} reaches {largest:g}, beyond float16's range (+-{FLOAT16_MAX:g}): "
            "this model cannot be stored in FP16"
        )
    return numpy_helper.from_array(array.astype(np.float16), tensor.name)
