"""What ONNX Runtime loads, checked when an ONNX model is uploaded rather than when a job runs
it (compile, profile, inference and link jobs all run on ONNX Runtime); and ONNX Runtime's
refusals, to load or to run a model, in words a person reads.

The ``onnx`` package writes the newest IR version and opset by default (IR 13, opset 25 with
onnx 1.20), which onnxruntime may not load yet (1.23: IR 11, opset 23). A file onnxruntime
refuses would only fail its jobs later, so it is refused at upload, naming what was wrong (its
IR version or an opset too new, an op or a domain ONNX Runtime does not have) and, when converting
the file would fix it, how. When only the IR version is too new, the file is lowered to the
newest IR version onnxruntime takes, and kept only if onnxruntime then loads it: the IR version
stamps the file format, and a graph that uses nothing newer is the same graph under the older
stamp.
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
# A node the graph check refused: its name, op, domain, then the error after the signature of
# its inputs and outputs ("In Node, ("n", Relu, "", -1) : ("x": tensor(float),) -> … , Error …").
IN_NODE = re.compile(r'In Node, \("([^"]*)", ([^,]+), "([^"]*)", -?\d+\) : .*?, Error (.*)', re.S)
NO_OP = re.compile(r"No Op registered for (\S+) with domain_version of (\d+)")
NO_IMPORT = re.compile(r"No opset import for domain '([^']*)'")
NOT_REGISTERED = re.compile(r"(?:([\w.]+):)?(\w+)\(-?\d+\) is not a registered function/op")
NO_KERNEL = re.compile(
    r"Could not find an implementation for (\S+?)\((\d+)\) node with name '([^']*)'"
)
RUNNING = re.compile(r"while running (\S+) node\. Name:'([^']*)' Status Message: (.*)", re.S)
# The wrapping of every onnxruntime error, the model's path when it was loaded from a file, the
# C++ source location of the check that failed and the check itself ("a == b was false.").
ORT_PREFIX = re.compile(r"^\s*\[ONNXRuntimeError\] : \d+ : \w+ : (?:Fatal error: )?")
LOADING = re.compile(r"^Load model from .*? failed:\s*")
SOURCE_AT = re.compile(r"\S+\.(?:cc|cpp|cu|h|hpp|cuh):\d+ ")
ENFORCED = re.compile(r"^.{1,300}? was false\. (?=\S)")
ONNX_DOMAIN = ("", "ai.onnx")
CUSTOM_OPS = (
    "its ops are custom ops, which run only where the library that implements them is "
    "registered, and this hub registers none. Export the model with ONNX's standard ops."
)
REASON_LIMIT = 300  # characters of onnxruntime's own words in a message
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
    ``workdir``: a copy with its IR version lowered, which it loads. ValidationError otherwise,
    naming the file's versions and what onnxruntime refused (an op, a domain, a version), and how
    to convert the file when converting it would help."""
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
    said = (
        f"{label} cannot be loaded by ONNX Runtime {supported.version}, which compile, profile, "
        f"inference and link jobs run on (IR version {model.ir_version}, opsets {opsets}): "
        f"{reason_of(reason)}"
    )
    advice = _advice(_cause(reason), model, supported)
    return f"{said} {advice}" if advice else said


def _advice(cause: Cause, model: Any, supported: Runtime) -> str:
    """How to make the model load, when converting or exporting it again would: an IR version or
    opset outside what ONNX Runtime supports. An op or a domain ONNX Runtime does not have is
    not fixed by any opset: none then. (An op the imported opset does not have yet is refused by
    onnx's checker before ONNX Runtime sees it.)"""
    convert = (
        f"This hub takes ONNX IR versions up to {supported.max_ir} and ai.onnx opsets "
        f"{OLDEST_OPSET} to {supported.max_opset}. Convert it with onnx: m = onnx.version_converter."
        f"convert_version(onnx.load(path), {supported.max_opset}); m.ir_version = "
        f"{supported.max_ir}; onnx.save(m, path) — or export it again with opset_version="
        f"{supported.max_opset}."
    )
    imported = _onnx_opset(model)
    if cause.kind == "ir" or (cause.kind == "opset" and cause.domain in ONNX_DOMAIN):
        return convert
    if cause.kind == "opset":
        return f"Export it again with {cause.domain} opset {cause.since} or older."
    if cause.kind == "no_kernel" and imported is not None and imported < OLDEST_OPSET:
        return convert
    return ""


def _onnx_opset(model: Any) -> int | None:
    return next((i.version for i in model.opset_import if i.domain in ONNX_DOMAIN), None)


@dataclass(frozen=True)
class Cause:
    """What onnxruntime's refusal says was wrong: ``said``, a sentence; ``kind``, what it is
    ("ir", "opset": a domain's opset too new, "op_opset": an op newer than the imported opset,
    "no_kernel", "domain": a domain ONNX Runtime or the model lacks, "op", or "" for anything
    else), which tells the advice; the domain it names, and for "opset" the newest it takes."""

    said: str
    kind: str = ""
    domain: str = ""
    since: int = 0


def reason_of(text: str) -> str:
    """onnxruntime's refusal (to load or to run a model) in a sentence, naming the node, op or
    domain it names, without its source location, C++ signatures or server paths."""
    return _cause(text).said


def _cause(text: str) -> Cause:
    if found := IR_TOO_NEW.search(text):
        return Cause(
            f"its IR version {found[1]} is newer than the {found[2]} ONNX Runtime reads.", "ir"
        )
    if found := OPSET_TOO_NEW.search(text):
        return Cause(
            f"its {found[2]} opset {found[1]} is newer than the {found[3]} ONNX Runtime supports.",
            "opset",
            found[2],
            int(found[3]),
        )
    if found := NOT_REGISTERED.search(text):
        return _not_registered(found[1] or "", found[2])
    if found := NO_KERNEL.search(text):
        op, version, node = found.groups()
        return Cause(
            f"ONNX Runtime has no implementation of op {op} as opset {version} defines it for "
            f"the types node {node!r} gives it.",
            "no_kernel",
        )
    if found := RUNNING.search(text):
        op, node, said = found.groups()
        return Cause(f"node {node!r} ({op}): {_plain(said)}")
    if found := IN_NODE.search(text):
        return _in_node(*found.groups())
    return Cause(_plain(text))


def _in_node(node: str, op: str, domain: str, error: str) -> Cause:
    """The graph check's refusal of one node: an op its opset does not have, a domain the model
    does not import, or anything else, in the check's words."""
    where = f"node {node!r} is op {op}"
    if found := NO_OP.search(error):
        return _no_op(where, op, domain, int(found[2]))
    if NO_IMPORT.search(error):
        said = f"{where} of domain {domain}, which the model does not import (its opset_import "
        if domain in _runtime_domains():
            return Cause(f"{said}does not list it).", "domain", domain)
        return Cause(
            f"{said}does not list it) and ONNX Runtime does not know: {CUSTOM_OPS}",
            "domain",
            domain,
        )
    return Cause(f"node {node!r} ({op}): {_plain(error)}")


def _no_op(where: str, op: str, domain: str, version: int) -> Cause:
    """An op the opset the model imports for its domain does not have: one that came in a later
    opset, or one the domain never had. (One removed before it, onnxruntime names so itself.)"""
    import onnx

    name = domain or "ai.onnx"
    every = onnx.defs.get_all_schemas_with_history()
    if domain not in ONNX_DOMAIN and domain not in {s.domain for s in every}:
        return Cause(f"{where}, which {name} opset {version} does not have.", "op", domain)
    domains = ONNX_DOMAIN if domain in ONNX_DOMAIN else (domain,)
    schemas = [s for s in every if s.name == op and s.domain in domains]
    if not schemas:
        return Cause(f"{where}, which {name} does not have in any opset.", "op", domain)
    first = min(s.since_version for s in schemas)
    if first > version:
        return Cause(
            f"{where}, which {name} has from opset {first} on; the model imports opset {version}.",
            "op_opset",
            domain,
        )
    return Cause(f"{where}, which {name} opset {version} does not have.", "op", domain)


def _not_registered(domain: str, op: str) -> Cause:
    if domain in ONNX_DOMAIN:
        return Cause(f"ONNX Runtime has no op {op} in ai.onnx.", "op", domain)
    if domain in _runtime_domains():
        return Cause(f"ONNX Runtime's domain {domain} has no op {op}.", "op", domain)
    return Cause(
        f"op {op} is of domain {domain}, which ONNX Runtime does not know: {CUSTOM_OPS}",
        "domain",
        domain,
    )


@functools.cache
def _runtime_domains() -> frozenset[str]:
    """The op domains this onnxruntime has kernels for ("", ai.onnx.ml, com.microsoft, …)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    return frozenset(schema.domain for schema in ort_state.get_all_operator_schema())


def _plain(text: str) -> str:
    """onnxruntime's words without their wrapping: the error code, the model's path, the C++
    source location and the signature of the function that failed, the check that failed; on
    one line, without server paths, at most REASON_LIMIT characters, ending with a period."""
    said = LOADING.sub("", ORT_PREFIX.sub("", text.strip()))
    if found := SOURCE_AT.search(said):
        said = said[: found.start()] + _after_signature(said[found.end() :])
    said = ENFORCED.sub("", " ".join(said.split()))
    said = scrub_paths(said).rstrip(". ")
    if len(said) >= REASON_LIMIT:
        said = said[: REASON_LIMIT - 1] + "…"
    return (said or "no reason given") + "."


def _after_signature(text: str) -> str:
    """What follows the C++ function signature ``text`` starts with (``void ns::f(const
    std::map<std::string, int>&, bool) const``: onnxruntime writes one after each source
    location), its parentheses matched; ``text`` when they are not."""
    start = text.find("(")
    if start < 0:
        return text
    depth = 0
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[index + 1 :].lstrip().removeprefix("const ").lstrip()
    return text
