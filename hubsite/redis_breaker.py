"""One circuit breaker per process for everything that calls Redis (the cache that holds the rate
limits, the live events' publisher and subscriptions, the Celery broker's sends, /healthz).

A stopped Redis (paused, its host swapping, a network that drops packets) accepts connections
and never answers: each call waits for its socket timeout. Without a breaker every request pays
each of its callers' timeouts (throttles, the job queue: seconds a request). With it, the first
timeout or connection error opens the circuit, and from then on every caller in the process
fails at once, without touching the network, and takes its way around Redis (rate limits let
requests through, a job stays pending and is sent later, live events come from the database).
While open, a probe in a thread of its own PINGs Redis every HUB_REDIS_RETRY_SECONDS; the
first answer closes the circuit. No request ever waits for a probe.

redis-py's clients consult it through their connections (``GuardedPool``: the cache's
``pool_class`` and the live publisher's pool); kombu's connections are the broker's own, so
``jobs.engine.dispatch`` asks ``breaker`` before it sends.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

# What a hung or absent Redis raises through redis-py, kombu or a socket.
UNREACHABLE: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    TimeoutError,
    ConnectionError,
)


def unreachable(error: BaseException | None) -> bool:
    """A timeout or a refused connection, also as kombu raises it (wrapped in its
    OperationalError)."""
    from kombu.exceptions import OperationalError

    while error is not None:
        if isinstance(error, (*UNREACHABLE, OperationalError)):
            return True
        error = error.__cause__ or error.__context__
    return False


class CircuitOpen(redis.RedisError):
    """Redis was not called: the circuit is open. A RedisError (callers that handle Redis
    failing handle this), not a ConnectionError: redis-py's own retries do not retry it."""


class Breaker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened_at: float | None = None  # time.monotonic() when it opened
        self._why = ""
        self._last_probe = 0.0
        self._probing = False

    @property
    def is_open(self) -> bool:
        if self._opened_at is None:
            return False
        self._probe_if_due()
        return self._opened_at is not None

    def check(self) -> None:
        """Raise CircuitOpen rather than call Redis while the circuit is open."""
        if self.is_open:
            raise CircuitOpen(f"Redis is not answering ({self._why}); not called meanwhile.")

    def trip(self, error: BaseException) -> None:
        with self._lock:
            if self._opened_at is not None:
                return
            self._opened_at = self._last_probe = time.monotonic()
            # The error's words too (redis-py's name the address it could not reach): what a
            # caller skipped meanwhile records says where Redis was not answering, whichever
            # caller happened to trip the circuit first (measured: a job's status log read
            # "CircuitOpen: … (ConnectionError)" when another thread had tripped it).
            words = str(error).strip()
            self._why = f"{type(error).__name__}: {words}"[:300] if words else type(error).__name__
        logger.warning(
            "Redis did not answer (%s): circuit open; callers skip Redis until a probe answers",
            self._why,
        )

    def close(self) -> None:
        with self._lock:
            was, self._opened_at = self._opened_at, None
        if was is not None:
            logger.warning(
                "Redis answers again after %.1f s: circuit closed", time.monotonic() - was
            )

    def status(self) -> dict[str, Any]:
        """For /healthz: whether Redis is being skipped, since when and why."""
        if not self.is_open:
            return {"ok": True, "circuit": "closed"}
        opened = self._opened_at or time.monotonic()
        return {
            "ok": False,
            "circuit": "open",
            "open_s": round(time.monotonic() - opened, 1),
            "error": self._why,
            "retry_every_s": settings.HUB_REDIS_RETRY_SECONDS,
        }

    def _probe_if_due(self) -> None:
        with self._lock:
            due = time.monotonic() - self._last_probe >= settings.HUB_REDIS_RETRY_SECONDS
            if self._probing or not due:
                return
            self._probing = True
        threading.Thread(target=self._probe, name="hub-redis-probe", daemon=True).start()

    def _probe(self) -> None:
        try:
            # A connection of its own, outside the breaker, with one short try; it says
            # nothing but PING (no CLIENT SETINFO handshake).
            client = redis.Redis.from_url(
                str(settings.REDIS_URL),
                socket_connect_timeout=1,
                socket_timeout=1,
                retry=Retry(NoBackoff(), 0),
                driver_info=None,
            )
            try:
                client.ping()
            finally:
                client.close()
        except Exception as error:  # still away: the circuit stays open
            logger.info("Redis probe: still no answer (%s)", type(error).__name__)
        else:
            self.close()
        finally:
            with self._lock:
                self._last_probe = time.monotonic()
                self._probing = False


breaker = Breaker()


class _Guarded:
    """A redis-py connection that asks the breaker before it touches the network and opens it
    when Redis does not answer."""

    def connect_check_health(self, *args: Any, **kwargs: Any) -> Any:
        breaker.check()
        return self._watched(super().connect_check_health, *args, **kwargs)  # type: ignore[misc]

    def send_packed_command(self, *args: Any, **kwargs: Any) -> Any:
        breaker.check()
        return self._watched(super().send_packed_command, *args, **kwargs)  # type: ignore[misc]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        return self._watched(super().read_response, *args, **kwargs)  # type: ignore[misc]

    @staticmethod
    def _watched(call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except UNREACHABLE as error:
            breaker.trip(error)
            raise


_guarded_classes: dict[type, type] = {}


def guarded(connection_class: type) -> type:
    if issubclass(connection_class, _Guarded):
        return connection_class
    if connection_class not in _guarded_classes:
        _guarded_classes[connection_class] = type(
            f"Guarded{connection_class.__name__}", (_Guarded, connection_class), {}
        )
    return _guarded_classes[connection_class]


class GuardedPool(redis.ConnectionPool):
    """A connection pool whose connections consult the breaker (the cache's ``pool_class``)."""

    def __init__(self, connection_class: type = redis.Connection, **kwargs: Any) -> None:
        # One try a call: the breaker, not a retry with backoff, decides what a failure costs.
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        super().__init__(connection_class=guarded(connection_class), **kwargs)
