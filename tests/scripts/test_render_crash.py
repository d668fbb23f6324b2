"""A render process that dies mid-ingest (pdfium crashing, the out-of-memory killer) breaks its whole pool; the
files in flight are rendered again alone and stored, with no error and no traceback."""

from __future__ import annotations

import logging
import signal
import threading

import psutil
import pypdfium2 as pdfium
import pytest
from conftest import make_pdf, wait_for
from sqlalchemy import func, select

from db.engine import session_scope
from db.schema import Corpus, Document, Page
from scripts.ingest import ingest_files

pytestmark = pytest.mark.timeout(300)
CORPUS = "render-crash"


def _render_process() -> psutil.Process | None:
    """The newest live render process of this test process: a child of its multiprocessing forkserver (the
    processes of a broken pool can linger there as zombies until the forkserver reaps them)."""
    for child in psutil.Process().children():
        if "forkserver" not in " ".join(child.cmdline()):
            continue
        workers = [w for w in child.children() if w.status() != psutil.STATUS_ZOMBIE]
        return max(workers, key=lambda w: w.create_time(), default=None)
    return None


def _blank_pdf(path, n_pages: int) -> None:
    """Letter pages: at 4 MP each takes about 0.2 s to render and encode, long enough to be killed mid-way."""
    doc = pdfium.PdfDocument.new()
    for _ in range(n_pages):
        doc.new_page(612, 792)
    doc.save(path)


def test_a_render_process_killed_mid_ingest_costs_no_file(settings, services, tmp_path, caplog):
    long_pdf = tmp_path / "long.pdf"
    _blank_pdf(long_pdf, 24)
    short_pdf = make_pdf(tmp_path / "short.pdf", ["after the crash", "second page"])
    slow = settings.model_copy(update={"page_max_pixels": 4_000_000, "ingest_processes": 2})  # ~0.2 s a page

    done = {}
    caplog.set_level(logging.WARNING, logger="scripts.ingest")
    thread = threading.Thread(target=lambda: done.setdefault(
        "report", ingest_files(slow, corpus=CORPUS, files=[long_pdf, short_pdf])))
    thread.start()
    victim = wait_for(_render_process, timeout_s=60, poll_s=0.005, what="a render process")
    victim.send_signal(signal.SIGKILL)
    thread.join(240)

    report = done["report"]
    assert report.errors == []
    assert [p.rsplit("/", 1)[-1] for p in report.added] == ["long.pdf", "short.pdf"] and report.pages == 26
    assert any("a render process died while" in r.getMessage() for r in caplog.records), "the kill hit a render"
    with session_scope(settings) as session:
        pages = {source: n for source, n in session.execute(
            select(Document.source, func.count(Page.id)).join(Page, Page.document_id == Document.id)
            .join(Corpus, Corpus.id == Document.corpus_id).where(Corpus.name == CORPUS).group_by(Document.source))}
    assert pages == {"long.pdf": 24, "short.pdf": 2}

