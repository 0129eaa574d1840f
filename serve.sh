#!/usr/bin/env bash
# Runs the hub on this machine in the embedded profile: the first run sets up .venv, then the
# web server and a worker start, with a demo account and demo jobs. Ctrl-C stops everything.
# Options go to `manage.py runhub` (see --help), e.g. ./serve.sh --port 8080
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
ensure_venv
exec .venv/bin/python manage.py runhub "$@"
