#!/usr/bin/env bash
# Release check: audit the hashed locks with pip-audit for known vulnerabilities (docs/RELEASING.md).
# pip-audit runs from a virtualenv of its own, .venv-audit, installed from locks/audit.txt.
# Arguments name the locks to audit (default: every lock in locks/), e.g. `scripts/audit.sh runtime build`.
# --strict: a package the vulnerability service cannot answer for fails the check instead of being
# skipped, so an unreachable service never passes for a clean audit.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
step() { echo "audit [${SECONDS}s]: $*"; }
stamp=.venv-audit/.installed
digest=$(sha256sum locks/audit.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  step "installing pip-audit from locks/audit.txt into .venv-audit"
  [ -x .venv-audit/bin/python ] || "$python" -m venv .venv-audit
  .venv-audit/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r locks/audit.txt
  echo "$digest" > "$stamp"
fi
if [ "$#" -eq 0 ]; then
  for path in locks/*.txt; do
    kind=${path#locks/}
    set -- "$@" "${kind%.txt}"
  done
fi
read -r -a options <<< "${PIP_AUDIT_OPTIONS:-}"
failed=()
for kind in "$@"; do
  step "pip-audit locks/$kind.txt"
  # --disable-pip: the lock is complete and hashed, nothing needs resolving or installing.
  if ! .venv-audit/bin/pip-audit --strict --disable-pip --progress-spinner off --desc on \
    "${options[@]}" -r "locks/$kind.txt"; then
    failed+=("$kind")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  step "FAILED for: ${failed[*]}"
  exit 1
fi
step "no known vulnerabilities in: $*"
