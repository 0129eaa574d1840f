#!/usr/bin/env bash
# Runs the whole test suite: lint, format, types, migrations, then pytest.
# With DATABASE_URL and REDIS_URL set (as .ci/run does) the tests use those real servers; without
# them the suite runs on the embedded profile and lists the production-only tests it skipped.
# Arguments go to pytest, e.g. ./test.sh tests/test_status_machine.py -x
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
ensure_venv dev
export DJANGO_SETTINGS_MODULE=hubsite.settings.test

echo "== ruff check";  .venv/bin/ruff check .
echo "== ruff format"; .venv/bin/ruff format --check .
echo "== mypy";        .venv/bin/mypy .
echo "== migrations";  .venv/bin/python manage.py makemigrations --check --dry-run
echo "== layers";      .venv/bin/lint-imports --no-cache
echo "== pytest";      .venv/bin/python -m pytest "$@"
