"""The README's run command, and the demo account it makes."""

import re
import sys
import urllib.request
from http.cookiejar import CookieJar
from urllib.parse import urlencode

from jobs.demo import DEMO_USERNAME, ensure_demo, number_in_words
from jobs.models import Job
from tests.helpers import alive, child_env, descendants, free_port, running
from tests.workers import wait_for


def test_numbers_are_spelled_in_words():
    assert [number_in_words(n) for n in (0, 13, 40, 42, 100, 219)] == [
        "zero",
        "thirteen",
        "forty",
        "forty-two",
        "one hundred",
        "two hundred and nineteen",
    ]


def test_demo_account_gets_demo_jobs_once(db, client):
    first = ensure_demo()
    assert first.username == DEMO_USERNAME
    assert first.jobs_created == 2
    signed_in = client.post(
        "/accounts/login/", {"username": DEMO_USERNAME, "password": first.password}
    )
    assert signed_in.status_code == 302
    again = ensure_demo()
    assert (again.password, again.jobs_created) == (first.password, 0)
    assert Job.objects.filter(owner__username=DEMO_USERNAME).count() == 2


def test_a_changed_demo_password_is_not_printed(db):
    from django.contrib.auth import get_user_model

    ensure_demo()
    user = get_user_model().objects.get(username=DEMO_USERNAME)
    user.set_password("something-else-entirely")
    user.save()
    assert ensure_demo().password is None


def test_run_command_serves_the_hub_with_the_demo_account(tmp_path):
    """A fresh data directory: migrate, demo account, server; then sign in over real HTTP."""
    port = free_port()
    env = child_env(HUB_DATA_DIR=str(tmp_path))
    with running([sys.executable, "manage.py", "runhub", "--port", str(port)], env) as hub:
        hub.wait_for(f"is starting at http://127.0.0.1:{port}/", timeout=120)
        found = re.search(r"Demo account: demo / (\S+)", hub.wait_for("Demo account", 5))
        assert found, hub.lines
        password = found.group(1)
        hub.wait_for("Uvicorn running", timeout=60)

        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar := CookieJar()))
        base = f"http://127.0.0.1:{port}"
        login = opener.open(f"{base}/jobs/").read().decode()  # redirected to sign in
        assert "Sign in" in login
        token = next(c.value for c in jar if c.name == "csrftoken")
        form = urlencode(
            {
                "username": "demo",
                "password": password,
                "csrfmiddlewaretoken": token,
                "next": "/jobs/",
            }
        )
        request = urllib.request.Request(
            f"{base}/accounts/login/", data=form.encode(), headers={"Referer": base + "/"}
        )
        jobs = opener.open(request).read().decode()
        assert "Demo: link two models" in jobs
        assert "Demo: LoRA-tune tiny-llama to spell numbers" in jobs
        css = opener.open(f"{base}/static/hub/hub.css")
        assert css.status == 200

        # The worker started beside the server runs both demo jobs to READY.
        def both_ready() -> bool:
            page = opener.open(f"{base}/jobs/?status=ready").read().decode()
            return "Demo: link two models" in page and "Demo: LoRA-tune tiny-llama" in page

        wait_for(both_ready, 180, "the demo jobs to become ready")
        failed = opener.open(f"{base}/jobs/?status=failed").read().decode()
        assert "Demo:" not in failed
    assert (tmp_path / "hub.sqlite3").exists()


def with_builtin_model(data_dir):
    """A data directory that already holds the built-in model, as one does from the second start
    on: the tests of stopping start in seconds, not after building it (the first test above
    starts from nothing, as a newcomer does)."""
    import shutil

    from jobs.domain.base_models import BUILTIN_NAME, ensure_builtin

    shutil.copytree(ensure_builtin(), data_dir / "media" / "builtin-models" / BUILTIN_NAME)
    return data_dir


def test_a_service_managers_sigterm_stops_the_hub_and_its_workers(tmp_path):
    import signal

    env = child_env(HUB_DATA_DIR=str(with_builtin_model(tmp_path)))
    command = [sys.executable, "manage.py", "runhub", "--port", str(free_port()), "--no-demo"]
    with running(command, env) as hub:
        hub.wait_for("Uvicorn running", timeout=120)

        # Two workers: jobs (with the process its pool forks) and control (solo).
        def started() -> set[int] | None:
            found = descendants(hub.process.pid)
            return found if len(found) >= 3 else None

        workers = wait_for(started, 60, "the workers to start")
        hub.process.send_signal(signal.SIGTERM)
        assert hub.process.wait(timeout=30) != 0  # ended by the signal, after stopping them
    assert not [pid for pid in workers if alive(pid)]


def test_ctrl_c_stops_the_hub_within_seconds_and_its_running_job_continues_on_the_next_start(
    tmp_path,
):
    import signal
    import sqlite3
    import time

    from jobs.demo import DEMO_CUSTOMIZATION

    def job_row() -> tuple[str, int, int] | None:
        with sqlite3.connect(tmp_path / "hub.sqlite3") as db:
            return db.execute(
                "SELECT status, COALESCE(steps_completed, 0), attempts FROM jobs_job WHERE name = ?",
                (DEMO_CUSTOMIZATION,),
            ).fetchone()

    env = child_env(HUB_DATA_DIR=str(with_builtin_model(tmp_path)))
    port = free_port()
    with running([sys.executable, "manage.py", "runhub", "--port", str(port)], env) as hub:
        hub.wait_for("Uvicorn running", timeout=120)
        wait_for(
            lambda: (row := job_row()) is not None and row[0] == "running" and row[1] >= 20,
            120,
            "the demo customization to be training",
            every=0.1,
        )
        workers = descendants(hub.process.pid)
        asked = time.monotonic()
        hub.process.send_signal(signal.SIGINT)  # Ctrl-C
        hub.process.wait(timeout=30)
        stopped_in = time.monotonic() - asked
        assert "Put 1 running job(s) back in the queue." in "".join(hub.lines)
        # One Ctrl-C stops everything: no worker advises pressing it again (each of the two
        # did, on its own output).
        assert "Hitting Ctrl+C again" not in "".join(hub.lines)
    assert stopped_in < 6, stopped_in  # the "within 5 s", with a moment for the exit
    assert workers and not [pid for pid in workers if alive(pid)]  # none left running
    status, _, attempts = job_row() or ("", 0, 0)
    assert (status, attempts) == ("pending", 0)  # back in the queue; the stop is not an attempt
    with sqlite3.connect(tmp_path / "hub.sqlite3") as db:
        (message,) = db.execute(
            "SELECT message FROM jobs_statuslog WHERE status = 'pending' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert "The hub was stopped while this job ran; it is back in the queue" in message

    with running([sys.executable, "manage.py", "runhub", "--port", str(free_port())], env) as hub:
        hub.wait_for("Uvicorn running", timeout=120)
        wait_for(lambda: (job_row() or ("",))[0] == "ready", 180, "the job to finish after restart")
    assert (job_row() or ("", 0, 0))[2] == 1  # one attempt counted: the one that finished
