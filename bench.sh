#!/usr/bin/env bash
# The hub beside MLflow and beside the floor (PostgreSQL COPY) on this machine, in one go, on the
# production profile (PostgreSQL and Redis, started here if they are not running).
# Usage: ./bench.sh [--quick] [--json FILE] [--no-mlflow]     (see benchmarks/bench.py)
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
ensure_venv dev
source scripts/services.sh
start_services
exec .venv/bin/python benchmarks/bench.py "$@"
