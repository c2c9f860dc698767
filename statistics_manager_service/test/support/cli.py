"""Running the service's command line the way an operator does: a child process with a clean
environment, so that nothing of the test run's own configuration leaks into it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# `python -m statistics_manager_service` with this interpreter; commands and options follow.
SERVICE_COMMAND = (sys.executable, "-m", "statistics_manager_service")
# What a child keeps of this environment: the search path, the locale and the BLAS tuning.
KEPT_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a child: the kept variables of this one, then `extra`."""
    env = {key: value for key, value in os.environ.items() if key in KEPT_VARIABLES}
    env.update(extra)
    return env


def run_service(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 60, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run one command of the service to its end, with its output captured as text."""
    return subprocess.run(
        [*SERVICE_COMMAND, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )
