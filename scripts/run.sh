#!/usr/bin/env bash
# Set up and run the service on the embedded SQLite default with demo data.
# Extra arguments go to the service, e.g. `scripts/run.sh --role api` (then without --demo).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "run [${SECONDS}s]: setting up .venv (locks/demo.txt)"
scripts/setup-venv.sh demo
if [ "$#" -eq 0 ]; then
  set -- --demo
fi
echo "run [${SECONDS}s]: starting python -m statistics_manager_service $*"
exec .venv/bin/python -m statistics_manager_service "$@"
