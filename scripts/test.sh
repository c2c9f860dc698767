#!/usr/bin/env bash
# Set up and run every check: ruff, mypy and the test suite on PostgreSQL, SQLite and a real
# Kafka-protocol broker. Extra arguments go to pytest, e.g. `scripts/test.sh -k consumer`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh test
scripts/ensure-postgres.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy statistics_manager_service
exec .venv/bin/python -m pytest "$@"
