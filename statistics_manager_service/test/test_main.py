"""The run command: starts with no configuration, serves, stops gracefully; db and token commands."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import pytest
from alembic.script import ScriptDirectory

from statistics_manager_service.storage.migrate import alembic_config
from statistics_manager_service.test.conftest import TEST_JWT_KEY
from statistics_manager_service.test.support.cli import SERVICE_COMMAND, clean_env, run_service


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _wait_for(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the service exited early:\n{process.stdout.read().decode() if process.stdout else ''}"
            )
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_run_command_serves_on_the_embedded_default_and_stops_on_sigterm(
    tmp_path: Path, workers: str
) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [*SERVICE_COMMAND],
        cwd=tmp_path,
        env=clean_env(PORT=str(port), HOST="127.0.0.1", WEB_WORKERS=workers),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/api/statistics/health", process)
        assert (tmp_path / "statistics.db").is_file()
        assert _get(f"{base}/api/statistics/ready")[0] == 200
        assert b"swagger" in _get(f"{base}/api/statistics/ui/")[1].lower()
        assert b'"openapi"' in _get(f"{base}/api/statistics/openapi.json")[1]
        status, metrics = _get(f"{base}/metrics")
        assert status == 200 and b"statistics_http_requests_total" in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read().decode() if process.stdout else ""
    assert "Traceback" not in output


def test_server_database_with_the_default_key_is_refused(tmp_path: Path) -> None:
    result = run_service(cwd=tmp_path, env=clean_env(DATABASE_URL="postgresql://127.0.0.1/none"))
    assert result.returncode == 2
    assert "JWT_SIGN_KEY" in result.stderr


def test_db_upgrade_and_token_commands(postgres_url: str, tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=postgres_url, JWT_SIGN_KEY=TEST_JWT_KEY)
    upgrade = run_service("db", "upgrade", cwd=tmp_path, env=env)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "schema revision: " in upgrade.stdout
    token = run_service("token", "--user-id", "abcdefghij", cwd=tmp_path, env=env)
    assert token.returncode == 0, token.stderr
    claims = jwt.decode(token.stdout.strip(), TEST_JWT_KEY, algorithms=["HS512"])
    assert claims["sub"] == "abcdefghij"


def test_an_unreachable_database_at_start_is_one_clear_line(tmp_path: Path) -> None:
    result = run_service(
        "--role",
        "worker",
        cwd=tmp_path,
        env=clean_env(
            DATABASE_URL="postgresql+psycopg2://postgres@127.0.0.1:1/none", JWT_SIGN_KEY=TEST_JWT_KEY
        ),
    )
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1].startswith("database unavailable:")
    assert "Traceback" not in result.stderr


def test_db_upgrade_logs_each_migration_it_applies_as_json(tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}", LOG_FORMAT="json")

    def upgrade() -> list[dict[str, str]]:
        result = run_service("db", "upgrade", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stderr.splitlines()]  # nothing but JSON

    applied = [line for line in upgrade() if line.get("migration") == "upgrade"]
    revisions = [
        script.revision
        for script in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
    ]
    assert [line["revision"] for line in applied] == revisions
    assert applied[0]["description"] == "initial schema"
    assert all(line["description"] and line["level"] == "INFO" for line in applied)
    assert [line for line in upgrade() if "migration" in line] == []  # nothing left to apply
