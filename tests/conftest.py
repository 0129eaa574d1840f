"""Shared fixtures: three people (Alice owns, Bob will be shared with, Charlie is a stranger),
real uploaded assets, and the rule for production-profile tests.

Tests marked ``production`` need the real PostgreSQL and Redis of the production profile. Without
them they are skipped with the reason; with ``HUB_REQUIRE_SERVICES=1`` (as in ``.ci/run``) a
missing server fails them instead, and any skip at all fails the run.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection

from tests import factories

pytest_plugins = ["tests.workers", "tests.s3", "tests.oidc", "tests.prom"]

REQUIRE_SERVICES = os.environ.get("HUB_REQUIRE_SERVICES") == "1"


def _truncation_retried_on_deadlock() -> None:
    """Emptying the tables after a test that served real processes truncates every table while a
    live hub or a worker may still be answering a last request (a page's socket re-checking
    access after a revocation). PostgreSQL then breaks the lock cycle by failing one side,
    sometimes the truncation: the other side's query ends at once, so the truncation is tried
    again rather than failing a test whose assertions all passed. No product path truncates."""
    from django.db import OperationalError
    from django.test.testcases import TransactionTestCase

    empty = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]  # untyped

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                return empty(self)
            except Exception as error:
                cause = error.__cause__ or error
                deadlock = isinstance(cause, OperationalError) and "deadlock" in str(cause)
                if not deadlock or attempt == 4:
                    raise
        return None

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[attr-defined]


_truncation_retried_on_deadlock()


def _missing_services() -> str | None:
    if connection.vendor != "postgresql":
        return "production profile: DATABASE_URL does not point at PostgreSQL"
    if not settings.REDIS_URL:
        return "production profile: REDIS_URL is not set"
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        return f"production profile: Redis at REDIS_URL does not answer ({error})"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("production") is None:
        return
    missing = _missing_services()
    if missing and REQUIRE_SERVICES:
        pytest.fail(f"HUB_REQUIRE_SERVICES=1 but {missing}")
    if missing:
        pytest.skip(missing)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if REQUIRE_SERVICES and skipped:
        if reporter:
            reporter.write_line(
                f"HUB_REQUIRE_SERVICES=1: {skipped} test(s) skipped; none may be.", red=True
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def alice(db: None) -> User:
    return factories.person("alice")


@pytest.fixture
def bob(db: None) -> User:
    return factories.person("bob")


@pytest.fixture
def charlie(db: None) -> User:
    return factories.person("charlie")


@pytest.fixture
def this_device(db: None) -> Any:
    """This machine's device, as a worker here announces it."""
    from jobs.domain.devices import register, this_machine

    return register(this_machine())


@pytest.fixture
def hub_here(alice: Any) -> Any:
    """``hubclient.Client`` as Alice, its HTTP requests served by this process's Django app
    (WSGI, in the test's transaction, as Django's test client serves them); its websocket finds
    no server, so ``wait()`` ends on the status it reads over HTTP."""
    import httpx
    from django.core import signals
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import close_old_connections
    from rest_framework.authtoken.models import Token

    from hubclient import Client

    token, _ = Token.objects.get_or_create(user=alice)
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)  # the test's transaction stays open
    client = Client("http://127.0.0.1:9", token.key)  # port 9 (discard): nothing listens
    client._http = httpx.Client(
        transport=httpx.WSGITransport(app=WSGIHandler()),
        base_url=client.url,
        headers={"Authorization": f"Token {token.key}"},
        follow_redirects=True,
    )
    try:
        yield client
    finally:
        client.close()
        for signal in (signals.request_started, signals.request_finished):
            signal.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _media_root(tmp_path_factory: pytest.TempPathFactory, settings: Any) -> None:
    """Each test stores its uploads in a directory of its own."""
    settings.MEDIA_ROOT = str(tmp_path_factory.mktemp("media"))


@pytest.fixture(autouse=True)
def _close_the_async_tests_database_thread() -> Any:
    """An async test's ``sync_to_async`` calls run on asgiref's one thread, whose database
    connection nothing closes (database_sync_to_async would), nor do the live layer's threads
    theirs (they keep it from one step to the next): close them after each test, so the test
    database is not held open when it is dropped."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    from jobs.live.fanout import close_connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)
    close_connections()
