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


def test_the_command_line_shows_numbers_as_people_read_them():
    from hubclient.cli import _emails, _shown

    assert _shown("percentage_done", 7 / 25 * 100) == "28.0%"
    assert _shown("train_loss", 0.43749999999) == "0.4375"
    assert _shown("elapsed_time", 65.4) == "1m 05s"
    assert _shown("elapsed_time", 3725) == "1h 02m 05s"
    assert _shown("elapsed_time", 12.345) == "12.3s"
    assert _emails(["a@x.org,b@x.org", " c@x.org ", "d@x.org,"]) == [
        "a@x.org",
        "b@x.org",
        "c@x.org",
        "d@x.org",
    ]


@pytest.mark.parametrize("command", [["jobs"], ["show", "J"], ["watch", "J"], ["cancel", "J"],
                                     ["share", "J"], ["doctor"], ["download", "J", "out"]])  # fmt: skip
def test_json_is_honoured_before_or_after_any_command(command):
    from hubclient.cli import parser

    assert parser().parse_args(["--json", *command]).json is True
    assert parser().parse_args([*command, "--json"]).json is True
    assert parser().parse_args(command).json is False
