"""The signing key: generated once per data directory, and never a key written in the repository."""

from __future__ import annotations

import ast
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from statistics_manager_service.config import ConfigurationError, Settings
from statistics_manager_service.signing_key import KEY_FILE_NAME, key_problem
from statistics_manager_service.test.conftest import REPO_ROOT, TEST_JWT_KEY
from statistics_manager_service.test.support.cli import run_service

SKIPPED_DIRECTORIES = {".git", ".venv", "venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
SKIPPED_DIRECTORIES |= {".hypothesis", "build", "dist", "node_modules"}
# `JWT_SIGN_KEY=value`, `JWT_SIGN_KEY: "value"`, `"JWT_SIGN_KEY": "value"` in any text file.
ASSIGNED_IN_TEXT = re.compile(r"""JWT_SIGN_KEY["']?\s*[:=]\s*["']?([^"'\s#,}]+)""", re.IGNORECASE)
KEY_NAMES = re.compile(r"jwt_sign_key|jwt_key", re.IGNORECASE)


def _repository_files() -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(REPO_ROOT):
        subdirectories[:] = [
            d for d in subdirectories if d not in SKIPPED_DIRECTORIES and not d.endswith(".egg-info")
        ]
        for name in files:
            path = Path(directory) / name
            if path.stat().st_size < 2_000_000:
                yield path


def _constant(node: ast.expr) -> str | None:
    """Fold a string built from literals (`"a" + "b" * 3`); None when it is computed at run time."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp):
        left, right = _constant(node.left), _constant(node.right)
        if isinstance(node.op, ast.Add) and left is not None and right is not None:
            return left + right
        if isinstance(node.op, ast.Mult) and isinstance(node.right, ast.Constant) and left is not None:
            return left * int(node.right.value)  # type: ignore[arg-type]
    return None


def _python_keys(source: str) -> Iterator[str]:
    """Literal values given to names, keywords or dictionary keys that hold a signing key."""
    for node in ast.walk(ast.parse(source)):
        pairs: list[tuple[str, ast.expr]] = []
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            pairs += [(ast.unparse(target), node.value) for target in targets if node.value is not None]
        elif isinstance(node, ast.keyword) and node.arg:
            pairs.append((node.arg, node.value))
        elif isinstance(node, ast.Dict):
            pairs += [
                (ast.unparse(k), v) for k, v in zip(node.keys, node.values, strict=True) if k is not None
            ]
        for name, value in pairs:
            literal = _constant(value)
            if KEY_NAMES.search(name) and literal:
                yield literal


def keys_written_in_the_repository() -> dict[str, set[str]]:
    """Every key-like string the repository assigns to the signing-key setting, with its files."""
    found: dict[str, set[str]] = {}
    for path in _repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        keys = set(_python_keys(text)) if path.suffix == ".py" else set()
        keys |= {m.group(1) for m in ASSIGNED_IN_TEXT.finditer(text) if path.suffix != ".py"}
        for key in keys:
            if key.startswith(("$", "<", "{")) or (key.isidentifier() and key.isupper()):
                continue  # a variable reference (`${JWT_SIGN_KEY:?…}`, `TEST_JWT_KEY`), not a key
            found.setdefault(key, set()).add(str(path.relative_to(REPO_ROOT)))
    return found


def test_every_key_written_in_the_repository_is_refused() -> None:
    found = keys_written_in_the_repository()
    # The scan sees the shipped placeholders (so it cannot pass by finding nothing).
    assert any("Docker-compose/.env.example" in files for files in found.values()), found
    assert any("deploy/kubernetes/secrets.env.example" in files for files in found.values()), found
    for key, files in found.items():
        for algorithm in ("HS256", "HS384", "HS512"):
            assert key_problem(key, algorithm) is not None, f"{key!r} in {sorted(files)} is accepted"
    assert TEST_JWT_KEY not in found  # the tests sign with a key generated for this session


@pytest.mark.parametrize(
    "key",
    [
        "change-me-statistics-manager-development-key",  # the former embedded default
        "replace-me-with-a-long-random-secret-0123456789",  # the former .env.example placeholder
        "statistics-manager-test-signing-key-" + "0123456789abcdef" * 3,  # the former test key
        "CHANGE-ME",
        "k" * 64,
        "replace-me-" + secrets.token_urlsafe(64),
    ],
    ids=["development", "env-example", "old-test-key", "kubernetes", "repeated", "placeholder"],
)
def test_public_placeholder_and_weak_keys_are_refused_at_start(key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"JWT_SIGN_KEY .*generate one with"):
        Settings.from_env(
            {"JWT_SIGN_KEY": key, "DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}, dotenv_path=None
        )


@pytest.mark.parametrize(("algorithm", "minimum"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_keys_shorter_than_the_hash_are_refused(algorithm: str, minimum: int) -> None:
    key = secrets.token_hex(minimum)[:minimum]
    assert key_problem(key, algorithm) is None
    assert f"needs at least {minimum}" in (key_problem(key[:-1], algorithm) or "")
    settings = Settings(database_url="postgresql://db/s", jwt_sign_key=key[:-1], jwt_sign_algorithm=algorithm)
    with pytest.raises(
        ConfigurationError, match=f"{minimum - 1} bytes; {algorithm} needs at least {minimum}"
    ):
        settings.validate()


def test_the_embedded_default_generates_one_private_key_per_data_directory(tmp_path: Path) -> None:
    first = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/a/statistics.db"}, dotenv_path=None)
    key_file = tmp_path / "a" / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == first.jwt_sign_key
    assert key_problem(first.jwt_sign_key, "HS512") is None
    again = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/a/statistics.db"}, dotenv_path=None)
    assert again.jwt_sign_key == first.jwt_sign_key  # a restart keeps accepting issued tokens
    other = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/b/statistics.db"}, dotenv_path=None)
    assert other.jwt_sign_key != first.jwt_sign_key
    explicit = secrets.token_urlsafe(64)
    chosen = Settings.from_env(
        {"DATABASE_URL": f"sqlite:///{tmp_path}/c/statistics.db", "JWT_SIGN_KEY": explicit}, dotenv_path=None
    )
    assert chosen.jwt_sign_key == explicit
    assert not (tmp_path / "c" / KEY_FILE_NAME).exists()


def test_the_token_command_signs_with_the_data_directory_key(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    issued = run_service("token", "--service", cwd=tmp_path, env=env, check=True)
    token = issued.stdout.strip()
    key = (tmp_path / KEY_FILE_NAME).read_text().strip()
    assert jwt.decode(token, key, algorithms=["HS512"])["role"] == "service"
    assert token not in issued.stderr
