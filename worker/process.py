"""Running a worker as a child process (for ``pageqa demo`` and the tests): started with the same settings
through the environment, stopped with a warm shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def spawn_worker(*, env: dict[str, str], log_path: Path, device: str = "cpu", gpu: int | None = None) -> subprocess.Popen:
    """Start ``pageqa worker`` in a child process writing its log to ``log_path``.

    ``env`` is the child's whole environment (pass ``PAGEQA_*`` there). Returns the process handle.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "scripts.cli", "worker", "--loglevel", "INFO"]
    args += ["--gpu", str(gpu)] if gpu is not None else ["--device", device]
    with log_path.open("ab") as log:
        return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(proc: subprocess.Popen, *, timeout_s: float = 30.0) -> int:
    """SIGTERM (Celery's warm shutdown: the current task finishes), then SIGKILL after ``timeout_s`` seconds.

    Returns the exit code.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode
