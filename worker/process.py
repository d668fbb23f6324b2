"""Running a worker as a child process (for ``pageqa demo`` and the tests): started with the same settings
through the environment, stopped with a warm shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pageqa.settings import Settings


def spawn_worker(
    *, env: dict[str, str], log_path: Path, device: str = "cpu", gpu: int | None = None, beat: bool = False,
    wrap: Sequence[str] = (),
) -> subprocess.Popen:
    """Start a worker (``python -m worker``, what ``pageqa worker`` runs) in a child process writing its log to
    ``log_path`` (``beat``: with the reconciler's beat schedule).

    ``env`` is the child's whole environment (pass ``PAGEQA_*`` there). ``wrap`` is a command that runs the worker
    and becomes it with ``exec`` (e.g. ``ip netns exec NS``, ``taskset -c 2``), so the handle is still the worker's.
    Returns the process handle.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = [*wrap, sys.executable, "-m", "worker", "--loglevel", "INFO"]
    args += ["--gpu", str(gpu)] if gpu is not None else ["--device", device]
    args += ["--beat"] if beat else []
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


@contextmanager
def running_worker(settings: Settings, *, log_name: str) -> Iterator[Callable[[], bool]]:
    """A worker child process for ``settings`` (model set, offline answerer, home, queue, device) for the duration of the block;
    yields a function telling whether it is still alive. The log goes to ``PAGEQA_HOME/logs/<log_name>.log``."""
    env = {
        **os.environ, "PAGEQA_HOME": str(settings.home_dir), "PAGEQA_MODELS": settings.models,
        "PAGEQA_WORKER_QUEUE": settings.worker_queue, "PAGEQA_OFFLINE_GENERATOR": settings.offline_generator,
    }
    proc = spawn_worker(env=env, log_path=settings.home_dir / "logs" / f"{log_name}.log", device=settings.device)
    try:
        yield lambda: proc.poll() is None
    finally:
        stop_worker(proc)
