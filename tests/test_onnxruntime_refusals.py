"""ONNX Runtime's refusals to load or run a model, as messages tell them (reason_of): the node,
op or domain they name and what was wrong, without the error code, C++ source locations and
signatures, the check that failed, or server paths. Each from a real onnxruntime error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from jobs.domain.onnx_runtime import _refusal, reason_of


def one_node(op: str, opset: int = 17, elem: int = TensorProto.FLOAT, **kw: Any) -> bytes:
    x = helper.make_tensor_value_info("x", elem, [2, 2])
    y = helper.make_tensor_value_info("y", elem, [2, 2])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], name="act", **kw)], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model.SerializeToString()


def reshape_to_3_by_5() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])
    shape = numpy_helper.from_array(np.array([3, 5], np.int64), "shape")
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="squeeze_in")
    graph = helper.make_graph([node], "g", [x], [y], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def run_error(data: bytes, feeds: dict[str, np.ndarray]) -> str:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    with pytest.raises(Exception) as caught:  # noqa: PT011 onnxruntime's classes share no base
        session.run(None, feeds)
    return str(caught.value)


def test_a_node_that_fails_as_it_runs_is_named_with_onnxruntimes_words_alone():
    said = run_error(reshape_to_3_by_5(), {"x": np.zeros((1, 8), np.float32)})
    assert "onnxruntime_src" in said and "was false" in said  # what is left out
    assert reason_of(said) == (
        "node 'squeeze_in' (Reshape): The input tensor cannot be reshaped to the requested "
        "shape. Input shape:{1,8}, requested shape:{3,5}."
    )


def test_an_input_of_the_wrong_type_is_told_whole():
    said = run_error(reshape_to_3_by_5(), {"x": np.zeros((1, 8), np.float64)})
    assert reason_of(said) == (
        "Unexpected input data type. Actual: (tensor(double)) , expected: (tensor(float))."
    )


@pytest.mark.parametrize(
    ("data", "told"),
    [
        (one_node("Mish"),
         "node 'act' is op Mish, which ai.onnx has from opset 18 on; the model imports opset 17."),
        (one_node("Frobnicate"), "node 'act' is op Frobnicate, which ai.onnx does not have in any "
                                 "opset."),
        (one_node("Upsample", opset=13),
         "node 'act' (Upsample): Op registered for Upsample is deprecated in domain_version of 13."),
        (one_node("Frobnicate", domain="com.example"),
         "node 'act' is op Frobnicate of domain com.example, which the model does not import (its "
         "opset_import does not list it) and ONNX Runtime does not know: its ops are custom ops"),
        (one_node("Identity", opset=21, elem=TensorProto.UINT4),
         "ONNX Runtime has no implementation of op Identity as opset 21 defines it for the types "
         "node 'act' gives it."),
        (one_node("Relu", foo=1), "node 'act' (Relu): Unrecognized attribute: foo for operator Relu."),
    ],
    ids=["op of a later opset", "no such op", "op removed", "domain not imported", "no kernel",
         "unknown attribute"],
)  # fmt: skip
def test_a_model_onnxruntime_will_not_load_is_told_by_the_node_op_or_domain_at_fault(data, told):
    said = _refusal(data)
    assert said is not None
    assert reason_of(said).startswith(told), reason_of(said)


def test_a_refusal_of_a_file_names_no_server_path(tmp_path: Path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])
    weights = numpy_helper.from_array(np.zeros((3, 5), np.float32), "w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y], [weights]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 9
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    said = _refusal(str(path))
    assert said is not None and str(tmp_path) in said
    assert reason_of(said) == (
        "Node (mm) Op (MatMul) [ShapeInferenceError] Incompatible dimensions for matrix "
        "multiplication."
    )
