"""What onnxruntime loads, checked when an ONNX model is uploaded rather than when a link job
runs it.

The ``onnx`` package writes the newest IR version and opset by default (IR 13, opset 25 with
onnx 1.20), which onnxruntime may not load yet (1.23: IR 11, opset 23). A file onnxruntime
refuses would only fail its link job later, so it is refused at upload, naming its IR version
and opsets, what this hub takes, and how to convert it. When only the IR version is too new,
the file is lowered to the newest IR version onnxruntime takes, and kept only if onnxruntime then
loads it: the IR version stamps the file format, and a graph that uses nothing newer is the same
graph under the older stamp.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError

from jobs.domain.redact import scrub_paths

IR_TOO_NEW = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")
OPSET_TOO_NEW = re.compile(
    r"Opset (\d+) is under development.*official support for domain (\S+) is till opset (\d+)",
    re.DOTALL,
)
OLDEST_OPSET = 7  # the oldest ai.onnx opset onnxruntime runs


@dataclass(frozen=True)
class Runtime:
    version: str
    max_ir: int
    max_opset: int


def _refusal(source: str | bytes) -> str | None:
    """onnxruntime's reason for not loading a model (a path or its bytes), or None."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # errors only: a refusal is reported to the uploader
    try:
        ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's Fail, InvalidGraph, … share no useful base
        return str(error)
    return None


@functools.cache
def runtime() -> Runtime:
    """The newest IR version and ai.onnx opset this environment's onnxruntime loads, found by
    trying a one-node model (the versions are not published by onnxruntime's API)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])

    def loads(ir: int, opset: int) -> bool:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = ir
        return _refusal(model.SerializeToString()) is None

    max_ir = next(ir for ir in range(onnx.IR_VERSION, 2, -1) if loads(ir, OLDEST_OPSET))
    newest = onnx.defs.onnx_opset_version()
    max_opset = next(v for v in range(newest, OLDEST_OPSET - 1, -1) if loads(max_ir, v))
    return Runtime(ort.__version__, max_ir, max_opset)


def loadable(path: str, label: str, workdir: Path) -> Path | None:
    """Check that onnxruntime loads the model at ``path``. None: it does, as it is. A path in
    ``workdir``: a copy with its IR version lowered, which it loads. ValidationError naming the
    file's versions, the supported ones and how to convert, otherwise."""
    import onnx

    reason = _refusal(path)
    if reason is None:
        return None
    model = onnx.load(path, load_external_data=False)
    too_new = IR_TOO_NEW.search(reason)
    if too_new:
        model.ir_version = int(too_new.group(2))
        lowered = workdir / "lowered.onnx"
        onnx.save(model, str(lowered))
        reason = _refusal(str(lowered)) or ""
        if not reason:
            return lowered
        model.ir_version = int(too_new.group(1))  # as uploaded, for the message
    raise ValidationError({"file": _explain(label, model, reason)})


def _explain(label: str, model: Any, reason: str) -> str:
    supported = runtime()
    opsets = (
        ", ".join(f"{imp.domain or 'ai.onnx'} {imp.version}" for imp in model.opset_import)
        or "none"
    )
    return (
        f"{label} cannot be loaded by onnxruntime {supported.version}, which link jobs run on "
        f"(IR version {model.ir_version}, opsets {opsets}): {reason_of(reason)} This hub takes ONNX IR "
        f"versions up to {supported.max_ir} and ai.onnx opsets {OLDEST_OPSET} to "
        f"{supported.max_opset}. Convert it with onnx: m = onnx.version_converter."
        f"convert_version(onnx.load(path), {supported.max_opset}); m.ir_version = "
        f"{supported.max_ir}; onnx.save(m, path) — or export it again with opset_version="
        f"{supported.max_opset}."
    )


def reason_of(text: str) -> str:
    """onnxruntime's refusal in a sentence, without its source location and C++ signatures."""
    if found := IR_TOO_NEW.search(text):
        return f"its IR version {found[1]} is newer than the {found[2]} onnxruntime reads."
    if found := OPSET_TOO_NEW.search(text):
        return (
            f"its opset {found[1]} is newer than the {found[3]} onnxruntime supports for "
            f"{found[2]}."
        )
    said = text.strip().rsplit(") ", 1)[-1] if ") " in text else text.strip()
    return scrub_paths(said)[-300:].rstrip(".") + "."
