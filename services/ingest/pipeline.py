"""Ingest: PDFs (rasterised with pypdfium2), PNG/JPEG/WebP images and folders of them, into a corpus.

Pages are rasterised and compressed in a pool of ``ingest_processes`` render processes: a PDF's pages are split
into page ranges that the processes render side by side, each opening the file itself (pdfium is not thread-safe;
separate processes are). The calling process keeps file order: it stores a document with its pages in one
transaction once every range is back, so a bad file never loses what was stored before it, and with
``enqueue=True`` queues the new pages for indexing right away, so the GPU workers embed while the next documents
are rendered. Duplicates (same sha256 in the corpus) are skipped before rendering.

Hostile input is refused per file with a one-line error naming it (and the 1-based page): encrypted, truncated
and page-less PDFs, images over ``max_image_pixels`` (decompression bombs, refused before decoding), files whose
bytes do not match their extension. Page boxes of any size render within ``page_max_pixels``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import os
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image, UnidentifiedImageError

from db import corpus as corpus_db
from db.engine import session_scope
from models.images import MAX_ASPECT, WEBP_METHOD, encode_image, fit_page
from pageqa.errors import InputError
from pageqa.settings import Settings
from services.ingest.inputs import content_problem, pdf_outline
from worker.queue import enqueue_indexing

log = logging.getLogger(__name__)

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")  # the only Pillow decoders tried: never EPS (Ghostscript) or others
MAX_RENDER_DPI = 300
RANGE_PAGES = 8  # most pages per render task: processes share even short PDFs; reopening one per task costs little
PAGES_IN_FLIGHT_PER_PROCESS = 32  # ≈ 150 KB each once compressed: bounds the parent's memory on big folders


@dataclass
class IngestReport:
    """What an ingest did: documents added and skipped as duplicates, pages added, one-line errors per bad file,
    and the page ids it queued for indexing (``enqueue=True`` only)."""

    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    pages: int = 0
    new_page_ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    queued_page_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class RenderSpec:
    """How a page is stored: at most ``max_pixels`` pixels, compressed to ``fmt`` at ``quality`` (1–100) and, for
    WEBP, libwebp effort ``webp_method`` (0–6); image files over ``max_image_pixels`` pixels are refused."""

    max_pixels: int
    fmt: str
    quality: int
    webp_method: int = WEBP_METHOD
    max_image_pixels: int = Settings.model_fields["max_image_pixels"].default

    @classmethod
    def of(cls, settings: Settings) -> RenderSpec:
        """The spec of ``page_max_pixels``, ``page_image_format``, ``page_image_quality`` and
        ``max_image_pixels``."""
        return cls(settings.page_max_pixels, settings.page_image_format, settings.page_image_quality,
                   max_image_pixels=settings.max_image_pixels)


def render_scale(width_pt: float, height_pt: float, max_pixels: int) -> float:
    """The pdfium scale (1 = 72 DPI) of a page of ``width_pt`` × ``height_pt`` points whose bitmap fits
    ``max_pixels``, at most 300 DPI.

    pdfium makes a bitmap of ceil(w·s) × ceil(h·s) pixels; s is the root of (w·s + 1)(h·s + 1) = max_pixels, so the
    bitmap always fits and never needs a second, Lanczos resampling (which cost more than the render itself).
    """
    w, h = max(width_pt, 1.0), max(height_pt, 1.0)
    scale = (math.sqrt((w + h) ** 2 + 4 * w * h * (max_pixels - 1)) - (w + h)) / (2 * w * h)
    return min(scale, MAX_RENDER_DPI / 72)


def rasterise_page(pdf: pdfium.PdfDocument, index: int, *, max_pixels: int) -> tuple[Image.Image, str]:
    """Page ``index`` (0-based) as an RGB image of at most ``max_pixels`` pixels, and its text layer.

    A page more than ``MAX_ASPECT`` times longer one way than the other (the PDF allows 14400 × 1 pt) is rendered
    for the page box padded to that ratio and stored padded (``fit_page``), so its bitmap fits the budget and has
    a shape the models take. pdfium itself gives empty or inverted boxes a real size.
    """
    page = pdf[index]
    width, height = page.get_size()  # points
    box = (max(width, height / MAX_ASPECT), max(height, width / MAX_ASPECT))
    image = page.render(scale=render_scale(*box, max_pixels)).to_pil()  # pdfium's BGR → an RGB copy
    return fit_page(image, max_pixels), page.get_textpage().get_text_range()


def render_pdf_pages(path: Path, first: int, stop: int, spec: RenderSpec) -> list[corpus_db.PageRecord]:
    """Pages ``first`` … ``stop - 1`` (0-based) of the PDF at ``path``, rasterised with their text layers and
    compressed. Runs in a render process, which opens the file itself.

    Raises:
        InputError: the PDF cannot be opened, or a page cannot be rendered (names the 1-based page).
    """
    pdf = _open_pdf(path)
    try:
        records = []
        for index in range(first, stop):
            try:
                image, text = rasterise_page(pdf, index, max_pixels=spec.max_pixels)
            except pdfium.PdfiumError as exc:
                raise InputError(f"cannot render ({exc})", source=str(path), page=index + 1) from exc
            records.append(_record(index + 1, image, text, spec))
        return records
    finally:
        pdf.close()


def read_image(path: Path, spec: RenderSpec) -> list[corpus_db.PageRecord]:
    """An image file as a one-page document (a list of one page, like ``render_pdf_pages``).

    Raises:
        InputError: not a PNG, JPEG or WebP file Pillow can decode, or over ``spec.max_image_pixels`` pixels
            (refused from its header, before decoding: a few kB can declare gigabytes of pixels).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # spec.max_image_pixels decides, below
            img = Image.open(path, formats=IMAGE_FORMATS)
        with img:
            if img.width * img.height > spec.max_image_pixels:
                raise InputError(
                    f"{img.width:,} × {img.height:,} pixels is over max_image_pixels ({spec.max_image_pixels:,}): "
                    "refused before decoding, as a possible decompression bomb", source=str(path))
            image = fit_page(img.convert("RGB"), spec.max_pixels)
    except UnidentifiedImageError as exc:
        raise InputError("not a readable image (not a PNG, JPEG or WebP file, or a damaged one)",
                         source=str(path)) from exc
    except Image.DecompressionBombError as exc:  # Pillow's own hard limit; render processes turn it off
        raise InputError(f"refused before decoding, as a possible decompression bomb ({exc})", source=str(path)) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # what Pillow's decoders raise on damaged data
        raise InputError(f"not a readable image ({exc})", source=str(path)) from exc
    return [_record(1, image, "", spec)]


def _record(number: int, image: Image.Image, text: str, spec: RenderSpec) -> corpus_db.PageRecord:
    data = encode_image(image, fmt=spec.fmt, quality=spec.quality, webp_method=spec.webp_method)
    return corpus_db.PageRecord(number, data, spec.fmt, image.width, image.height, text)


def _open_pdf(path: Path) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:  # pdf_outline opened these bytes: the file changed or vanished since
        raise InputError(f"not a readable PDF any more ({exc})", source=str(path)) from exc


def page_ranges(n_pages: int, processes: int) -> list[tuple[int, int]]:
    """(first, stop) 0-based ranges covering ``n_pages`` pages in order: about one per process, at most
    ``RANGE_PAGES`` pages each."""
    size = max(1, min(RANGE_PAGES, math.ceil(n_pages / processes)))
    return [(first, min(first + size, n_pages)) for first in range(0, n_pages, size)]


def render_pool(processes: int) -> ProcessPoolExecutor:
    """A pool of ``processes`` render processes for ``render_pdf_pages`` and ``read_image``."""
    # Not fork: this process holds PostgreSQL connections (and a progress-bar thread) that a forked child would
    # share. The forkserver is a fresh interpreter started once per process; with this module preloaded there,
    # each render process is a cheap fork of it.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(processes, mp_context=context, initializer=_start_render_process,
                               initargs=(os.getcwd(),))


def _start_render_process(folder: str) -> None:
    # The forkserver keeps the folder it was started in: without this, a relative path would name another file
    # in the render processes than the one the caller hashed.
    os.chdir(folder)
    # read_image applies max_image_pixels itself, from the header and with one message; Pillow's module-wide check
    # would otherwise refuse images over twice its default first, with its own message and limit.
    Image.MAX_IMAGE_PIXELS = None


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
            data = path.read_bytes()
            problem = content_problem(path, data)
        except OSError as exc:
            problem = f"cannot read ({exc.strerror or exc})"
        if problem is not None:
            item.error = str(InputError(problem, source=str(path)))
            return item
        item.sha256, item.size_bytes = hashlib.sha256(data).hexdigest(), len(data)
        with session_scope(self.settings) as session:
            stored = corpus_db.find_document(session, corpus_id=self.corpus_id, sha256=item.sha256) is not None
        if stored or any(other.sha256 == item.sha256 for other in self.window):
            item.duplicate = True
        elif path.suffix.lower() != ".pdf":
            item.title, item.n_pages = Path(self.names.get(path, path.name)).stem, 1
            item.futures.append(self.pool.submit(read_image, path, self.spec))
        else:
            try:
                item.title, item.n_pages = pdf_outline(path, data)
                if path in self.names and item.title == path.stem:  # no title in the PDF: the user's file name
                    item.title = Path(self.names[path]).stem
            except InputError as exc:
                item.error = str(exc)
                return item
            item.futures = [self.pool.submit(render_pdf_pages, path, first, stop, self.spec)
                            for first, stop in page_ranges(item.n_pages, self.processes)]
        return item

    def _finish(self, item: _InFlight) -> None:
        """Store a file once all its pages are rendered (waiting for them), or report why it is not stored."""
        pages: list[corpus_db.PageRecord] = []
        if item.error is None and not item.duplicate:
            try:
                pages = [page for future in item.futures for page in future.result()]
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
        with session_scope(self.settings) as session:
            doc = corpus_db.add_document(
                session, corpus_id=self.corpus_id, sha256=item.sha256, title=item.title,
                source=self.names.get(item.path, item.path.name),
                kind="pdf" if item.path.suffix.lower() == ".pdf" else "image", size_bytes=item.size_bytes,
                pages=pages,
            )
            page_ids = corpus_db.page_ids_of_document(session, document_id=doc.id)
        self.report.added.append(str(item.path))
        self.report.pages += len(pages)
        self.report.new_page_ids.extend(page_ids)
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
