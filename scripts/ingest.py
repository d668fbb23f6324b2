"""Ingest: PDFs (rasterised with pypdfium2), PNG/JPEG/WebP images and folders of them, into a corpus.

Each document is stored with its pages in its own transaction, so a bad file never loses what was stored before
it; duplicates (same sha256 in the corpus) are skipped. Embedding is then queued to the workers.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from db import corpus as corpus_db
from db.engine import session_scope
from models.images import encode_image, fit_pixels
from pageqa.errors import InputError
from pageqa.settings import Settings

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
SUFFIXES = IMAGE_SUFFIXES | {".pdf"}
MAX_RENDER_DPI = 300


@dataclass
class IngestReport:
    """What an ingest did: documents added and skipped as duplicates, pages added, one-line errors per bad file."""

    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    pages: int = 0
    new_page_ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files to ingest: files as given, folders searched recursively for PDFs and images, sorted by path.

    Raises:
        InputError: a path does not exist or is a file of an unsupported type.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES))
        elif not path.exists():
            raise InputError("no such file or folder", source=str(path))
        elif path.suffix.lower() not in SUFFIXES:
            raise InputError(f"unsupported file type {path.suffix or '(none)'} (PDF, PNG, JPEG or WebP)", source=str(path))
        else:
            files.append(path)
    return files


def render_pdf(path: Path, data: bytes, settings: Settings) -> Iterator[corpus_db.PageRecord]:
    """Rasterise each PDF page to at most ``page_max_pixels`` pixels (and 300 DPI) with its text layer.

    Raises:
        InputError: the PDF cannot be opened, or a page cannot be rendered (names the 1-based page).
    """
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise InputError(f"not a readable PDF ({exc})", source=str(path)) from exc
    try:
        if len(pdf) == 0:
            raise InputError("the PDF has no pages", source=str(path))
        for index in range(len(pdf)):
            try:
                page = pdf[index]
                w_pt, h_pt = page.get_size()  # points, 1/72 inch
                scale = min(math.sqrt(settings.page_max_pixels / max(w_pt * h_pt, 1.0)), MAX_RENDER_DPI / 72)
                image = fit_pixels(page.render(scale=scale).to_pil().convert("RGB"), settings.page_max_pixels)
                text = page.get_textpage().get_text_range()
            except pdfium.PdfiumError as exc:
                raise InputError(f"cannot render ({exc})", source=str(path), page=index + 1) from exc
            yield _record(index + 1, image, text, settings)
    finally:
        pdf.close()


def read_image(path: Path, data: bytes, settings: Settings) -> corpus_db.PageRecord:
    """An image file as a one-page document.

    Raises:
        InputError: Pillow cannot decode the file.
    """
    import io

    try:
        with Image.open(io.BytesIO(data)) as img:
            image = fit_pixels(img.convert("RGB"), settings.page_max_pixels)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"not a readable image ({exc})", source=str(path)) from exc
    return _record(1, image, "", settings)


def _record(number: int, image: Image.Image, text: str, settings: Settings) -> corpus_db.PageRecord:
    data = encode_image(image, fmt=settings.page_image_format, quality=settings.page_image_quality)
    return corpus_db.PageRecord(number, data, settings.page_image_format, image.width, image.height, text)


def _title(path: Path, data: bytes) -> str:
    if path.suffix.lower() == ".pdf":
        import pypdfium2 as pdfium

        try:
            title = (pdfium.PdfDocument(data).get_metadata_dict().get("Title") or "").strip()
        except pdfium.PdfiumError:
            title = ""
        if title:
            return title
    return path.stem


def ingest_files(settings: Settings, *, corpus: str, files: Sequence[Path], report: IngestReport | None = None,
                 on_file=None) -> IngestReport:
    """Store each file as a document of ``corpus`` (created when missing); errors are collected, not raised.

    ``on_file(path)`` is called after each file (for progress bars).
    """
    report = report or IngestReport()
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_or_create_corpus(session, name=corpus).id
    for path in files:
        try:
            _ingest_one(settings, corpus_id, path, report)
        except InputError as exc:
            report.errors.append(str(exc))
        except OSError as exc:
            report.errors.append(f"{path}: cannot read ({exc.strerror or exc})")
        if on_file is not None:
            on_file(path)
    return report


def _ingest_one(settings: Settings, corpus_id: int, path: Path, report: IngestReport) -> None:
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with session_scope(settings) as session:
        if corpus_db.find_document(session, corpus_id=corpus_id, sha256=sha) is not None:
            report.duplicates.append(str(path))
            return
    is_pdf = path.suffix.lower() == ".pdf"
    pages = list(render_pdf(path, data, settings)) if is_pdf else [read_image(path, data, settings)]
    with session_scope(settings) as session:
        doc = corpus_db.add_document(
            session, corpus_id=corpus_id, sha256=sha, title=_title(path, data), source=path.name,
            kind="pdf" if is_pdf else "image", size_bytes=len(data), pages=pages,
        )
        report.new_page_ids.extend(
            corpus_db.page_ids_of_document(session, document_id=doc.id)
        )
    report.added.append(str(path))
    report.pages += len(pages)
    log.info("ingested %s: %d pages", path, len(pages))
