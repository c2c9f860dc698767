#!/usr/bin/env bash
# Regenerate every lock in locks/ from the human-edited requirement files with pip-tools
# (pip-compile --generate-hashes). Run it after changing any *requirements.txt and commit the locks
# with the change; statistics_manager_service/test/test_locks.py fails while a lock is stale.
#
# Existing pins of indirect dependencies are kept unless an input needs another version;
# `scripts/lock.sh --upgrade` moves them all to their newest releases, `-P NAME` one of them.
# The runtime lock constrains the others, so the tests run the versions the image ships.
#
# Locks are resolved for the interpreter that runs pip-compile: CPython 3.11 on Linux x86_64, the
# image's. Only the index is read (LOCK_INDEX_URL, default PyPI), never this machine's pip
# configuration, so the hashes are those of the files every other machine downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh test
.venv/bin/python - <<'PY'
import platform
import sys

found = f"{platform.python_implementation()} {platform.python_version()} on {platform.system()} {platform.machine()}"
if (platform.python_implementation(), sys.version_info[:2], platform.system(), platform.machine()) != (
    "CPython", (3, 11), "Linux", "x86_64"
):
    sys.exit(f"lock: the locks are made for CPython 3.11 on Linux x86_64, .venv has {found}")
PY

index="${LOCK_INDEX_URL:-https://pypi.org/simple}"

# lock KIND INPUT...: write locks/KIND.txt from the inputs (their -r includes are followed).
lock() {
  local kind=$1
  shift
  echo "lock: locks/$kind.txt <- $*"
  env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT -u PIP_NO_INDEX \
    PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="scripts/lock.sh" \
    .venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
    --no-emit-find-links --index-url "$index" --output-file "locks/$kind.txt" "${options[@]}" "$@"
}

options=("$@")
lock runtime build-requirements.txt requirements.txt
options=("$@" --constraint locks/runtime.txt)
lock build build-requirements.txt
lock demo build-requirements.txt demo-requirements.txt
lock test build-requirements.txt test-requirements.txt
lock benchmarks build-requirements.txt test-requirements.txt benchmarks/requirements.txt
options=("$@")
lock audit audit-requirements.txt
echo "lock: done; commit locks/ with the requirement files"
