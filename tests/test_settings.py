"""Settings come from the environment, through helpers that fail loudly."""

import secrets
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from hubsite import env
from tests.helpers import ROOT, child_env, manage


def test_env_readers_name_the_variable_at_fault(monkeypatch):
    monkeypatch.setenv("HUB_X", "maybe")
    with pytest.raises(ImproperlyConfigured, match="HUB_X must be true or false"):
        env.env_bool("HUB_X", False)
    monkeypatch.setenv("HUB_X", "12s")
    with pytest.raises(ImproperlyConfigured, match="HUB_X must be a whole number, not '12s'"):
        env.env_int("HUB_X", 1)
    monkeypatch.setenv("HUB_X", "5")
    with pytest.raises(ImproperlyConfigured, match="HUB_X must be at least 10"):
        env.env_int("HUB_X", 60, minimum=10)
    monkeypatch.delenv("HUB_X")
    with pytest.raises(ImproperlyConfigured, match="Set the environment variable HUB_X"):
        env.env_str("HUB_X")


def test_env_readers_parse_good_values(monkeypatch):
    monkeypatch.setenv("HUB_X", " On ")
    assert env.env_bool("HUB_X", False) is True
    monkeypatch.setenv("HUB_X", "a.example, b.example ,")
    assert env.env_list("HUB_X", []) == ["a.example", "b.example"]
    monkeypatch.setenv("HUB_X", "42")
    assert env.env_int("HUB_X", 1, minimum=1, maximum=100) == 42


def _settings_in_child(**variables: str):
    import subprocess

    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.HUB_PROFILE, settings.DATABASES['default']['ENGINE'])"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=child_env(**variables),
        capture_output=True,
        text=True,
    )


def test_embedded_profile_needs_no_variables(tmp_path):
    result = _settings_in_child(HUB_DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["embedded", "django.db.backends.sqlite3"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_production_profile_refuses_to_start_without_a_secret_key(tmp_path):
    result = _settings_in_child(HUB_DATA_DIR=str(tmp_path), REDIS_URL="redis://127.0.0.1:6379/0")
    assert result.returncode != 0
    assert "Set HUB_SECRET_KEY" in result.stderr


@pytest.mark.parametrize(
    ("variables", "words"),
    [
        ({"DATABASE_URL": "mysql://u@h/db"}, "must name PostgreSQL"),
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL"),
        ({"HUB_BASE_URL": "hub.example.com"}, "HUB_BASE_URL must be an http(s) address"),
        ({"HUB_JOB_TIME_LIMIT": "soon"}, "HUB_JOB_TIME_LIMIT must be a whole number"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_it(tmp_path, variables, words):
    result = _settings_in_child(HUB_DATA_DIR=str(tmp_path), **variables)
    assert result.returncode != 0
    assert words in result.stderr


def test_production_profile_passes_the_deploy_checklist(tmp_path):
    """``check --deploy`` is clean with the variables the README documents for production."""
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env=child_env(
            HUB_DATA_DIR=str(tmp_path),
            DATABASE_URL="postgres://hub:hub@127.0.0.1:5432/hub",
            REDIS_URL="redis://127.0.0.1:6379/0",
            HUB_SECRET_KEY=secrets.token_urlsafe(50),
            HUB_BASE_URL="https://hub.example.com",
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
