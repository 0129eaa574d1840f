"""Settings of the hub, read from the environment.

Two profiles, chosen by environment variables alone:

* embedded (default): a SQLite file and a filesystem broker under ``HUB_DATA_DIR``; nothing to
  install or start.
* production: ``REDIS_URL`` set (Celery broker and live events), usually with ``DATABASE_URL``
  pointing at PostgreSQL, ``HUB_SECRET_KEY`` and ``HUB_BASE_URL`` set.

The README's settings table lists every variable read here.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from hubsite.client_address import parse_networks
from hubsite.env import env_bool, env_int, env_list, env_optional, env_str
from hubsite.settings.storage import options_from_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# The hub never fetches models or datasets from a model hub: what people bring is what it uses.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Download-style progress bars (loading weights, writing shards) would fill the workers' logs.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
DATA_DIR = Path(env_str("HUB_DATA_DIR", str(BASE_DIR / "var"))).resolve()

# Metrics (hubsite/metrics.py): each process of this host writes its figures here (prometheus_
# client's multiprocess mode), and a scrape sums them. Set before prometheus_client is imported.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(DATA_DIR / "metrics" / socket.gethostname()))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

REDIS_URL = env_optional("REDIS_URL")
HUB_PROFILE = "production" if REDIS_URL else "embedded"

DEBUG = env_bool("HUB_DEBUG", False)


def _secret_key() -> str:
    key = env_optional("HUB_SECRET_KEY")
    if key:
        return key
    if HUB_PROFILE == "production":
        raise ImproperlyConfigured(
            "Set HUB_SECRET_KEY: the production profile (REDIS_URL is set) never invents one."
        )
    # Embedded: one random key per data directory, so sessions survive a restart.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

# The absolute address people reach the hub at: job urls, links in emails.
HUB_BASE_URL = env_str("HUB_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
_base = urlsplit(HUB_BASE_URL)
if _base.scheme not in {"http", "https"} or not _base.hostname:
    raise ImproperlyConfigured(f"HUB_BASE_URL must be an http(s) address, not {HUB_BASE_URL!r}.")

ALLOWED_HOSTS = env_list("HUB_ALLOWED_HOSTS", [_base.hostname, "localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("HUB_CSRF_TRUSTED_ORIGINS", [f"{_base.scheme}://{_base.netloc}"])

# HTTPS hardening follows the base address: a hub served over https gets secure cookies,
# a redirect to https and HSTS; a loopback http hub keeps working without them.
HTTPS = _base.scheme == "https"
SECURE_SSL_REDIRECT = env_bool("HUB_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("HUB_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HUB_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("HUB_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    # Preloading is a commitment to the browsers' list that an operator makes on purpose.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
if env_bool("HUB_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The operator's own reverse proxies (addresses or CIDR networks, comma-separated). Only from
# these is X-Forwarded-For believed; otherwise rate limits, the sign-in lockout and websocket
# handshakes count clients by the socket's address (hubsite/client_address.py).
HUB_TRUSTED_PROXIES = env_list("HUB_TRUSTED_PROXIES", [])
try:
    parse_networks(HUB_TRUSTED_PROXIES)
except ValueError as error:
    raise ImproperlyConfigured(f"HUB_TRUSTED_PROXIES: {error}.") from None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "hubsite",
    "jobs",
    "sharing",
    "notifications",
    "aihub",
    "audit",
]

MIDDLEWARE = [
    "hubsite.metrics.RequestMetrics",  # first: it times everything below
    "django.middleware.security.SecurityMiddleware",
    "hubsite.middleware.RejectNulCharacters",
    "hubsite.middleware.QaiHubAddressHint",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.context.AuditContext",  # where a request comes from, for what it records
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into its 429 page.
    "axes.middleware.AxesMiddleware",
]

# Content-Security-Policy on every response: scripts only from the hub's own files (no inline
# script anywhere), sockets back to the hub, nothing framed. Inline styles stay allowed: the
# progress bars set widths in markup and plotly.js writes <style> elements.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF, ("wss://" if _base.scheme == "https" else "ws://") + _base.netloc],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Sign-in lockout (django-axes): five failed sign-ins from one address for one username lock
# that pair out for a quarter of an hour, so guessing is slow and nobody can lock a victim out
# from elsewhere. The lockout answers 429 with a page that says when to try again.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# /metrics (hubsite/metrics.py): answered with the bearer token HUB_METRICS_TOKEN, or to the
# networks named here without one (loopback by default); anyone else gets a 404.
HUB_METRICS_TOKEN = env_str("HUB_METRICS_TOKEN", "")
HUB_METRICS_NETWORKS = parse_networks(env_list("HUB_METRICS_NETWORKS", ["127.0.0.1/32", "::1/128"]))
# A worker on a host with no web process serves its host's metrics on this port (0: none).
HUB_METRICS_PORT = env_int("HUB_METRICS_PORT", 0, minimum=0)

# Single sign-on through an OpenID Connect provider (hubsite/sso.py), set by its issuer address;
# local passwords beside it unless HUB_LOCAL_LOGIN=off.
HUB_OIDC_ISSUER = env_str("HUB_OIDC_ISSUER", "")
HUB_LOCAL_LOGIN = env_bool("HUB_LOCAL_LOGIN", True)
if not HUB_LOCAL_LOGIN and not HUB_OIDC_ISSUER:
    raise ImproperlyConfigured(
        "HUB_LOCAL_LOGIN=off leaves no way to sign in: set HUB_OIDC_ISSUER (single sign-on) too."
    )
HUB_OIDC_NAME = env_str("HUB_OIDC_NAME", "single sign-on")  # the sign-in button's words
HUB_OIDC_GROUPS_CLAIM = env_str("HUB_OIDC_GROUPS_CLAIM", "groups")
HUB_OIDC_STAFF_GROUPS = env_list("HUB_OIDC_STAFF_GROUPS", [])
HUB_OIDC_SUPERUSER_GROUPS = env_list("HUB_OIDC_SUPERUSER_GROUPS", [])
HUB_OIDC_REQUIRED_GROUPS = env_list("HUB_OIDC_REQUIRED_GROUPS", [])
HUB_OIDC_TIMEOUT_SECONDS = env_int("HUB_OIDC_TIMEOUT_SECONDS", 10, minimum=1)
if HUB_OIDC_ISSUER:
    AUTHENTICATION_BACKENDS.append("hubsite.sso.HubOIDCBackend")
    if not HUB_LOCAL_LOGIN:
        AUTHENTICATION_BACKENDS.remove("django.contrib.auth.backends.ModelBackend")
# mozilla-django-oidc's own settings, from the hub's (the endpoints come from discovery).
OIDC_RP_CLIENT_ID = env_str("HUB_OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = env_str("HUB_OIDC_CLIENT_SECRET", "")
OIDC_RP_SIGN_ALGO = env_str("HUB_OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env_str("HUB_OIDC_SCOPES", "openid email profile")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = HUB_OIDC_TIMEOUT_SECONDS
OIDC_STORE_ID_TOKEN = True  # for signing out at the provider too
OIDC_AUTHENTICATE_CLASS = "hubsite.sso.SignIn"
OIDC_CALLBACK_CLASS = "hubsite.sso.Callback"
AXES_FAILURE_LIMIT = env_int("HUB_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("HUB_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# The address a failure counts against: the socket's, or a trusted proxy's X-Forwarded-For.
AXES_CLIENT_IP_CALLABLE = "hubsite.client_address.request_address"

ROOT_URLCONF = "hubsite.urls"
ASGI_APPLICATION = "hubsite.asgi.application"
WSGI_APPLICATION = "hubsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "hubsite.context_processors.hub",
            ],
        },
    },
]


def _database() -> dict[str, object]:
    url = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'hub.sqlite3'}")
    try:
        config: dict[str, object] = dict(dj_database_url.parse(url))
    except ValueError as error:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database address: {error}") from None
    engine = str(config["ENGINE"])
    if engine.endswith("sqlite3"):
        if config["NAME"] != ":memory:":
            Path(str(config["NAME"])).parent.mkdir(parents=True, exist_ok=True)
        # The web server and the worker write at once: WAL lets readers go on during a write,
        # IMMEDIATE takes the write lock up front instead of failing half-way, and the timeout
        # waits for a busy writer rather than raising "database is locked".
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    elif engine.endswith("postgresql"):
        config["CONN_MAX_AGE"] = env_int("HUB_DB_CONN_MAX_AGE", 0, minimum=0)
        config["CONN_HEALTH_CHECKS"] = True
        # A database that is stopped (not dead) accepts a connection and never answers: without
        # a bound, every request would hang with it instead of answering 503.
        options: dict[str, object] = {
            **dict(config.get("OPTIONS") or {}),  # type: ignore[call-overload]
            "connect_timeout": env_int("HUB_DB_CONNECT_TIMEOUT", 5, minimum=1, maximum=120),
        }
        config["OPTIONS"] = options
        if env_bool("HUB_DB_POOL", False):
            # For web processes, when asked: every request and socket step takes a connection
            # from a pool instead of opening one (a few ms each; 1,000 pages opened at once pay
            # it a thousand times). Off by default: a pooled connection already open to a
            # stopped (paused, not dead) PostgreSQL hangs its request, where a new connection
            # would time out and answer 503. Worker processes fork, and a pool must not cross a
            # fork: never set it for them.
            config["CONN_MAX_AGE"] = 0  # Django's pool requires it; closing returns to the pool
            options["pool"] = {
                "min_size": 2,
                "max_size": env_int("HUB_DB_POOL_SIZE", 20, minimum=2, maximum=1000),
                "timeout": env_int("HUB_DB_CONNECT_TIMEOUT", 5, minimum=1, maximum=120),
            }
    else:
        raise ImproperlyConfigured(
            f"DATABASE_URL must name PostgreSQL (postgres://) or SQLite (sqlite://), not {engine}."
        )
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "jobs:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "hubsite.staticfinders.PlotlyFinder",
]
MEDIA_ROOT = Path(env_str("HUB_MEDIA_ROOT", str(DATA_DIR / "media"))).resolve()
# The built-in base model (tiny-llama), made by `migrate` the first time: on the media storage,
# so that every web process and worker of a deployment uses the one made there.
HUB_BUILTIN_MODEL_DIR = Path(
    env_str("HUB_BUILTIN_MODEL_DIR", str(MEDIA_ROOT / "builtin-models"))
).resolve()
MEDIA_URL = "media/"  # never served as-is: every download goes through the read-access selector
STORAGES: dict[str, dict[str, Any]] = {
    # Files appear whole or not at all (written aside, then linked into place): hubsite/storage.py
    "default": {"BACKEND": "hubsite.storage.WholeFileStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Object storage (hubsite/object_storage.py): every stored file in an S3-compatible bucket, so that
# hosts share no folder. HUB_MEDIA_ROOT then holds only each host's temporary files.
HUB_STORAGE_URL = env_str("HUB_STORAGE_URL", "")
# The address browsers and clients reach the storage at, where the hub's processes use another
# (presigned addresses are signed for one host).
HUB_S3_PUBLIC_ENDPOINT_URL = env_str("HUB_S3_PUBLIC_ENDPOINT_URL", "")
if HUB_STORAGE_URL:
    STORAGES["default"] = {
        "BACKEND": "hubsite.object_storage.ObjectStorage",
        "OPTIONS": options_from_url(
            HUB_STORAGE_URL,
            endpoint_url=env_str("HUB_S3_ENDPOINT_URL", ""),
            region=env_str("HUB_S3_REGION", ""),
            # Unset: boto3's own chain (AWS_ACCESS_KEY_ID…, a profile, the instance's role).
            access_key=env_str("HUB_S3_ACCESS_KEY_ID", ""),
            secret_key=env_str("HUB_S3_SECRET_ACCESS_KEY", ""),
            addressing_style=env_str("HUB_S3_ADDRESSING_STYLE", ""),
            timeout=env_int("HUB_S3_TIMEOUT_SECONDS", 10, minimum=1),
            expire_seconds=env_int("HUB_SIGNED_URL_SECONDS", 3600, minimum=10),
        ),
    }
# Workers' local copies of stored files (jobs/engine/scratch.py) when files are in object storage:
# kept between jobs up to this many bytes, the least recently used evicted first.
HUB_SCRATCH_DIR = Path(env_str("HUB_SCRATCH_DIR", str(DATA_DIR / "scratch"))).resolve()
HUB_SCRATCH_BYTES = env_int("HUB_SCRATCH_BYTES", 20 * 1024**3, minimum=0)

# Temporary upload files: on the media file system, one folder per process (host-pid), so that
# what a killed process leaves is found and removed when a web process starts
# (hubsite.uploads.sweep_upload_temp_files).
FILE_UPLOAD_TEMP_DIR = str(MEDIA_ROOT / ".uploads" / f"{socket.gethostname()}-{os.getpid()}")
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
FILE_UPLOAD_HANDLERS = [
    "hubsite.uploads.SizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# REST API (jobs/api/): tokens for code, the session for the browser; every error is JSON with a
# message and the field at fault (hubsite/api/errors.py).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hubsite.api.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "hubsite.api.throttles.AnonymousRateLimit",
        "rest_framework.permissions.IsAuthenticated",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "hubsite.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "hubsite.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "hubsite.api.errors.exception_handler",
    # Rates per person (per address when anonymous); a wrong API token counts against its
    # sender's address. Beyond a rate: 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["hubsite.api.throttles.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("HUB_API_RATE_ANON", "60/minute"),
        "user": env_str("HUB_API_RATE_USER", "1200/minute"),
        "bad_token": env_str("HUB_API_RATE_BAD_TOKEN", "20/minute"),
        # Websocket handshakes per address (hubsite/ws_auth.py); their wrong tokens count
        # against ``bad_token`` as the API's do.
        "socket": env_str("HUB_SOCKET_RATE", "120/minute"),
    },
    # Our throttles read the address from hubsite.client_address; any other throttle falls back
    # on DRF's, which without this would count clients by an X-Forwarded-For anyone sends.
    "NUM_PROXIES": 0,
    "DEFAULT_SCHEMA_CLASS": "hubsite.api.schema.HubAutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "hubsite.api.renderers.FastJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Model Job Hub API",
    "DESCRIPTION": "Submit, watch and download link and customization jobs, and track runs that "
    "train elsewhere (external).",
    # Two fields named status: a job's, and how an external run ended.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.domain.status.JobStatus",
        "RunEndEnum": ["completed", "failed", "cancelled"],
        "UploadKindEnum": ["dataset", "model"],
        "JobKindEnum": "jobs.models.job.JobKind",
    },
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Served by the hub itself: the documentation page works on a closed network.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Jobs
HUB_JOB_TIME_LIMIT = env_int("HUB_JOB_TIME_LIMIT", 6 * 3600, minimum=10)
HUB_MAX_UPLOAD_BYTES = env_int("HUB_MAX_UPLOAD_BYTES", 512 * 1024 * 1024, minimum=1024)
# The qai-hub face (aihub/): how long a signed upload or download address works, and the size of
# the parts the client sends a model in.
HUB_SIGNED_URL_SECONDS = env_int("HUB_SIGNED_URL_SECONDS", 3600, minimum=10)
HUB_UPLOAD_PART_BYTES = env_int("HUB_UPLOAD_PART_BYTES", 64 * 1024 * 1024, minimum=64 * 1024)
# Verifying a link job runs each model on test inputs of its declared shapes: a model of a few
# bytes can declare a shape that takes gigabytes, so larger inputs are refused at upload.
HUB_MAX_VERIFY_INPUT_BYTES = env_int("HUB_MAX_VERIFY_INPUT_BYTES", 256 * 1024 * 1024, minimum=1024)
# A model archive of more files than this is refused before it is unpacked (a real Hugging Face
# folder holds tens: config, tokenizer files, up to a few hundred weight shards).
HUB_MODEL_ARCHIVE_MAX_MEMBERS = env_int("HUB_MODEL_ARCHIVE_MAX_MEMBERS", 1000, minimum=10)
# The largest vocabulary a tokenizer may have (the largest released models have about 262,000).
HUB_MAX_VOCABULARY = env_int("HUB_MAX_VOCABULARY", 1024 * 1024, minimum=100)
# Checking an uploaded model folder (config, weights' headers, tokenizer) runs in a child
# process within this much memory and time, never in the web process itself.
HUB_MODEL_CHECK_MEMORY_BYTES = env_int(
    "HUB_MODEL_CHECK_MEMORY_BYTES", 3 * 1024**3, minimum=256 * 1024 * 1024
)
HUB_MODEL_CHECK_SECONDS = env_int("HUB_MODEL_CHECK_SECONDS", 300, minimum=5)
# Per-person quotas (jobs.domain.quotas); 0 turns one off.
HUB_QUOTA_ACTIVE_JOBS = env_int("HUB_QUOTA_ACTIVE_JOBS", 20, minimum=0)
HUB_QUOTA_UPLOADS_PER_HOUR = env_int("HUB_QUOTA_UPLOADS_PER_HOUR", 60, minimum=0)
HUB_QUOTA_STORAGE_BYTES = env_int("HUB_QUOTA_STORAGE_BYTES", 20 * 1024**3, minimum=0)
# External runs' log lines: what one run keeps, and what one person's runs send in an hour
# (a run's log is for reading, not a place to store data: 30 MiB in seconds was tried).
HUB_QUOTA_RUN_LOG_LINES = env_int("HUB_QUOTA_RUN_LOG_LINES", 200_000, minimum=0)
HUB_QUOTA_RUN_LOG_BYTES = env_int("HUB_QUOTA_RUN_LOG_BYTES", 20 * 1024**2, minimum=0)
HUB_QUOTA_LOG_LINES_PER_HOUR = env_int("HUB_QUOTA_LOG_LINES_PER_HOUR", 500_000, minimum=0)
HUB_QUOTA_LOG_BYTES_PER_HOUR = env_int("HUB_QUOTA_LOG_BYTES_PER_HOUR", 50 * 1024**2, minimum=0)
# ... and runs them within this much memory: a tiny model can compute a huge tensor.
HUB_MAX_VERIFY_MEMORY_BYTES = env_int(
    "HUB_MAX_VERIFY_MEMORY_BYTES", 2 * 1024 * 1024 * 1024, minimum=16 * 1024 * 1024
)
# One dataset record per line: a longer line is refused at upload, naming it.
HUB_MAX_DATASET_LINE_BYTES = env_int("HUB_MAX_DATASET_LINE_BYTES", 4 * 1024 * 1024, minimum=1024)
# A worker proves it is alive every HUB_HEARTBEAT_SECONDS; the reaper, every HUB_REAPER_INTERVAL,
# takes a job whose heartbeat is older than HUB_WORKER_LOST_AFTER back from its worker. A lost
# job is therefore noticed within HUB_WORKER_LOST_AFTER + HUB_REAPER_INTERVAL (60 s by default).
HUB_HEARTBEAT_SECONDS = env_int("HUB_HEARTBEAT_SECONDS", 5, minimum=1)
HUB_WORKER_LOST_AFTER = env_int("HUB_WORKER_LOST_AFTER", 45, minimum=2)
HUB_REAPER_INTERVAL = env_int("HUB_REAPER_INTERVAL", 15, minimum=1)
# Stored files no row names (a process killed between storing a file and writing its row) and
# unfinished multipart uploads: looked for this often, removed once this old.
# The audit log (audit/): entries older than this are removed by the reaper.
HUB_AUDIT_RETENTION_DAYS = env_int("HUB_AUDIT_RETENTION_DAYS", 365, minimum=1)
HUB_ORPHAN_SWEEP_SECONDS = env_int("HUB_ORPHAN_SWEEP_SECONDS", 3600, minimum=10)
HUB_ORPHAN_GRACE_SECONDS = env_int("HUB_ORPHAN_GRACE_SECONDS", 24 * 3600, minimum=60)
if HUB_WORKER_LOST_AFTER <= HUB_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured("HUB_WORKER_LOST_AFTER must be longer than HUB_HEARTBEAT_SECONDS.")
# An external run (a job trained elsewhere that reports here) silent this long becomes unknown
# until it reports again; hubclient reports at least every 30 s while a run is open.
HUB_EXTERNAL_SILENT_AFTER = env_int("HUB_EXTERNAL_SILENT_AFTER", 300, minimum=10)
HUB_MAX_ATTEMPTS = env_int("HUB_MAX_ATTEMPTS", 2, minimum=1, maximum=10)
# The device a worker of this machine announces (jobs/domain/devices.py): empty names it from
# its hardware ("Intel Xeon Gold 6338 (32 cores)", "NVIDIA H100 80GB HBM3"); set it to tell
# apart machines whose hardware reads the same, or to give one a name people know.
HUB_DEVICE_NAME = env_str("HUB_DEVICE_NAME", "")[:200]
# How long a worker retries its writes while the database is unreachable before it stops and
# leaves the job to be requeued (jobs.engine.outages).
HUB_DB_OUTAGE_SECONDS = env_int("HUB_DB_OUTAGE_SECONDS", 60, minimum=1)
# A pending job whose message the broker does not hold (lost in a restart, or never sent) is
# sent again once its last send is this many seconds old.
HUB_PENDING_RESEND_AFTER = env_int("HUB_PENDING_RESEND_AFTER", 30, minimum=1)
HUB_TORCH_THREADS = env_int("HUB_TORCH_THREADS", 1, minimum=1, maximum=64)
# Processes that train one customization job on a worker: 0 is one per GPU (one on a CPU
# worker); more than one runs torchrun with DistributedDataParallel (gloo on CPUs), or FSDP
# with HUB_TRAIN_STRATEGY=fsdp for a model too big for one GPU.
HUB_TRAIN_PROCESSES = env_int("HUB_TRAIN_PROCESSES", 0, minimum=0, maximum=64)
HUB_TRAIN_STRATEGY = env_str("HUB_TRAIN_STRATEGY", "ddp")
if HUB_TRAIN_STRATEGY not in ("ddp", "fsdp"):
    raise ImproperlyConfigured("HUB_TRAIN_STRATEGY must be ddp or fsdp.")
# Folders of Hugging Face models on the server that every user may fine-tune by name (a
# model folder, or a Hugging Face cache such as ~/.cache/huggingface/hub), separated by ":".
HUB_MODEL_DIRS = [p for p in env_str("HUB_MODEL_DIRS", "").split(os.pathsep) if p]
HUB_EVENT_RETENTION_HOURS = env_int("HUB_EVENT_RETENTION_HOURS", 24, minimum=1)
# Names the job queue and prefixes the live channels in Redis, so that several hubs (or a test
# run beside a developer's hub) can share one Redis without taking each other's work.
HUB_NAMESPACE = env_str("HUB_NAMESPACE", "hub")

# Sharing and email. Without HUB_EMAIL_HOST, emails are printed by the process that sends them
# (the worker), which is where a newcomer's invitation links appear.
HUB_INVITATION_DAYS = env_int("HUB_INVITATION_DAYS", 7, minimum=1, maximum=365)
HUB_INVITATIONS_PER_DAY = env_int("HUB_INVITATIONS_PER_DAY", 50, minimum=0)
EMAIL_HOST = env_str("HUB_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("HUB_EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("HUB_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = env_str("HUB_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("HUB_EMAIL_TLS", False)
EMAIL_TIMEOUT = 10
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if env_optional("HUB_EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = env_str("HUB_EMAIL_FROM", "Model Job Hub <hub@localhost>")

# Notifications (notifications/): a webhook goes only to public addresses over https, so that
# nobody can make the hub call its own network (its database, a cloud's metadata service);
# an operator whose chat server lives on the private network turns this on (http allowed too).
HUB_WEBHOOK_ALLOW_PRIVATE = env_bool("HUB_WEBHOOK_ALLOW_PRIVATE", False)

# Redis carries both the Celery queue and live events in production (jobs/live/: one pub/sub
# subscription per web process and watched job). The embedded profile needs neither server:
# Celery uses kombu's filesystem transport (a directory of message files that the web process
# writes and the worker reads), and events reach browsers from the database (jobs.domain.events
# keeps every event with its sequence number). No channel layer: sockets need none.
HUB_LIVE_VIA_REDIS = REDIS_URL is not None
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # Every broker call has a deadline: a stopped (not dead) Redis must not hang a request.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "socket_connect_timeout": 1,
        "socket_timeout": 2,  # above kombu's 1 s BRPOP wait, so an idle worker's reads are fine
    }
else:
    CELERY_BROKER_URL = "filesystem://localhost/"
    _queue_dir = DATA_DIR / "queue"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(DATA_DIR / "queue-control"),
        # Workers look for messages ten times a second, not once (kombu's default): a "Try it"
        # prompt's hop through the queue was most of its second's wait (measured 1.03 s to
        # the first token of a second prompt); a look is a directory listing.
        "polling_interval": 0.1,
    }
# The cache holds API rate limits: shared through Redis by every web process in production,
# in the one web process's memory in the embedded profile. Short timeouts: a hung Redis must
# not hang requests (the rate limits then let requests through).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{HUB_NAMESPACE}:cache",
            # Its connections consult the process's Redis circuit breaker (hubsite/redis_breaker):
            # after one timeout, requests stop waiting for a hung Redis.
            "OPTIONS": {
                "socket_connect_timeout": 1,
                "socket_timeout": 1,
                "pool_class": "hubsite.redis_breaker.GuardedPool",
            },
        }
    }
# While Redis does not answer, every caller in a process skips it (the circuit is open) and a
# probe asks Redis again this often; its first answer closes the circuit.
HUB_REDIS_RETRY_SECONDS = env_int("HUB_REDIS_RETRY_SECONDS", 5, minimum=1)
CELERY_TASK_DEFAULT_QUEUE = HUB_NAMESPACE
# The reaper gets a queue of its own, served by a small control worker: job workers may all be
# busy with long jobs exactly when one of them has died and needs reaping.
HUB_CONTROL_QUEUE = f"{HUB_NAMESPACE}.control"
# "Try it": prompts answered by a generation worker (its own queue, so a prompt never waits
# behind a training job; jobs/engine/generation.py), within these limits per person and prompt.
HUB_GENERATION_QUEUE = f"{HUB_NAMESPACE}.generate"
HUB_GENERATE_MAX_TOKENS = env_int("HUB_GENERATE_MAX_TOKENS", 256, minimum=1, maximum=8192)
HUB_GENERATE_PROMPT_CHARS = env_int("HUB_GENERATE_PROMPT_CHARS", 8000, minimum=1)
HUB_GENERATE_CONCURRENT = env_int("HUB_GENERATE_CONCURRENT", 2, minimum=1)  # queued or running
HUB_GENERATE_PER_HOUR = env_int("HUB_GENERATE_PER_HOUR", 240, minimum=1)
HUB_GENERATE_SECONDS = env_int("HUB_GENERATE_SECONDS", 60, minimum=1)  # one answer's time
# A prompt no generation worker has taken after this long fails, saying none is running.
HUB_GENERATE_WAIT_SECONDS = env_int("HUB_GENERATE_WAIT_SECONDS", 60, minimum=1)
# A generation worker keeps the models it answered with loaded for this long after their last
# prompt (at most HUB_GENERATE_MODELS_KEPT of them): the next prompt starts at once.
HUB_GENERATE_KEEP_SECONDS = env_int("HUB_GENERATE_KEEP_SECONDS", 600, minimum=0)
HUB_GENERATE_MODELS_KEPT = env_int("HUB_GENERATE_MODELS_KEPT", 2, minimum=1, maximum=64)
CELERY_TASK_ROUTES = {
    "jobs.tasks.reap_jobs": {"queue": HUB_CONTROL_QUEUE},
    "jobs.tasks.generate": {"queue": HUB_GENERATION_QUEUE},
    # Short, and due exactly when job workers may all be busy: the control worker sweeps.
    "notifications.tasks.resend_unsent": {"queue": HUB_CONTROL_QUEUE},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# Jobs are long: take one at a time, and acknowledge only when done so that a message whose
# worker died before claiming its job is delivered again. The reaper, not the broker's
# visibility timeout, deals with a job whose worker died while running it.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
# A job takes at most HUB_JOB_TIME_LIMIT from its creation (the worker stops it then); a task
# still running two minutes past that is stuck, and Celery kills it outright.
CELERY_TASK_TIME_LIMIT = HUB_JOB_TIME_LIMIT + 120
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# What a task prints (the embedded profile's console email backend prints each email) is
# information, not a warning.
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"
CELERY_BEAT_SCHEDULE = {
    "reap-jobs": {"task": "jobs.tasks.reap_jobs", "schedule": float(HUB_REAPER_INTERVAL)},
    # Notifications whose message the broker lost (or never took) are sent again.
    "resend-notifications": {"task": "notifications.tasks.resend_unsent", "schedule": 30.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("HUB_LOG_LEVEL", "INFO")},
    # django-axes logs every sign-in at INFO; its warnings (lockouts) are what operators need.
    "loggers": {
        "axes": {"level": "WARNING"},
        # A line per task received and succeeded (notifications every few seconds): the task's
        # own failures still reach the console at WARNING and ERROR.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
    },
}
