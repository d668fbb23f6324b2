"""Ingest: PDFs, PNG/JPEG/WebP images and folders of them, into a corpus.

Pages are rasterised and compressed in a pool of ``ingest_processes`` render processes
(:mod:`services.ingest.render`). The calling process keeps file order: it stores a document with its pages in one
transaction once every range is back, so a bad file never loses what was stored before it, and with
``enqueue=True`` queues the new pages for indexing right away, so the GPU workers embed while the next documents
are rendered. Duplicates (same sha256 in the corpus) are skipped before rendering.

Hostile input is refused per file with a one-line error naming it (and the 1-based page): encrypted, truncated
and page-less PDFs, files over ``max_document_bytes`` (refused before they are read), images over
``max_image_pixels`` (decompression bombs, refused before decoding), files whose bytes do not match their
extension, a file whose render process dies even when rendered alone. Page boxes of any size render within
``page_max_pixels``. A file another ingest stores while this one renders it counts as a duplicate.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from db import corpus as corpus_db
from db import pages as pages_db
from db.engine import session_scope
from pageqa.errors import DuplicateDocumentError, InputError
from pageqa.settings import Settings
from services.ingest.inputs import content_problem, pdf_outline, read_document
from services.ingest.render import (
    RenderSpec,
    page_ranges,
    read_image,
    render_pdf_pages,
    render_pool,
)
from worker.queue import enqueue_indexing

log = logging.getLogger(__name__)

RENDER_DIED = ("its render process died, and again when it was rendered alone (a PDF that crashes pdfium, or memory "
               "ran out): not stored")
PAGES_IN_FLIGHT_PER_PROCESS = 32  # ≈ 150 KB each once compressed: bounds the parent's memory on big folders


@dataclass
class IngestReport:
    """What an ingest did: documents added and skipped as duplicates, pages added, one-line errors per bad file,
    and the page ids it queued for indexing (``enqueue=True`` only)."""

    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    pages: int = 0
    errors: list[str] = field(default_factory=list)
    queued_page_ids: list[int] = field(default_factory=list)


@dataclass
class _InFlight:
    """A file in the pipeline: its render tasks in page order, or the error or duplicate found before rendering."""

    path: Path
    futures: list[Future] = field(default_factory=list)
    sha256: str = ""
    title: str = ""
    size_bytes: int = 0
    n_pages: int = 0
    duplicate: bool = False
    error: str | None = None
    pool: ProcessPoolExecutor | None = None  # the pool its tasks went to: a dead render process breaks a whole pool

    def done(self) -> bool:
        return all(f.done() for f in self.futures)


def ingest_files(settings: Settings, *, corpus: str, files: Sequence[Path], report: IngestReport | None = None,
                 on_file: Callable[[Path], None] | None = None, enqueue: bool = False, tenant: str = "default",
                 names: Mapping[Path, str] | None = None) -> IngestReport:
    """Store each file as a document of the tenant's ``corpus`` (created when missing); errors are collected, not
    raised. A document is named by its file name, or by ``names[path]`` when given (uploads are stored under
    server-made names; the user's name is what questions refer to).

    ``on_file(path)`` is called after each file, in file order (for progress bars). With ``enqueue``, the pages of
    each stored document are queued for indexing once committed, in tasks of ``embed_task_pages`` pages as at
    ``embed_and_wait`` (pages short of a full task wait for the next document, or the end); they are listed in
    ``report.queued_page_ids``.
    """
    report = report or IngestReport()
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_or_create_corpus(session, name=corpus, tenant=tenant).id
    processes = settings.ingest_processes or os.cpu_count() or 1
    pipeline = _Pipeline(settings, corpus_id, processes, report, on_file, enqueue)
    pipeline.names = dict(names or {})
    try:
        for path in files:
            pipeline.add(path)
        pipeline.drain()
    finally:
        pipeline.pool.shutdown(cancel_futures=True)
    return report


class _Pipeline:
    """Files between the render pool and the database, in file order; at most ``PAGES_IN_FLIGHT_PER_PROCESS``
    pages per process wait, unless one document alone has more."""

    def __init__(self, settings: Settings, corpus_id: int, processes: int, report: IngestReport,
                 on_file: Callable[[Path], None] | None, enqueue: bool):
        self.settings, self.corpus_id, self.processes, self.report = settings, corpus_id, processes, report
        self.on_file, self.to_queue = on_file, [] if enqueue else None
        self.spec = RenderSpec.of(settings)
        self.pool = render_pool(processes)
        self.window: deque[_InFlight] = deque()
        self.names: dict[Path, str] = {}

    def add(self, path: Path) -> None:
        """Start rendering ``path``; store the files ahead of it that are done, or must be to bound memory."""
        self.window.append(self._start(path))
        max_pages = PAGES_IN_FLIGHT_PER_PROCESS * self.processes
        while self.window and (self.window[0].done() or sum(f.n_pages for f in self.window) > max_pages):
            self._finish(self.window.popleft())

    def drain(self) -> None:
        """Store every file still in flight, then queue the pages short of a full task."""
        while self.window:
            self._finish(self.window.popleft())
        if self.to_queue:
            self._queue(partial=True)

    def _start(self, path: Path) -> _InFlight:
        """Hash the file; skip it when the corpus (or a file in flight) has it, else submit its page ranges."""
        item = _InFlight(path)
        try:
            data = read_document(path, self.settings.max_document_bytes)
        except InputError as exc:
            item.error = str(exc)
            return item
        if (problem := content_problem(path, data)) is not None:
            item.error = str(InputError(problem, source=str(path)))
            return item
        item.sha256, item.size_bytes = hashlib.sha256(data).hexdigest(), len(data)
        with session_scope(self.settings) as session:
            stored = corpus_db.find_document(session, corpus_id=self.corpus_id, sha256=item.sha256) is not None
        if stored or any(other.sha256 == item.sha256 for other in self.window):
            item.duplicate = True
        elif path.suffix.lower() != ".pdf":
            item.title, item.n_pages = Path(self.names.get(path, path.name)).stem, 1
            self._submit(item)
        else:
            try:
                item.title, item.n_pages = pdf_outline(path, data)
                if path in self.names and item.title == path.stem:  # no title in the PDF: the user's file name
                    item.title = Path(self.names[path]).stem
            except InputError as exc:
                item.error = str(exc)
                return item
            self._submit(item)
        return item

    def _submit(self, item: _InFlight) -> None:
        """Send the file's render tasks to the pool, a fresh one if a render process that died broke it."""
        try:
            item.futures, item.pool = self._render_tasks(self.pool, item), self.pool
        except BrokenProcessPool:
            self._replace_pool()
            item.futures, item.pool = self._render_tasks(self.pool, item), self.pool

    def _render_tasks(self, pool: ProcessPoolExecutor, item: _InFlight) -> list[Future]:
        if item.path.suffix.lower() != ".pdf":
            return [pool.submit(read_image, item.path, self.spec)]
        return [pool.submit(render_pdf_pages, item.path, first, stop, self.spec)
                for first, stop in page_ranges(item.n_pages, self.processes)]

    def _replace_pool(self) -> None:
        # Never wait on a broken pool: joining its management thread is where an earlier version hung in CI; the
        # executor terminates the processes of a broken pool itself.
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = render_pool(self.processes)

    def _rendered(self, item: _InFlight) -> list[corpus_db.PageRecord]:
        """The file's pages, waiting for its render tasks.

        A render process that dies (a PDF that crashes pdfium, the kernel's out-of-memory killer) breaks its whole
        pool, and every file in flight there with it. The pool is replaced, and each such file is rendered again
        alone, in a pool of one process of its own: a file whose lone render process dies too is the cause.

        Raises:
            InputError: the file cannot be rendered, or its render process died again when it was alone.
        """
        try:
            return [page for future in item.futures for page in future.result()]
        except BrokenProcessPool:
            log.warning("a render process died while %s was in flight; rendering it again alone", item.path)
        if item.pool is self.pool:
            self._replace_pool()
        alone = render_pool(1)
        try:
            return [page for future in self._render_tasks(alone, item) for page in future.result()]
        except BrokenProcessPool:
            raise InputError(RENDER_DIED, source=str(item.path)) from None
        finally:
            alone.shutdown(wait=False, cancel_futures=True)

    def _finish(self, item: _InFlight) -> None:
        """Store a file once all its pages are rendered (waiting for them), or report why it is not stored."""
        pages: list[corpus_db.PageRecord] = []
        if item.error is None and not item.duplicate:
            try:
                pages = self._rendered(item)
            except InputError as exc:  # raised in a render process; it pickles with its one-line message
                item.error = str(exc)
            except OSError as exc:
                item.error = str(InputError(f"cannot read ({exc.strerror or exc})", source=str(item.path)))
        if item.error is not None:
            self.report.errors.append(item.error)
        elif item.duplicate:
            self.report.duplicates.append(str(item.path))
        else:
            self._store(item, pages)
        if self.on_file is not None:
            self.on_file(item.path)

    def _store(self, item: _InFlight, pages: list[corpus_db.PageRecord]) -> None:
        try:
            with session_scope(self.settings) as session:
                doc = corpus_db.add_document(
                    session, corpus_id=self.corpus_id, sha256=item.sha256, title=item.title,
                    source=self.names.get(item.path, item.path.name),
                    kind="pdf" if item.path.suffix.lower() == ".pdf" else "image", size_bytes=item.size_bytes,
                    pages=pages,
                )
                page_ids = pages_db.page_ids_of_document(session, document_id=doc.id)
        except DuplicateDocumentError:  # another ingest stored the same bytes while this one rendered them
            self.report.duplicates.append(str(item.path))
            return
        self.report.added.append(str(item.path))
        self.report.pages += len(pages)
        log.info("ingested %s: %d pages", item.path, len(pages))
        if self.to_queue is not None:
            self.to_queue.extend(page_ids)
            self._queue(partial=False)

    def _queue(self, *, partial: bool) -> None:
        """Queue the full tasks' worth of pages waiting to be queued (all of them when ``partial``)."""
        n = len(self.to_queue) if partial else len(self.to_queue) - len(self.to_queue) % self.settings.embed_task_pages
        if n:
            enqueue_indexing(self.settings, page_ids=self.to_queue[:n])
            self.report.queued_page_ids.extend(self.to_queue[:n])
            del self.to_queue[:n]
