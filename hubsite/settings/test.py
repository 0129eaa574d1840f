"""Test overlay: the same settings, made fast and isolated.

The database and Redis still come from the environment, so the same suite runs on the embedded
profile (nothing set) and on the production profile (``.ci/run`` sets ``DATABASE_URL`` and
``REDIS_URL``).
"""

import os
import tempfile

os.environ.setdefault("HUB_SECRET_KEY", "test-only-secret-key-" + "x" * 40)
# Never the developer's own data directory: uploads and the embedded queue go to a fresh one.
os.environ["HUB_DATA_DIR"] = tempfile.mkdtemp(prefix="hub-test-")
os.environ.pop("HUB_MEDIA_ROOT", None)
# The built-in model is made once per run (by the test database's migrate) and shared by every
# test and every process the tests start, whatever media root each of them uses.
os.environ["HUB_BUILTIN_MODEL_DIR"] = os.path.join(os.environ["HUB_DATA_DIR"], "builtin-models")
# Worker processes started by the tests read these from the environment too: a lost worker is
# noticed within seconds, and this run's queue and channel-layer keys are its own, so a
# developer's hub on the same Redis neither takes nor sees the tests' jobs.
os.environ.setdefault("HUB_HEARTBEAT_SECONDS", "1")
os.environ.setdefault("HUB_WORKER_LOST_AFTER", "4")
os.environ.setdefault("HUB_REAPER_INTERVAL", "1")
os.environ.setdefault("HUB_NAMESPACE", f"hub-test-{os.getpid()}")
# Every test request comes from 127.0.0.1: the suite would pass a person's rate in a minute. The
# rate-limit tests set low rates of their own (tests/security/test_rate_limits.py).
os.environ.setdefault("HUB_API_RATE_ANON", "100000/minute")
os.environ.setdefault("HUB_API_RATE_USER", "100000/minute")
os.environ.setdefault("HUB_API_RATE_BAD_TOKEN", "100000/minute")
os.environ.setdefault("HUB_SOCKET_RATE", "100000/minute")

from hubsite.settings.base import *  # noqa: F403
from hubsite.settings.base import STORAGES

# Fast hashing in tests; PBKDF2 too, for people who sign in to a live hub (base settings) in
# the browser tests.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
from hubsite.settings.base import STATIC_ROOT  # noqa: E402

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing one
