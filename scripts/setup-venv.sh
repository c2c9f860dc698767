#!/usr/bin/env bash
# Create .venv and install pip and one of the hashed locks in locks/, then the package (editable):
# "runtime", "demo" (runtime + the PV model of the demo data), "test" (everything, with the test
# tools) or "benchmarks" (test + what the benchmarks add). The locks are made by scripts/lock.sh.
# Re-running is cheap: nothing is reinstalled while the lock and setup.py are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-runtime}"
python="${PYTHON:-python3}"
case "$kind" in
  runtime | demo | test | benchmarks) ;;
  *)
    echo "setup-venv: unknown kind '$kind' (runtime, demo, test or benchmarks)" >&2
    exit 2
    ;;
esac
lock="locks/$kind.txt"
stamp=".venv/.installed-$kind"
digest=$(cat locks/build.txt "$lock" setup.py | sha256sum | cut -d' ' -f1)
step() { echo "setup-venv [$kind, ${SECONDS}s]: $*"; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
  step ".venv is up to date with $lock"
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $("$python" --version 2>&1)"
  "$python" -m venv .venv
fi
# The locked pip first: it installs the rest faster than the one venv bundles.
step "installing pip and setuptools from locks/build.txt"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r locks/build.txt
step "installing the $(grep -c -E '^[A-Za-z0-9]' "$lock") packages of $lock (hash-checked)"
.venv/bin/python -m pip install --disable-pip-version-check --require-hashes -r "$lock"
step "installing the package (editable, with the locked setuptools)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "$digest" > "$stamp"
step "done"
