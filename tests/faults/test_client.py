"""The way from a client to the hub breaks while it waits for a job (the hub's Redis restarting
refuses websocket handshakes and fails requests with 503): ``wait()`` and ``hub watch`` back
off, reconnect, resume by sequence number, poll meanwhile, and end only with the job."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import pytest

from hubclient import Client
from tests import factories
from tests.faults.servers import FaultyProxy

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


def test_wait_outlasts_a_broken_connection_and_ends_with_the_job(hub_env, alice, figures):
    proxy = FaultyProxy(urlsplit(hub_env["HUB_URL"]).port or 80)
    try:
        job = factories.customization_job(alice, epochs=8, early_stopping_patience=0)
        hub = Client(url=proxy.url, token=hub_env["HUB_API_TOKEN"])
        remote = hub.get_job(job.public_id)
        outcome: dict[str, object] = {}

        def waiting() -> None:
            try:
                outcome["status"] = remote.wait(timeout=240)
            except Exception as error:  # the test asserts there is none
                outcome["error"] = error

        waiter = threading.Thread(target=waiting)
        waiter.start()
        time.sleep(3)  # connected and receiving
        proxy.break_()  # every connection dropped, every new one refused with 503
        time.sleep(6)
        assert waiter.is_alive() and "error" not in outcome, outcome
        proxy.heal()
        healed = time.monotonic()
        waiter.join(240)
        assert "error" not in outcome, outcome
        status = outcome["status"]
        assert getattr(status, "success", False), outcome
        figures.record(
            fault="every connection to the hub dropped, 503 to new ones, for 6 s",
            in_flight="1 client wait() on a training job", lost=0, duplicated=0,
            recovery_s=round(time.monotonic() - healed, 2), note="wait() ended with the job's success",
        )  # fmt: skip
    finally:
        proxy.close()
