"""Seed 000's own client (qai-hub 0.56.0, unmodified) against a hub whose files are in object
storage: a model's parts and a dataset's form go straight to the bucket through its own presigned
addresses (never through the hub), the bucket checks the parts' ETags as it joins them, and
downloads come from the bucket by redirect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qai_hub
import requests

from aihub.models import Transfer
from jobs.demo import tiny_mlp_onnx
from jobs.models import Dataset, MLModel
from tests.s3 import Bucket
from tests.test_aihub_client import client_of, sha256_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hub(live_server: Any, alice: Any, bucket: Bucket) -> Any:
    return client_of(live_server, alice)


def test_a_models_parts_go_straight_to_the_bucket_and_it_comes_back_from_there(
    hub, bucket: Bucket, tmp_path: Path, settings
):
    big = tmp_path / "wide.onnx"
    big.write_bytes(tiny_mlp_onnx(name="wide", seed=4, outputs=90_000))
    settings.HUB_UPLOAD_PART_BYTES = 64 * 1024  # raised to the bucket's least, 5 MiB
    assert big.stat().st_size > 5 * 1024 * 1024
    model = hub.upload_model(str(big))
    transfer = Transfer.objects.get(made=model.model_id)
    assert transfer.part_size == 5 * 1024 * 1024 and transfer.size > transfer.part_size
    stored = MLModel.objects.get(public_id=model.model_id)
    assert stored.sha256 == sha256_of(big)
    assert set(bucket.keys()) == {stored.file.name}  # the staged parts are gone
    assert not list(Path(settings.MEDIA_ROOT).rglob("part-*"))  # no part came through the hub
    fetched = hub.get_model(model.model_id).download(str(tmp_path / "back.onnx"))
    assert sha256_of(Path(fetched)) == sha256_of(big)


def test_the_bucket_refuses_to_join_parts_whose_etags_are_wrong(hub, bucket: Bucket):
    from qai_hub import public_rest_api as api

    data = tiny_mlp_onnx(name="w", seed=5)
    created = api._create_model(
        hub.config,
        qai_hub.public_api_pb2.Model(
            name="w.onnx", model_type=qai_hub.public_api_pb2.MODEL_TYPE_ONNX
        ),
    )
    answer = api._get_model_upload_response(hub.config, created.id, len(data), True)
    (url,) = answer.multipart_url.urls
    assert url.startswith(bucket.gate.url + "/")  # the bucket's own address
    sent = requests.put(url, data=data, timeout=30)
    assert sent.status_code == 200
    with pytest.raises(api.APIException, match="could not be joined"):
        api._complete_model_multipart_upload(
            hub.config, created.id, answer.multipart_url.upload_id, ['"' + "0" * 32 + '"']
        )
    assert not MLModel.objects.exists()


def test_a_dataset_goes_to_the_bucket_by_its_presigned_form_and_comes_back(hub, bucket: Bucket):
    rng = np.random.default_rng(1)
    entries = {"x": [rng.random((1, 8), dtype=np.float32) for _ in range(3)]}
    dataset = hub.upload_dataset(entries, name="three")
    stored = Dataset.objects.get(public_id=dataset.dataset_id)
    assert stored.num_records == 3
    assert set(bucket.keys()) == {stored.file.name}
    fetched = hub.get_dataset(dataset.dataset_id).download()
    np.testing.assert_array_equal(fetched["x"][2], entries["x"][2])
