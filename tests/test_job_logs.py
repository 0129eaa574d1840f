"""Every job has a log: what its runner did, the warnings of the libraries it ran, and for a
failure a summary of where, without server paths. Written through the progress reporter, sent
to open pages as numbered lines, read back through the API (owner, reader, stranger)."""

import logging
import re
import warnings

import pytest
from django.conf import settings

from jobs.domain.events import EventType, events_after
from jobs.domain.joblog import MAX_LINE_CHARS, append_lines
from jobs.domain.status import FailureType, JobStatus
from jobs.engine.reporter import Reporter
from jobs.engine.runners.link import LinkRunner
from jobs.models import Job, JobLogLine
from sharing.services import sharing_modify
from tests import factories

api = factories.api


_run = factories.run_here


def texts(job: Job) -> list[str]:
    return list(job.log_lines.order_by("number").values_list("text", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_link_job_logs_what_it_did_from_start_to_ready(alice):
    job = _run(factories.link_job(alice, models=2))
    assert job.status == JobStatus.READY, job.failure_message
    lines = texts(job)
    assert any(line.startswith("[running]") for line in lines)
    assert any("m0" in line for line in lines)  # the runner's own account of its inputs
    assert lines[-1].startswith("[ready]")
    numbers = list(job.log_lines.order_by("number").values_list("number", flat=True))
    assert numbers == list(range(1, len(numbers) + 1))
    # Sent live as numbered lines, and replayed the same to a page that missed them.
    replayed = [m for m in events_after(job, 0) or [] if m["event"] == EventType.LINES]
    assert [line["n"] for m in replayed for line in m["data"]["lines"]] == numbers


@pytest.mark.django_db(transaction=True)
def test_a_failure_inside_the_hub_is_logged_with_where_but_no_server_path(alice, monkeypatch):
    secret = f"{settings.MEDIA_ROOT}/models/m-secret/x.onnx"

    def broken(self, ctx):
        warnings.warn("this option is deprecated", FutureWarning, stacklevel=1)
        logging.getLogger("transformers.trainer").warning("tokenizer has no pad token")
        logging.getLogger("jobs.engine.dispatch").warning("the hub's own business")
        raise RuntimeError(f"cannot open {secret}")

    monkeypatch.setattr(LinkRunner, "run", broken)
    job = _run(factories.link_job(alice))
    assert (job.status, job.failure_type) == (JobStatus.FAILED, FailureType.INTERNAL_ERROR)
    log = "\n".join(texts(job))
    assert re.search(r"^warning: .*FutureWarning: this option is deprecated$", log, re.MULTILINE)
    assert "warning (transformers.trainer): tokenizer has no pad token" in log
    assert "the hub's own business" not in log  # the deployment's, not the job's
    assert "RuntimeError: cannot open <media>/models/m-secret/x.onnx" in log
    assert "where (innermost last):" in log
    assert re.search(r"^  test_job_logs\.py:\d+ in broken$", log, re.MULTILINE)
    assert re.search(r"^  jobs/engine/execution\.py:\d+ in _run$", log, re.MULTILINE)
    assert str(settings.MEDIA_ROOT) not in log and str(settings.BASE_DIR) not in log
    levels = dict(job.log_lines.values_list("text", "level"))
    assert levels[next(t for t in levels if t.startswith("[failed]"))] == "error"
    # After the job, warnings are the worker's own again.
    assert not logging.getLogger().handlers or all(
        type(h).__name__ != "_ToJobLog" for h in logging.getLogger().handlers
    )


def test_log_lines_are_cleaned_numbered_and_paged(alice, bob, charlie):
    job = factories.link_job(alice)
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    from django.utils import timezone

    now = timezone.now()
    append_lines(job, [(now, "info", f"line {i}") for i in range(1, 1203)])
    append_lines(job, [(now, "warning", "x" * (MAX_LINE_CHARS + 10) + "\x00")])
    url = f"/api/v1/jobs/{job.public_id}/logs/"
    first = api(alice).get(url).json()
    assert len(first["lines"]) == 1000 and first["more"] and first["last"] == 1000
    rest = api(bob).get(url, {"after": first["last"]}).json()
    assert [line["n"] for line in rest["lines"]] == list(range(1001, 1204))
    assert rest["more"] is False and rest["finished"] is False
    long = rest["lines"][-1]
    assert long["level"] == "warning" and long["text"].endswith("(10 more characters)")
    assert "\x00" not in long["text"]
    assert api(charlie).get(url).status_code == 404
    assert api(alice).get(url, {"after": "x"}).status_code == 400


def test_a_reporters_lines_reach_open_pages_as_events_of_numbered_ranges(alice):
    job, token = factories.claimed(factories.link_job(alice))
    reporter = Reporter(job, token, flush_every=3600)  # the first at once, then when flushed
    reporter.log("first")
    reporter.log("second\nthird")  # one line each
    reporter.log("fourth")
    reporter.flush()
    assert texts(job) == ["first", "second", "third", "fourth"]
    events = job.events.filter(type=EventType.LINES).order_by("seq")
    # The text lives once, in the log; an event names the numbers it brought.
    assert [e.payload for e in events] == [{"from": 1, "to": 1}, {"from": 2, "to": 4}]
    assert JobLogLine.objects.filter(job=job).count() == 4


def test_the_job_page_shows_the_log_to_owner_and_reader(alice, bob, charlie, client):
    job = factories.link_job(alice)
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    from django.utils import timezone

    append_lines(job, [(timezone.now(), "error", "<b>not markup</b>")])
    for person in (alice, bob):
        client.force_login(person)
        html = client.get(job.get_absolute_url()).content.decode()
        assert 'data-last="1"' in html
        assert "&lt;b&gt;not markup&lt;/b&gt;" in html
    client.force_login(charlie)
    assert client.get(job.get_absolute_url()).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_library_deprecations_go_to_the_operators_log_and_the_jobs_own_warnings_stay(
    alice, monkeypatch, caplog
):
    import copyreg

    import transformers

    def noisy(self, ctx):
        library, stdlib = transformers.__file__, copyreg.__file__
        warnings.warn_explicit("is_gradient_checkpointing is deprecated", FutureWarning, library, 1)
        warnings.warn_explicit("LeafSpec is deprecated", DeprecationWarning, stdlib, 2)
        warnings.warn_explicit("soon gone", PendingDeprecationWarning, library, 3)
        warnings.warn_explicit("your dataset has 3 empty rows", UserWarning, library, 4)
        raise RuntimeError("stop here")

    monkeypatch.setattr(LinkRunner, "run", noisy)
    with caplog.at_level(logging.INFO, logger="jobs.engine.joblogging"):
        job = _run(factories.link_job(alice))
    log = "\n".join(texts(job))
    assert "your dataset has 3 empty rows" in log  # about the user's job: theirs to read
    for deprecation in ("is_gradient_checkpointing", "LeafSpec", "soon gone"):
        assert deprecation not in log
        assert any(deprecation in r.getMessage() for r in caplog.records), deprecation
