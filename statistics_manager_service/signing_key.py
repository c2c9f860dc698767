"""The bearer-token signing key: refuse public and weak keys; keep one per SQLite data directory."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

# Beside the SQLite database: one generated key per data directory, reused on restart.
KEY_FILE_NAME = "statistics-manager.jwt-key"
GENERATED_KEY_BYTES = 64
GENERATE_HINT = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(64))"'
# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
MINIMUM_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
# A key made of a handful of characters repeated ("kkkk…") is typed, not generated.
MINIMUM_DISTINCT_CHARACTERS = 8
PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-me", "replaceme", "placeholder")
# SHA-256 of keys that are public because this repository printed them at some point: the former
# development default, the placeholders of Docker-compose/.env.example and the Kubernetes secret,
# and the former fixed test and benchmark keys. Only digests are kept, so this list adds no key.
PUBLIC_KEY_SHA256 = frozenset(
    {
        "3777eacf63fb24df8439abf79ec234f4b8628db2555777096d754fc3fac8b0ff",
        "359d31be2a959edf4cf4231eda8f7ecc531b96db710151996242860213a7fac9",
        "52803187c7b26dbe0632abaf3e04bd1351c85f5670333eff7b06a1a2955ca710",
        "a268e47c2aabfd8c9e6eac615564d426d33f08bcd7fd2789315517676987a97f",
        "5dcd7e61fc383bdca31aa3d8e40da46dbbb4c2277ecf01fec99b4a3061d0a636",
        "7899449c7fc3b2585881d54233179b1ea77094fbea55ce48a92705a24a2c8e38",
        "dbe42deeffe6cbe5170672c578411879343266c5dea2cf09c8c7faf6091c9088",
    }
)


def key_problem(key: str, algorithm: str) -> str | None:
    """Return why `key` must not sign tokens with `algorithm`, or None when it may."""
    if not key:
        return f"JWT_SIGN_KEY is empty; {GENERATE_HINT}"
    if hashlib.sha256(key.encode("utf-8")).hexdigest() in PUBLIC_KEY_SHA256:
        return (
            "JWT_SIGN_KEY is a key published in this project's repository (a default, placeholder or "
            f"example), so anyone could sign tokens with it; {GENERATE_HINT}"
        )
    if any(marker in key.lower() for marker in PLACEHOLDER_MARKERS):
        return f"JWT_SIGN_KEY is still a placeholder; {GENERATE_HINT}"
    minimum = MINIMUM_KEY_BYTES.get(algorithm, max(MINIMUM_KEY_BYTES.values()))
    size = len(key.encode("utf-8"))
    if size < minimum:
        return f"JWT_SIGN_KEY has {size} bytes; {algorithm} needs at least {minimum}; {GENERATE_HINT}"
    if len(set(key)) < MINIMUM_DISTINCT_CHARACTERS:
        return f"JWT_SIGN_KEY repeats only {len(set(key))} distinct characters; {GENERATE_HINT}"
    return None


def key_file_for(database_url: str) -> Path | None:
    """Return where the generated key of a SQLite file database lives (None for other databases)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).resolve().parent / KEY_FILE_NAME


def embedded_signing_key(database_url: str) -> str:
    """Return the signing key of the embedded SQLite database, generating it on first use.

    A file database keeps its key in a file of mode 0600 beside it, so every server process and
    every restart signs and verifies with the same key; an in-memory database gets a fresh one.
    """
    path = key_file_for(database_url)
    if path is None:
        return secrets.token_urlsafe(GENERATED_KEY_BYTES)
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write the whole key under a private name, then link it into place: a process starting at
    # the same moment either wins the link or reads the complete key of the one that did.
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as draft_file:
            draft_file.write(secrets.token_urlsafe(GENERATED_KEY_BYTES) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        else:
            logger.info("generated a bearer-token signing key in %s", path)
    finally:
        draft.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("%s is readable by other users (mode %o); chmod 600 it", path, mode)
    return path.read_text(encoding="ascii").strip()
