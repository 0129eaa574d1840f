"""Small real ONNX models for link tests, built with onnx.helper, and real exports of
torch.onnx.export (whose weights lie in a data file beside the model)."""

from __future__ import annotations

import functools
import tempfile
import zipfile
from pathlib import Path

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


@functools.cache
def _torch_mlp_files(hidden: int) -> tuple[bytes, bytes]:
    """A real torch.onnx.export of a small MLP; the pinned torch writes its weights of 1 KiB
    and more to ``mlp.onnx.data`` beside ``mlp.onnx``. Exported once per test process (it takes
    seconds)."""
    import torch

    torch.manual_seed(hidden)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(16, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 4)
    ).eval()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "mlp.onnx"
        torch.onnx.export(
            mlp,
            (torch.randn(2, 16),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
        data = path.with_name("mlp.onnx.data")
        return path.read_bytes(), data.read_bytes()


def torch_mlp_export(folder: Path, hidden: int = 32) -> Path:
    """``folder``/mlp.onnx and its data file mlp.onnx.data, as torch.onnx.export writes them."""
    model, data = _torch_mlp_files(hidden)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mlp.onnx").write_bytes(model)
    (folder / "mlp.onnx.data").write_bytes(data)
    return folder / "mlp.onnx"


def zipped(folder: Path, target: Path, prefix: str = "") -> Path:
    """The files of ``folder`` in a zip (under ``prefix``)."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, prefix + path.name)
    return target
