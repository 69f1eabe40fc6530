"""One ONNX model per map that runs both stages and computes their identical leading layers once.

A map's stage-2 network starts from its trained stage-1 network (hierarchical transfer); trained
with ``--shared-trunk-blocks N``, its first N VGG blocks stay exactly the stage-1 weights. Both
networks are exported the same way, so their graphs list the same operators in the same order.
:func:`merge_stages` walks the two graphs side by side and calls a stage-2 node *shared* when it
is the same operator with the same attributes as its stage-1 counterpart and every input is the
same: the graph input, an initializer holding the same values, or the output of a shared node. The
merged graph holds every stage-1 node and only the unshared stage-2 nodes, fed from the stage-1
tensors where the trunk is shared; it has one input and two outputs, "stage1" and "stage2".
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from sdk.bundle import MERGED_OUTPUTS as OUTPUTS
from sdk.bundle import MERGED_STAGE2_PREFIX as STAGE2_PREFIX


def merge_stages(stage1: onnx.ModelProto, stage2: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The merged model of a map's two stage networks, and how many Conv layers it shares."""
    g1, g2 = stage1.graph, stage2.graph
    nodes1, init1 = _resolved(g1)
    nodes2, init2 = _resolved(g2)
    if [n.op_type for n in nodes1] != [n.op_type for n in nodes2] or len(g1.input) != 1:
        raise ValueError("the two stage networks are not exported alike: cannot line up their layers")
    same = {g2.input[0].name: g1.input[0].name}  # stage-2 tensor -> the stage-1 tensor equal to it
    unshared = []
    shared_convs = 0
    for n1, n2 in zip(nodes1, nodes2, strict=True):
        if _same_node(n1, n2, same, init1, init2):
            same.update(zip(n2.output, n1.output, strict=True))
            shared_convs += n2.op_type == "Conv"
        else:
            unshared.append(n2)

    def rename(name: str) -> str:
        return same.get(name, STAGE2_PREFIX + name) if name else name

    merged = onnx.GraphProto(name="stages")
    merged.input.extend(g1.input)
    merged.node.extend(nodes1)
    for node in unshared:
        copy = merged.node.add()
        copy.CopyFrom(node)
        copy.name = STAGE2_PREFIX + node.name
        copy.input[:] = [rename(i) for i in node.input]
        copy.output[:] = [STAGE2_PREFIX + o for o in node.output]
    final = {g1.output[0].name: OUTPUTS[0], STAGE2_PREFIX + g2.output[0].name: OUTPUTS[1]}
    for node in merged.node:
        node.output[:] = [final.get(o, o) for o in node.output]
    merged.initializer.extend(init1.values())
    used = {i for node in unshared for i in node.input}
    for name, tensor in init2.items():
        if name in used:
            copy = merged.initializer.add()
            copy.CopyFrom(tensor)
            copy.name = STAGE2_PREFIX + name
    for value, name in zip((g1.output[0], g2.output[0]), OUTPUTS, strict=True):
        output = onnx.ValueInfoProto()
        output.CopyFrom(value)
        output.name = name
        merged.output.append(output)
    model = onnx.helper.make_model(merged, opset_imports=stage1.opset_import, producer_name="octclassify")
    model.ir_version = stage1.ir_version
    onnx.checker.check_model(model, full_check=True)
    return model, shared_convs


def _resolved(graph: onnx.GraphProto):
    """The graph's nodes and initializers with the exporter's Identity aliases of initializers
    (equal weights share one tensor) replaced by copies of the tensor under the alias's name."""
    initializers = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            alias = onnx.TensorProto()
            alias.CopyFrom(initializers[node.input[0]])
            alias.name = node.output[0]
            initializers[alias.name] = alias
        else:
            nodes.append(node)
    used = {i for node in nodes for i in node.input}
    return nodes, {name: t for name, t in initializers.items() if name in used}


def _same_node(n1, n2, same, init1, init2) -> bool:
    if n1.op_type != n2.op_type or len(n1.input) != len(n2.input):
        return False
    if [a.SerializeToString() for a in n1.attribute] != [a.SerializeToString() for a in n2.attribute]:
        return False
    for i1, i2 in zip(n1.input, n2.input, strict=True):
        if i2 in same:
            if same[i2] != i1:
                return False
        elif i1 in init1 and i2 in init2:
            a, b = numpy_helper.to_array(init1[i1]), numpy_helper.to_array(init2[i2])
            if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
                return False
        else:
            return False
    return True
