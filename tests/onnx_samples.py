"""Small real ONNX models for link tests, built with onnx.helper."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_model(*, seed: int, opset: int, shared: np.ndarray | None = None) -> onnx.ModelProto:
    """A 1-D convolution followed by Sigmoid; ``shared`` is its kernel when given."""
    rng = np.random.default_rng(seed)
    kernel = shared if shared is not None else rng.standard_normal((4, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["signal", "kernel"], ["conv"], pads=[1, 1]),
            helper.make_node("Sigmoid", ["conv"], ["out"]),
        ],
        "conv",
        [helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["batch", 3, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4, 16])],
        initializer=[numpy_helper.from_array(kernel, "kernel")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def embedding_model(*, seed: int, opset: int = 17) -> onnx.ModelProto:
    """Token ids → embedded vectors: an integer input that must index within range."""
    table = np.random.default_rng(seed).standard_normal((10, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["vectors"])],
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "length"])],
        [helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", "length", 4])],
        initializer=[numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    return model
