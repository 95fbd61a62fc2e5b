"""A head on cached embeddings as one ONNX graph: the encoders, their pooling, the head's features, the linear layer.

The graph does exactly what the ranking does to an image before its head (models/embedder.py then
labeling/ranking/scoring.py head_features), so the served head sees the features it was trained on:

    per encoder: output ─ (mean over h, w if a feature map) ─ unit length
    then:        concat ─ sign(x)·√|x| ─ (x − mean) / std ─ x·Wᵀ + b ─ logits

One input per encoder, each an image prepared at that encoder's size ("x" when there is one encoder,
"x128", "x224" … when there are several). Built with the onnx library from the encoders' own files, so
it needs no torch: the encoders' weights are copied into the graph as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.embedder import UNIT_EPSILON  # _unit_vectors divides by max(norm, this); the graph must too


@dataclass(frozen=True)
class EncoderGraph:
    """One encoder's ONNX file and how to feed it: the image size and normalisation, its input and output."""

    path: Path
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_name: str = "x"
    output_name: str = "embedding"


def input_names(encoders: list[EncoderGraph]) -> list[str]:
    """The head graph's input names, one per encoder: "x" alone, else "x<size>"."""
    if len(encoders) == 1:
        return ["x"]
    names = [f"x{encoder.size}" for encoder in encoders]
    if len(set(names)) != len(names):
        raise ValueError("a head graph takes one encoder per image size")
    return names


def _reduce(op: str, source: str, target: str, axes: list[int], opset: int, nodes: list, initializers: list) -> None:
    """A Reduce* node over axes, keeping them; axes became an input in opset 18."""
    from onnx import helper, numpy_helper

    if opset >= 18:
        axes_name = f"{target}/axes"
        initializers.append(numpy_helper.from_array(np.asarray(axes, dtype=np.int64), axes_name))
        nodes.append(helper.make_node(op, [source, axes_name], [target], keepdims=1))
    else:
        nodes.append(helper.make_node(op, [source], [target], axes=axes, keepdims=1))


def compose_head(
    encoders: list[EncoderGraph],
    feature_mean: np.ndarray,
    feature_std: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    path: Path,
) -> list[dict]:
    """Write the head graph to path; returns its inputs as [{"name", "size", "mean", "std"}] for meta.json.

    weight: (classes, features) and bias: (classes,), scikit-learn's coef_ and intercept_ (for two classes,
    its single row is spread into two logits, −z/2 and z/2, which give the same probabilities).
    """
    import onnx
    from onnx import TensorProto, compose, helper, numpy_helper

    weight, bias = np.asarray(weight, dtype=np.float32), np.asarray(bias, dtype=np.float32)
    if weight.shape[0] == 1:
        weight, bias = np.vstack([-weight / 2, weight / 2]), np.concatenate([-bias / 2, bias / 2])
    names = input_names(encoders)
    models = [onnx.load(str(encoder.path)) for encoder in encoders]
    opsets = {(entry.domain or "", entry.version) for model in models for entry in model.opset_import}
    default_opsets = {version for domain, version in opsets if domain in ("", "ai.onnx")}
    if len(default_opsets) != 1:
        raise ValueError(
            f"the encoders use different ONNX opsets ({sorted(default_opsets)}): they cannot share a graph"
        )
    opset = default_opsets.pop()

    nodes, initializers, inputs, value_infos, units = [], [], [], [], []
    for index, (encoder, model, name) in enumerate(zip(encoders, models, names, strict=True)):
        prefix = f"e{index}/"
        model = compose.add_prefix(model, prefix)
        graph = model.graph
        source = prefix + encoder.input_name
        for node in graph.node:  # the encoder's input takes the head graph's public name
            node.input[:] = [name if value == source else value for value in node.input]
        (image_input,) = [value for value in graph.input if value.name == source]
        image_input.name = name
        inputs.append(image_input)
        nodes += graph.node
        initializers += graph.initializer
        value_infos += graph.value_info
        output = prefix + encoder.output_name
        rank = _output_rank(graph, output)
        if rank == 4:
            _reduce("ReduceMean", output, f"{prefix}pooled4", [2, 3], opset, nodes, initializers)
            nodes.append(helper.make_node("Flatten", [f"{prefix}pooled4"], [f"{prefix}pooled"], axis=1))
            output = f"{prefix}pooled"
        _reduce("ReduceL2", output, f"{prefix}norm", [1], opset, nodes, initializers)
        initializers.append(numpy_helper.from_array(np.asarray(UNIT_EPSILON, dtype=np.float32), f"{prefix}epsilon"))
        nodes += [
            helper.make_node("Max", [f"{prefix}norm", f"{prefix}epsilon"], [f"{prefix}norm_safe"]),
            helper.make_node("Div", [output, f"{prefix}norm_safe"], [f"{prefix}unit"]),
        ]
        units.append(f"{prefix}unit")

    constants = {
        "head/mean": np.asarray(feature_mean, dtype=np.float32)[None, :],
        "head/std": np.asarray(feature_std, dtype=np.float32)[None, :],
        "head/weight_t": np.ascontiguousarray(weight.T),
        "head/bias": bias[None, :],
    }
    initializers += [numpy_helper.from_array(value, key) for key, value in constants.items()]
    nodes += [
        helper.make_node("Concat", units, ["head/features"], axis=1),
        helper.make_node("Sign", ["head/features"], ["head/sign"]),
        helper.make_node("Abs", ["head/features"], ["head/abs"]),
        helper.make_node("Sqrt", ["head/abs"], ["head/root"]),
        helper.make_node("Mul", ["head/sign", "head/root"], ["head/rooted"]),
        helper.make_node("Sub", ["head/rooted", "head/mean"], ["head/centred"]),
        helper.make_node("Div", ["head/centred", "head/std"], ["head/standard"]),
        helper.make_node("MatMul", ["head/standard", "head/weight_t"], ["head/product"]),
        helper.make_node("Add", ["head/product", "head/bias"], ["logits"]),
    ]
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weight.shape[0]])
    graph = helper.make_graph(nodes, "loupe_head", inputs, [logits], initializers, value_info=value_infos)
    head = helper.make_model(graph, opset_imports=list(models[0].opset_import), producer_name="loupe")
    head.ir_version = models[0].ir_version
    onnx.checker.check_model(head)
    path = Path(path)
    onnx.save(head, str(path))
    return [
        {"name": name, "size": encoder.size, "mean": list(encoder.mean), "std": list(encoder.std)}
        for name, encoder in zip(names, encoders, strict=True)
    ]


def _output_rank(graph, output: str) -> int:
    """How many axes the encoder's output has (2: features; 4: a feature map), from the graph's declaration."""
    for value in graph.output:
        if value.name == output:
            dims = value.type.tensor_type.shape.dim
            if dims:
                return len(dims)
    raise ValueError(f"the encoder graph declares no shape for its output {output!r}")
