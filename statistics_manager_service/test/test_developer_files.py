"""The developer tooling runs what CI runs: the pre-commit hooks are scripts/test.sh's checks."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEST_SCRIPT = ROOT / "scripts" / "test.sh"
PRE_COMMIT_CONFIG = ROOT / ".pre-commit-config.yaml"


def _test_script_checks() -> list[str]:
    """Return the commands of scripts/test.sh that run a tool of .venv, pytest aside."""
    lines = (line.strip() for line in TEST_SCRIPT.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line.startswith(".venv/bin/") and "pytest" not in line]


def test_pre_commit_runs_the_checks_of_the_test_script_with_the_venv_tools() -> None:
    checks = _test_script_checks()
    assert [check.split()[0] for check in checks] == [".venv/bin/ruff", ".venv/bin/ruff", ".venv/bin/mypy"]
    config = yaml.safe_load(PRE_COMMIT_CONFIG.read_text(encoding="utf-8"))
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert all(repo["repo"] == "local" for repo in config["repos"]), "hooks must use the pinned .venv tools"
    assert [hook["entry"] for hook in hooks] == checks
    for hook in hooks:
        assert hook["language"] == "system", hook["id"]
        assert hook["pass_filenames"] is False, f"{hook['id']} must check the whole tree, as CI does"


def test_git_ignores_the_sqlite_side_files() -> None:
    patterns = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert {"*.db", "*.db-journal", "*.db-wal", "*.db-shm"} <= set(patterns)
