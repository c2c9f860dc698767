#!/usr/bin/env bash
# Set up and run the service on the embedded SQLite default with demo data.
# Extra arguments go to the service, e.g. `scripts/run.sh --role api` (then without --demo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh demo
if [ "$#" -eq 0 ]; then
  set -- --demo
fi
exec .venv/bin/python -m statistics_manager_service "$@"
