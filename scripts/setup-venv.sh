#!/usr/bin/env bash
# Create .venv and install the pinned requirements: "runtime", "demo" (runtime + the PV model of the
# demo data) or "test" (everything, with the test tools).
# Re-running is cheap: nothing is reinstalled while the requirement files are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-runtime}"
python="${PYTHON:-python3}"
requirements=requirements.txt
[ "$kind" = "demo" ] && requirements=demo-requirements.txt
[ "$kind" = "test" ] && requirements=test-requirements.txt
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$kind"
digest=$(cat requirements.txt service-specific-requirements.txt demo-requirements.txt "$requirements" setup.py | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$digest" > "$stamp"
fi
