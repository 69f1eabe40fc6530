"""The inputs and outputs of an ONNX model, read from its bytes without onnx or ONNX Runtime.

    inputs, outputs = onnx_io(data)      # [(name, shape, element type)], shape dims int or str

A model file is a protobuf ``ModelProto``; this walks only the fields on the way to the graph's
``input`` and ``output`` value infos (ModelProto.graph = 7; GraphProto.input = 11, output = 12;
ValueInfoProto.name = 1, type = 2; TypeProto.tensor_type = 1; Tensor.elem_type = 1, shape = 2;
TensorShapeProto.dim = 1; Dimension.dim_value = 1, dim_param = 2) and skips everything else by its
length, so a 120 MB model is read in about a millisecond. Any malformed byte is a ValueError.
"""

from __future__ import annotations

from collections.abc import Iterator

FLOAT = 1  # TensorProto.DataType.FLOAT
FLOAT16 = 10
ELEMENT_TYPES = {"float32": FLOAT, "float16": FLOAT16}
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def onnx_io(data: bytes) -> tuple[list[tuple], list[tuple]]:
    """(inputs, outputs) of the model's graph, each a list of (name, shape tuple, element type int);
    a dimension is an int (dim_value), a str (dim_param) or None (unknown). ValueError if ``data``
    is not a ModelProto with a graph."""
    view = memoryview(data)
    graphs = [value for field, value in _fields(view, 0, len(view)) if field == 7]
    if len(graphs) != 1 or not isinstance(graphs[0], tuple):
        raise ValueError("no graph")
    inputs: list[tuple] = []
    outputs: list[tuple] = []
    for field, value in _fields(view, *graphs[0]):
        if field in (11, 12) and isinstance(value, tuple):
            (inputs if field == 11 else outputs).append(_value_info(view, value))
    return inputs, outputs


def _value_info(view: memoryview, span: tuple[int, int]) -> tuple:
    name, shape, element = "", (), None
    for field, value in _fields(view, *span):
        if field == 1 and isinstance(value, tuple):
            name = bytes(view[value[0] : value[1]]).decode("utf-8")
        elif field == 2 and isinstance(value, tuple):
            for tensor_field, tensor in _fields(view, *value):
                if tensor_field == 1 and isinstance(tensor, tuple):
                    element, shape = _tensor_type(view, tensor)
    return name, shape, element


def _tensor_type(view: memoryview, span: tuple[int, int]) -> tuple[int | None, tuple]:
    element, dims = None, []
    for field, value in _fields(view, *span):
        if field == 1 and isinstance(value, int):
            element = value
        elif field == 2 and isinstance(value, tuple):
            for dim_field, dim in _fields(view, *value):
                if dim_field == 1 and isinstance(dim, tuple):
                    dims.append(_dimension(view, dim))
    return element, tuple(dims)


def _dimension(view: memoryview, span: tuple[int, int]) -> int | str | None:
    found: int | str | None = None
    for field, value in _fields(view, *span):
        if field == 1 and isinstance(value, int):
            found = value
        elif field == 2 and isinstance(value, tuple):
            found = bytes(view[value[0] : value[1]]).decode("utf-8")
    return found


def _fields(view: memoryview, start: int, end: int) -> Iterator[tuple[int, int | tuple[int, int]]]:
    """(field number, value) of a message's bytes [start, end): an int for varints, (start, end) of
    the payload for length-delimited fields; fixed-width fields are skipped."""
    position = start
    while position < end:
        tag, position = _varint(view, position, end)
        field, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            value, position = _varint(view, position, end)
            yield field, value
        elif wire == _LENGTH:
            length, position = _varint(view, position, end)
            if position + length > end:
                raise ValueError("a field runs past its message")
            yield field, (position, position + length)
            position += length
        elif wire in (_FIXED64, _FIXED32):
            position += 8 if wire == _FIXED64 else 4
        else:
            raise ValueError(f"wire type {wire} is not used by ONNX")
    if position != end:
        raise ValueError("a field runs past its message")


def _varint(view: memoryview, position: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= end or shift > 63:
            raise ValueError("truncated varint")
        byte = view[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, position
