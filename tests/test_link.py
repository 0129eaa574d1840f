"""Linking real ONNX models, checked with onnxruntime."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from jobs.demo import tiny_mlp_onnx
from jobs.engine.runners.onnx_link import LinkError, LinkInput, link_models, verify_linked
from tests.onnx_samples import conv_model, embedding_model


def _inputs(*models: onnx.ModelProto) -> list[LinkInput]:
    return [
        LinkInput(prefix=f"m{i}/", model=m, label=f"model {i}", info={"position": i})
        for i, m in enumerate(models)
    ]


def _save(tmp_path: Path, name: str, model: onnx.ModelProto) -> Path:
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def test_each_linked_graph_gives_its_source_models_outputs():
    shared = np.random.default_rng(9).standard_normal((8, 16)).astype(np.float32)
    sources = [
        onnx.load_from_string(tiny_mlp_onnx(name="a", seed=1, shared=shared)),
        onnx.load_from_string(tiny_mlp_onnx(name="b", seed=2, shared=shared)),
        conv_model(seed=3, opset=17),
    ]
    linked = link_models(_inputs(*sources)).model
    rng = np.random.default_rng(0)
    feeds = {
        "m0/x": rng.standard_normal((3, 8)).astype(np.float32),
        "m1/x": rng.standard_normal((5, 8)).astype(np.float32),
        "m2/signal": rng.standard_normal((2, 3, 16)).astype(np.float32),
    }
    outputs = _run(linked, feeds)
    assert set(outputs) == {"m0/y", "m1/y", "m2/out"}
    for i, source in enumerate(sources):
        own = {
            name.split("/", 1)[1]: value
            for name, value in feeds.items()
            if name.startswith(f"m{i}/")
        }
        for name, value in _run(source, own).items():
            np.testing.assert_array_equal(outputs[f"m{i}/{name}"], value)


def test_identical_weight_tensors_are_stored_once():
    shared = np.random.default_rng(9).standard_normal((8, 16)).astype(np.float32)
    a = onnx.load_from_string(tiny_mlp_onnx(name="a", seed=1, shared=shared))
    b = onnx.load_from_string(tiny_mlp_onnx(name="b", seed=2, shared=shared))
    result = link_models(_inputs(a, b))
    initializers = result.model.graph.initializer
    assert len(initializers) == 5  # w1 once, b1 and w2 of each model
    copies = [t for t in initializers if np.array_equal(numpy_helper.to_array(t), shared)]
    assert len(copies) == 1
    (entry,) = result.manifest["shared_tensors"]
    assert entry["used_as"] == ["m0/w1", "m1/w1"]
    assert entry["bytes"] == shared.nbytes == result.manifest["bytes_saved"]
    assert len(result.model.SerializeToString()) < len(a.SerializeToString()) + len(
        b.SerializeToString()
    )


def test_the_same_model_twice_is_linked_once_per_position():
    model = conv_model(seed=1, opset=17)
    result = link_models(_inputs(model, model))
    assert [m["prefix"] for m in result.manifest["models"]] == ["m0/", "m1/"]
    assert len(result.model.graph.initializer) == 1
    assert [o.name for o in result.model.graph.output] == ["m0/out", "m1/out"]


def test_an_older_opset_is_converted_to_the_newest_and_recorded(tmp_path):
    old, new = conv_model(seed=1, opset=13), embedding_model(seed=2, opset=17)
    result = link_models(_inputs(old, new))
    assert result.manifest["opsets"] == {"ai.onnx": 17}
    assert result.manifest["models"][0]["converted_from_opset"] == 13
    target = _save(tmp_path, "linked.onnx", result.model)
    sources = [
        ("m0/", _save(tmp_path, "old.onnx", old), "old"),
        ("m1/", _save(tmp_path, "new.onnx", new), "new"),
    ]
    assert verify_linked(target, sources) == 2


def test_verification_catches_a_graph_that_differs_from_its_source(tmp_path):
    source = conv_model(seed=1, opset=17)
    linked = link_models(_inputs(source)).model
    kernel = linked.graph.initializer[0]
    kernel.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(kernel) + 0.5, kernel.name))
    target = _save(tmp_path, "bad.onnx", linked)
    with pytest.raises(LinkError, match="Output m0/out of the linked model differs"):
        verify_linked(target, [("m0/", _save(tmp_path, "src.onnx", source), "src")])


def test_nothing_to_link_is_an_error():
    with pytest.raises(LinkError, match="Nothing to link"):
        link_models([])


def test_a_source_onnxruntime_cannot_load_fails_verification_as_the_users_in_words(tmp_path):
    """A file stored before uploads were checked with onnxruntime (an IR version it does not
    read): the job's failure says which input and why, with no server path."""
    from jobs.engine.runners.onnx_link import UnloadableModel

    good = tmp_path / "good.onnx"
    good.write_bytes(tiny_mlp_onnx(name="good", seed=1))
    too_new = onnx.load_from_string(tiny_mlp_onnx(name="new", seed=2))
    too_new.ir_version = onnx.IR_VERSION + 5
    stored = tmp_path / "new.onnx"
    onnx.save(too_new, str(stored))
    with pytest.raises(UnloadableModel) as caught:
        verify_linked(good, [("m0/", stored, "model m2 (new.onnx)")])
    message = str(caught.value)
    assert message.startswith("model m2 (new.onnx) cannot be loaded by onnxruntime: its IR version")
    assert str(tmp_path) not in message and "onnxruntime_src" not in message
