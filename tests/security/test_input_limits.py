"""Bad or hostile input gets a 400 naming the problem, before the hub does work in proportion to
it: JSON bodies and socket messages past a limit, dataset lines, link submissions with too many
ids, ONNX models that declare huge inputs, time limits past the operator's."""

from __future__ import annotations

import io

import onnx
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from onnx import TensorProto, helper

from hubsite.asgi import application
from jobs.domain.files import check_jsonl_dataset
from jobs.services.assets import dataset_upload, model_upload
from tests import factories
from tests.security.access import api
from tests.sockets import next_message, stays_quiet

HOSTILE_JSON = {
    "1,000 levels deep": ("[" * 1000 + "]" * 1000, "nested more than 32 levels deep"),
    "100,000 levels deep": ("[" * 100_000 + "]" * 100_000, "nested more than 32 levels deep"),
    "a 100,000-digit number": ('{"name": ' + "9" * 100_000 + "}", "100000 characters long"),
    "a lone surrogate": ('{"name": "\\ud800"}', "lone surrogate (\\ud800)"),
    "a NUL character": ('{"name": "a\\u0000b"}', "NUL character"),
    "NaN": ('{"name": NaN}', "NaN is not a JSON value"),
    "bytes that are not UTF-8": (b'{"name": "\xff"}', "not UTF-8"),
    "a JSON bomb": ("[" + ",".join(["[]"] * 600_000) + "]", "larger than 1048576 bytes"),
}
JSON_ROUTES = [
    "/api/v1/jobs/link/",
    "/api/v1/jobs/customization/",
    "/api/v1/jobs/{job}/sharing/",
    "/api/v1/jobs/{job}/",  # rename (PATCH)
]


@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_hostile_json_bodies_get_a_400_naming_the_problem(alice, route, case):
    body, named = HOSTILE_JSON[case]
    job = factories.unqueued_job(alice)
    client = api(alice)
    send = client.patch if route.endswith("/{job}/") else client.post
    response = send(route.format(job=job.public_id), data=body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert named in response.json()["message"]


@pytest.mark.parametrize("case", [c for c in HOSTILE_JSON if c != "a JSON bomb"])
def test_hostile_dataset_lines_are_refused_naming_the_line(alice, case):
    line, named = HOSTILE_JSON[case]
    line = line.encode() if isinstance(line, str) else line
    data = b'{"prompt": "a", "completion": "b"}\n' + line + b"\n"
    with pytest.raises(ValidationError) as refused:
        dataset_upload(owner=alice, file=ContentFile(data, "bad.jsonl"))
    message = refused.value.message_dict["file"][0]
    assert "bad.jsonl, line 2" in message
    assert named in message


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.bytes_read += len(line)
        return line


def test_a_dataset_line_past_the_limit_is_refused_after_reading_only_the_limit(settings):
    settings.HUB_MAX_DATASET_LINE_BYTES = 64 * 1024
    data = b'{"prompt": "' + b"x" * (20 * 1024 * 1024) + b'", "completion": "y"}\n'
    file = CountingFile(data)
    with pytest.raises(ValidationError) as refused:
        check_jsonl_dataset(file, "long.jsonl")
    assert "long.jsonl, line 1: longer than 65536 bytes" in refused.value.message_dict["file"][0]
    assert file.bytes_read <= 64 * 1024 + 1


def test_a_link_submission_with_50000_ids_is_refused_before_any_is_looked_up(
    alice, django_assert_max_num_queries
):
    client = api(alice)
    ids = [f"m{i:08d}" for i in range(50_000)]
    with django_assert_max_num_queries(6):  # authentication and session only
        response = client.post("/api/v1/jobs/link/", {"models": ids}, format="json")
    assert response.status_code == 400
    assert "no more than 32" in response.json()["message"]


def test_the_link_form_counts_models_before_checking_them(alice, client):
    client.force_login(alice)
    response = client.post("/jobs/new/link/", {"models": [f"m{i}" for i in range(500)]})
    assert response.status_code == 200
    assert b"Choose at most 32." in response.content


def _model_declaring(shape: list[int | str]) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_an_onnx_model_declaring_a_huge_input_is_refused_at_upload(alice):
    data = _model_declaring([100_000, 100_000])
    assert len(data) < 120  # a few bytes that would take 40 GB to verify
    with pytest.raises(ValidationError) as refused:
        model_upload(owner=alice, file=SimpleUploadedFile("bomb.onnx", data))
    message = refused.value.message_dict["file"][0]
    assert "input x declares shape [100000, 100000]" in message
    assert "HUB_MAX_VERIFY_INPUT_BYTES" in message


def test_an_onnx_model_with_symbolic_dimensions_is_accepted(alice):
    data = _model_declaring(["batch", 8])
    model = model_upload(owner=alice, file=SimpleUploadedFile("ok.onnx", data))
    assert onnx.load_from_string(data).graph.input[0].name in model.metadata["inputs"]


def test_a_time_limit_can_shorten_the_operator_s_but_not_extend_it(alice, settings):
    settings.HUB_JOB_TIME_LIMIT = 3600
    dataset = factories.dataset(alice)
    client = api(alice)
    submit = {"dataset": dataset.public_id, "time_limit": 7200}
    response = client.post("/api/v1/jobs/customization/", submit, format="json")
    assert response.status_code == 400
    assert "between 10 and 3600 seconds" in response.json()["message"]
    response = client.post(
        "/api/v1/jobs/customization/", {**submit, "time_limit": 600}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["time_limit"] == 600


def test_a_job_s_own_limit_never_outlasts_a_lowered_operator_limit(alice, settings):
    job = factories.unqueued_job(alice)
    job.time_limit = 7200
    settings.HUB_JOB_TIME_LIMIT = 600
    assert job.time_limit_seconds == 600


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_hostile_socket_message_gets_an_error_and_changes_nothing(alice):
    job = await sync_to_async(factories.unqueued_job)(alice)
    token = await sync_to_async(
        lambda: (
            api(alice)
            and __import__("rest_framework.authtoken.models", fromlist=["Token"])
            .Token.objects.get(user=alice)
            .key
        )
    )()
    headers = [(b"origin", b"http://127.0.0.1:8000"), (b"authorization", f"Token {token}".encode())]
    ws = WebsocketCommunicator(application, f"/ws/jobs/{job.public_id}/", headers=headers)
    assert (await ws.connect())[0]
    assert (await next_message(ws))["type"] == "snapshot"
    await ws.send_to(text_data="[" * 1000 + "]" * 1000)
    error = await next_message(ws)
    assert error["type"] == "error"
    assert "nested more than 32 levels deep" in error["message"]
    assert await stays_quiet(ws, 0.5)  # and the socket stays open
    await ws.disconnect()


def _expanding_model() -> bytes:
    """Some 80 bytes whose one output is 30,000 × 30,000 floats (3.6 GB)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", "columns"])
    shape = helper.make_tensor("s", TensorProto.INT64, [2], [30_000, 30_000])
    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "s"], ["y"])], "g", [x], [y], [shape]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.django_db(transaction=True)
def test_verifying_a_model_that_computes_a_huge_tensor_fails_within_the_memory_cap(alice):
    from jobs.domain.state import job_transition
    from jobs.domain.status import FailureType, JobStatus
    from jobs.engine.execution import execute
    from jobs.models import Job
    from jobs.services.jobs import job_submit_link

    bomb = model_upload(owner=alice, file=SimpleUploadedFile("expand.onnx", _expanding_model()))
    job = job_submit_link(owner=alice, models=[bomb])
    if Job.objects.get(pk=job.pk).status == JobStatus.CREATED:
        job_transition(job=job, to=JobStatus.PENDING, message="Queued.")
    execute(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.failure_type == FailureType.INVALID_MODEL
    assert "HUB_MAX_VERIFY_MEMORY_BYTES" in job.failure_message
