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
# promtool (Debian package prometheus) checks and unit-tests the alert rules; without it, and
# without root to install it, those tests are skipped and say why.
if ! command -v promtool >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null
fi
step "ruff check"
.venv/bin/ruff check .
step "ruff format --check"
.venv/bin/ruff format --check .
step "mypy"
.venv/bin/mypy statistics_manager_service
step "pytest $*"
exec .venv/bin/python -m pytest "$@"
