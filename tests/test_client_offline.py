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


def _model_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "weights.safetensors").write_bytes(b"w" * 10)
    return folder


def test_uploading_a_folder_refuses_a_link_out_of_it_naming_the_link(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the server's password")
    folder = _model_folder(tmp_path)
    (folder / "tokenizer.json").symlink_to(secret)
    client = Client("http://127.0.0.1:1", token="unused")  # refused before any request
    with pytest.raises(HubError) as refused:
        client.upload_model(folder)
    assert "tokenizer.json" in refused.value.message
    assert "outside" in refused.value.message
    assert "password" not in refused.value.message


def test_a_folder_is_packed_with_links_inside_it_as_the_files_they_name(tmp_path):
    from hubclient.client import folder_members

    folder = _model_folder(tmp_path)
    (folder / "model.safetensors").symlink_to(folder / "sub" / "weights.safetensors")
    (folder / "linked").symlink_to(folder / "sub", target_is_directory=True)
    members = folder_members(folder)
    assert members == {
        "config.json": folder / "config.json",
        "model.safetensors": (folder / "sub" / "weights.safetensors").resolve(),
        "sub/weights.safetensors": folder / "sub" / "weights.safetensors",
    }


def test_a_hugging_face_cache_snapshot_is_packed_from_its_blobs(tmp_path):
    from hubclient.client import folder_members

    repo = tmp_path / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc123").write_text("{}")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to("../../blobs/abc123")
    assert folder_members(snapshot) == {"config.json": (repo / "blobs" / "abc123").resolve()}
    (snapshot / "vocab.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text("{}")
    with pytest.raises(HubError, match=r"vocab\.json"):
        folder_members(snapshot)


def test_a_link_to_a_folder_outside_is_refused_too(tmp_path):
    from hubclient.client import folder_members

    folder = _model_folder(tmp_path)
    (tmp_path / "home").mkdir()
    (folder / "extras").symlink_to(tmp_path / "home", target_is_directory=True)
    with pytest.raises(HubError, match="model/extras is a link to something outside"):
        folder_members(folder)


class _FinishedJob:
    """A job as the hub would stream it: one progress event, then ready."""

    job_id = "mabc12345"
    data = {"status": "running"}

    def events(self, stop_when_finished: bool = True):
        yield {
            "event": "progress",
            "data": {
                "epochs_completed": 3,
                "steps_completed": 120,
                "total_steps": 480,
                "steps_per_epoch": 40,
                "train_loss": 0.4375,
                "val_loss": 0.51234,
            },
        }

    def get_status(self) -> JobStatus:
        return JobStatus("failed", "Time limit reached.", "time_limit")


def test_watch_in_80_columns_keeps_a_wide_bar_and_every_figure_whole(monkeypatch):
    import io
    import re

    from rich.console import Console

    from hubclient import cli

    written = io.StringIO()
    screen = Console(width=80, file=written, color_system=None)
    monkeypatch.setattr(cli, "console", screen)
    assert cli._watch(_FinishedJob(), as_json=False) == 1  # type: ignore[arg-type]
    shown = written.getvalue()
    # Without colour the bar's unfilled part is blank: the bar is what lies between the status
    # and the percentage (with one column of padding).
    bar = re.search(r"^failed ([━╸╺ ]+) 25\.0%", shown, re.MULTILINE)
    assert bar is not None and len(bar.group(1)) >= 20, shown
    assert re.search(r"(-:--:--|\d+:\d\d:\d\d)$", shown, re.MULTILINE), (
        shown
    )  # the time left, whole
    for figure in ("25.0%", "epoch 3/12", "step 120/480", "train_loss 0.4375", "val_loss 0.5123"):
        assert figure in shown, shown
    assert all(len(line) <= 80 for line in shown.splitlines())
