"""Shared fixtures: a private PAGEQA_HOME with the real embedded PostgreSQL + pgvector and Redis, the tiny model
set, and a real Celery worker process. Only model weights are replaced (by tiny random checkpoints)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="pageqa-test-"))
ROOT = Path(__file__).resolve().parents[1]

# Set before any pageqa module reads its settings; small pixel budgets keep the tiny models fast on a CPU.
TEST_ENV = {
    "PAGEQA_HOME": str(_HOME),
    "PAGEQA_MODELS": "tiny",
    "PAGEQA_DEVICE": "cpu",
    "PAGEQA_PAGE_MAX_PIXELS": str(400 * 500),
    "PAGEQA_RETRIEVER_MAX_PIXELS": str(48 * 28 * 28),
    "PAGEQA_RERANKER_MAX_PIXELS": str(32 * 28 * 28),
    "PAGEQA_GENERATOR_MIN_PIXELS": str(4 * 28 * 28),
    "PAGEQA_GENERATOR_MAX_PIXELS": str(32 * 28 * 28),
    "PAGEQA_MAX_NEW_TOKENS": "8",
    # the offline set's default LLM takes minutes to load on 2 cores; tests/tasks/test_offline.py runs a tiny one
    "PAGEQA_OFFLINE_GENERATOR": "extractive",
    "PAGEQA_RETRIEVE_TOP_K": "5",
    "PAGEQA_CHUNK_SIZE": "4",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(TEST_ENV)
for key in ("PAGEQA_DATABASE_URL", "PAGEQA_BROKER_URL"):
    os.environ.pop(key, None)


@pytest.fixture(scope="session")
def settings():
    """The test settings (read from the environment set above)."""
    from pageqa.settings import get_settings

    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(scope="session")
def services(settings) -> Iterator[None]:
    """Real embedded PostgreSQL (pgvector) and Redis, migrated; stopped at the end of the session."""
    from db import embedded
    from services.runtime import prepare
    from worker import broker

    prepare(settings)
    yield
    broker.stop(settings.home_dir)
    embedded.stop(settings.home_dir)


@pytest.fixture(scope="session")
def tiny_models(settings):
    """The tiny model set under PAGEQA_HOME/models/tiny, built once per session."""
    from models.tiny import make_tiny

    return make_tiny(settings.home_dir / "models" / "tiny")


def start_worker(env: dict[str, str], log_path: Path, *, beat: bool = False, timeout_s: float = 180, wrap=()):
    """A real ``pageqa worker --device cpu`` child process with environment ``env`` (``wrap``: the command that
    runs it, :func:`worker.process.spawn_worker`), once its log says ready."""
    from worker.process import spawn_worker

    since = log_path.stat().st_size if log_path.exists() else 0
    proc = spawn_worker(env=env, log_path=log_path, device="cpu", beat=beat, wrap=wrap)
    return wait_ready(proc, log_path, timeout_s=timeout_s, since=since)


def wait_ready(proc, log_path: Path, *, timeout_s: float = 180, since: int = 0):
    """``proc`` (a Celery worker child process) once its log at ``log_path`` says ``ready.`` after byte ``since``
    (the log's size before it started: a restarted worker appends to its predecessor's log); stopped, and the test
    failed with the log's tail, when it exits or ``timeout_s`` seconds pass first."""
    from worker.process import stop_worker

    deadline = time.monotonic() + timeout_s
    while b"ready." not in (log_path.read_bytes()[since:] if log_path.exists() else b""):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_worker(proc)
            pytest.fail(f"worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


@pytest.fixture(scope="session")
def worker(settings, services, tiny_models) -> Iterator[object]:
    """A real ``pageqa worker --device cpu`` process consuming the real Redis queue."""
    from worker.process import stop_worker

    log_path = settings.home_dir / "logs" / "test-worker.log"
    proc = start_worker(dict(os.environ), log_path)
    yield proc
    code = stop_worker(proc)
    assert code == 0, f"worker exited with {code}:\n{log_path.read_text()[-3000:]}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the call."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def api_process(settings, name: str) -> Iterator[str]:
    """A real ``pageqa api`` child process on a free port of 127.0.0.1 with the test environment, once it answers
    ``/v1/health``; yields its base URL and stops it at the end. Its log is ``PAGEQA_HOME/logs/NAME.log``."""
    import subprocess
    import sys

    import httpx

    port = free_port()
    log = settings.home_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", "api", "--port", str(port)], cwd=ROOT,
                                env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"pageqa api exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/v1/health", timeout=5).json()["status"] == "ok"
        except httpx.HTTPError:  # not listening yet
            return False

    try:
        wait_for(healthy, timeout_s=60, what="pageqa api to answer /v1/health")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def chromium():
    """Headless Debian chromium driven by Playwright (never a browser download of Playwright's own);
    shared by the report and API docs browser tests."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium package is not installed (.ci/run installs it: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


def wait_for(predicate, *, timeout_s: float, what: str, poll_s: float = 0.25):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def waiting_task_args(settings, queue: str, task: str, *, drain: bool = False) -> list[list[int]]:
    """The first argument (an id list) of each ``task`` message waiting in ``queue`` of the real Redis, in the
    order a worker takes them (kombu keeps one list per priority, ``queue`` then ``queue\x06\x16<p>``, p = 1..9,
    served in that order; each oldest first); ``drain`` empties the queue after reading it."""
    import base64
    import json

    import redis

    from worker import broker

    client = redis.Redis(unix_socket_path=str(broker.socket_path(settings.home_dir)))
    out = []
    lists = [queue, *(f"{queue}\x06\x16{p}" for p in range(1, 10))]
    for key in lists:
        for raw in reversed(client.lrange(key, 0, -1)):  # kombu pushes on the left and pops on the right
            message = json.loads(raw)
            assert message["headers"]["task"] == task
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            out.append(args[0])
    if drain:
        client.delete(*lists)
    return out


def run_cli(*args: str, ok: bool = True):
    """Run ``pageqa ARGS`` in-process through typer's runner; with ``ok``, fail the test unless it exits 0."""
    from typer.testing import CliRunner

    from scripts.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def pytest_sessionfinish(session, exitstatus):
    if not os.environ.get("PAGEQA_TEST_KEEP_HOME"):  # keep the worker logs of a failed run for reading
        shutil.rmtree(_HOME, ignore_errors=True)


PDF_PAGES = [
    "Apple harvest 2023: 41 tonnes",
    "Bridge inspection report: 3 cracks found",
    "Quarterly revenue rose to 12.5 million euros",
]


def make_pdf(path: Path, texts: list[str]) -> Path:
    """A PDF with one page per text, drawn with matplotlib so it has a real text layer."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    with PdfPages(path, metadata={"Title": path.stem, "CreationDate": None}) as pdf:
        for i, text in enumerate(texts):
            fig = Figure(figsize=(6, 4 + i))  # pages of different sizes
            fig.text(0.1, 0.5, text, fontsize=14)
            ax = fig.add_axes((0.1, 0.1, 0.8, 0.3))
            ax.plot(range(10), [(x * (i + 1)) % 7 for x in range(10)])
            pdf.savefig(fig)
    return path


def make_image(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> Path:
    """An image file with a coloured block and a label, format chosen by the suffix."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 10, size[0] // 2, size[1] // 2), fill=color)
    draw.text((12, size[1] - 30), path.stem, fill="black")
    img.save(path)
    return path


@pytest.fixture(scope="session")
def sample_docs(tmp_path_factory) -> dict[str, Path]:
    """A 3-page PDF and PNG, JPEG and WebP images of different sizes (one in a sub-folder)."""
    root = tmp_path_factory.mktemp("docs")
    (root / "charts").mkdir()
    return {
        "pdf": make_pdf(root / "report.pdf", PDF_PAGES),
        "png": make_image(root / "red.png", (640, 480), (200, 30, 30)),
        "jpeg": make_image(root / "charts" / "green.jpg", (300, 700), (30, 160, 30)),
        "webp": make_image(root / "charts" / "blue.webp", (900, 300), (30, 30, 200)),
        "root": root,
    }
