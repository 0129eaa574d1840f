"""The hub's client sends large files in parts (/api/v1/uploads/): to the hub's signed addresses
on the embedded storage, straight to the bucket in object storage. The file made is the one
sent; a part sent wrong is refused naming it; sizes and quotas are checked before any part."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from hubclient import Client
from hubclient.errors import HubError
from jobs.demo import numbers_dataset, tiny_mlp_onnx
from jobs.models import Dataset, MLModel
from tests.s3 import Bucket

pytestmark = pytest.mark.django_db(transaction=True)


def _client(live_server: Any, user: Any) -> Client:
    token = Token.objects.get_or_create(user=user)[0].key
    return Client(url=live_server.url, token=token, part_threshold=1)  # everything in parts


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_model_and_a_dataset_go_up_in_parts_to_the_hub(live_server, alice, tmp_path, settings):
    settings.HUB_UPLOAD_PART_BYTES = 64 * 1024
    onnx = tmp_path / "wide.onnx"
    onnx.write_bytes(tiny_mlp_onnx(name="wide", seed=2, outputs=4000))
    assert onnx.stat().st_size > 3 * 64 * 1024
    data = tmp_path / "numbers.jsonl"
    data.write_bytes(numbers_dataset(0, 400))
    with _client(live_server, alice) as hub:
        model = hub.upload_model(onnx, name="wide one")
        dataset = hub.upload_dataset(data)
    stored = MLModel.objects.get(public_id=model.model_id)
    assert (stored.name, stored.sha256, stored.owner) == ("wide one", _sha(onnx), alice)
    assert Dataset.objects.get(public_id=dataset.dataset_id).num_records == 400
    # The same checks as a form upload: a file that is not a model is refused by name.
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model" * 10_000)
    with (
        _client(live_server, alice) as hub,
        pytest.raises(HubError, match=r"bad\.onnx is not a valid ONNX"),
    ):
        hub.upload_model(bad)
    assert MLModel.objects.count() == 1


def test_a_file_past_the_limit_is_refused_before_any_part(live_server, alice, tmp_path, settings):
    settings.HUB_MAX_UPLOAD_BYTES = 100_000
    onnx = tmp_path / "wide.onnx"
    onnx.write_bytes(tiny_mlp_onnx(name="wide", seed=2, outputs=4000))
    with (
        _client(live_server, alice) as hub,
        pytest.raises(HubError, match="the limit is 100000 bytes"),
    ):
        hub.upload_model(onnx)


def test_in_object_storage_the_parts_go_straight_to_the_bucket(
    live_server, alice, tmp_path, bucket: Bucket, settings
):
    onnx = tmp_path / "big.onnx"
    onnx.write_bytes(tiny_mlp_onnx(name="big", seed=3, outputs=90_000))
    assert onnx.stat().st_size > 5 * 1024 * 1024  # two parts of the bucket's least
    with _client(live_server, alice) as hub:
        model = hub.upload_model(onnx)
        fetched = hub.get_model(model.model_id).download(tmp_path / "back.onnx")
    stored = MLModel.objects.get(public_id=model.model_id)
    assert set(bucket.keys()) == {stored.file.name}
    assert not list(Path(settings.MEDIA_ROOT).rglob("part-*"))  # nothing came through the hub
    assert _sha(Path(fetched)) == _sha(onnx)
