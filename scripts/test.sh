#!/usr/bin/env bash
# Set up and run every check: ruff, mypy and the test suite on PostgreSQL, SQLite and a real
# Kafka-protocol broker. Extra arguments go to pytest, e.g. `scripts/test.sh -k consumer`.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "test [${SECONDS}s]: $*"; }
step "setting up .venv (locks/test.txt)"
scripts/setup-venv.sh test
step "checking that PostgreSQL is up"
scripts/ensure-postgres.sh
step "ruff check"
.venv/bin/ruff check .
step "ruff format --check"
.venv/bin/ruff format --check .
step "mypy"
.venv/bin/mypy statistics_manager_service
step "pytest $*"
exec .venv/bin/python -m pytest "$@"
