"""/metrics of the running service: process metrics of every server process, the build, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from statistics_manager_service.build import package_version
from statistics_manager_service.metrics import process_ids
from statistics_manager_service.test.support.cli import SERVICE_COMMAND, clean_env
from statistics_manager_service.test.test_main import _free_port, _get, _wait_for

REVISION = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
PROCESS_METRICS = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds")


def _scrape(base: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of one scrape."""
    status, body = _get(f"{base}/metrics")
    assert status == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _children(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children |= {int(child) for child in (task / "children").read_text().split()}
    return children


def _reported_pids(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> set[int]:
    return {int(labels["pid"]) for labels, _ in samples.get(name, [])}


def _start(tmp_path: Path, workers: str, **extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [*SERVICE_COMMAND],
        cwd=tmp_path,
        env=clean_env(PORT=str(port), HOST="127.0.0.1", WEB_WORKERS=workers, GIT_REVISION=REVISION, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    _wait_for(f"{base}/api/statistics/health", process)
    return process, base


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_one_server_process_exports_its_process_metrics_and_build(tmp_path: Path) -> None:
    process, base = _start(tmp_path, "1")
    try:
        samples = _scrape(base)
    finally:
        _stop(process)
    for name in PROCESS_METRICS:
        ((labels, value),) = samples[name]
        assert labels == {} and value > 0, name
    build = [labels for labels, value in samples["statistics_build_info"] if value == 1]
    assert build == [{"version": package_version(), "revision": REVISION}]


def test_every_server_process_reports_its_process_metrics_and_a_killed_one_leaves(tmp_path: Path) -> None:
    """With several server processes each scrape is answered by one of them, yet it reports the
    CPU and memory of all of them (by pid), and forgets a process once it has died."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    process, base = _start(tmp_path, "2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    try:
        servers = _children(process.pid) & set(process_ids(str(metrics_dir))[0])
        assert len(servers) == 2, "two server processes write metrics"
        expected = {process.pid, *servers}
        # Each scrape is answered by either server process: every answer covers them all.
        for _ in range(4):
            samples = _scrape(base)
            for name in PROCESS_METRICS:
                assert _reported_pids(samples, name) == expected, name
            assert all(value > 0 for _, value in samples["process_resident_memory_bytes"])
        build = {(labels["version"], labels["revision"]) for labels, _ in samples["statistics_build_info"]}
        assert build == {(package_version(), REVISION)}

        killed = min(servers)
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                samples = _scrape(base)
            except OSError:  # the killed process held this connection
                continue
            if killed not in _reported_pids(samples, "process_cpu_seconds_total"):
                break
            time.sleep(0.2)
        reported = _reported_pids(samples, "process_cpu_seconds_total")
        assert killed not in reported and process.pid in reported
        assert not list(metrics_dir.glob(f"gauge_live*_{killed}.db")), "the dead process's live gauges stay"
    finally:
        _stop(process)
    output = process.stdout.read().decode() if process.stdout else ""
    assert "Traceback" not in output, output


def test_process_ids_tells_live_processes_from_gone_ones(tmp_path: Path) -> None:
    for name in ("counter_12.db", "gauge_livesum_12.db", "histogram_34.db", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / f"gauge_livemax_{gone.pid}.db").write_bytes(b"")
    # A process that ended but that its parent has not reaped yet (a zombie) is gone too.
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not end"
        time.sleep(0.05)
    (tmp_path / f"gauge_livesum_{zombie.pid}.db").write_bytes(b"")
    try:
        alive, dead = process_ids(str(tmp_path))
    finally:
        zombie.wait()
    assert os.getpid() in alive and gone.pid in dead and zombie.pid in dead
    assert set(alive) | set(dead) == {12, 34, os.getpid(), gone.pid, zombie.pid}
