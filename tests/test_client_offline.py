"""The client's own decisions, made before it talks to any hub."""

from pathlib import Path

import pytest

from hubclient import Client, HubError
from hubclient.client import _is_path
from hubclient.jobs import JobStatus


def test_a_client_without_a_token_says_where_to_find_one(monkeypatch):
    monkeypatch.delenv("HUB_API_TOKEN", raising=False)
    with pytest.raises(HubError, match="set HUB_API_TOKEN"):
        Client("http://127.0.0.1:1")


def test_paths_are_told_from_ids(tmp_path):
    existing = tmp_path / "model"
    existing.write_bytes(b"x")
    assert _is_path(existing) and _is_path(str(existing))
    assert _is_path("missing/train.jsonl") and _is_path(
        "train.jsonl"
    )  # uploaded, so "no file" if absent
    assert not _is_path("mabc23def") and not _is_path("tiny-char-lm")
    assert _is_path(Path("x"))


def test_status_objects_say_finished_success_and_failure():
    assert (
        JobStatus("ready").finished,
        JobStatus("ready").success,
        JobStatus("ready").failure,
    ) == (True, True, False)
    failed = JobStatus("failed", "Time limit reached.", "time_limit")
    assert (failed.finished, failed.success, failed.failure, str(failed)) == (
        True,
        False,
        True,
        "failed: Time limit reached.",
    )
    assert not JobStatus("running").finished
