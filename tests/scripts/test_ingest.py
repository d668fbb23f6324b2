"""Ingest into the real embedded PostgreSQL: PDFs and images, duplicates skipped, bad files reported by name
while the good ones are kept."""

from __future__ import annotations

import pytest
from conftest import PDF_PAGES
from sqlalchemy import select

from db.engine import session_scope
from db.schema import Corpus, Document, Page
from models.images import decode_image
from pageqa.errors import InputError
from scripts.ingest import expand_paths, ingest_files


def _pages(settings, corpus: str) -> list[tuple[Document, Page]]:
    with session_scope(settings) as session:
        return list(session.execute(
            select(Document, Page)
            .join(Page, Page.document_id == Document.id)
            .join(Corpus, Corpus.id == Document.corpus_id)
            .where(Corpus.name == corpus)
            .order_by(Document.id, Page.page_number)
        ))


def test_pdf_and_images_are_stored_as_pages(settings, services, sample_docs):
    files = expand_paths([sample_docs["pdf"], sample_docs["png"], sample_docs["root"] / "charts"])
    assert [f.name for f in files] == ["report.pdf", "red.png", "blue.webp", "green.jpg"]
    report = ingest_files(settings, corpus="ingest-a", files=files)
    assert report.errors == [] and report.pages == 6 and len(report.new_page_ids) == 6

    rows = _pages(settings, "ingest-a")
    by_doc: dict[str, list[Page]] = {}
    for doc, page in rows:
        by_doc.setdefault(doc.source, []).append(page)
        assert doc.page_count == len([p for d, p in rows if d.id == doc.id])
    assert [p.page_number for p in by_doc["report.pdf"]] == [1, 2, 3]
    for page, text in zip(by_doc["report.pdf"], PDF_PAGES, strict=True):
        assert text in page.text
    for pages in by_doc.values():
        for page in pages:
            image = decode_image(page.image)
            assert image.size == (page.width, page.height)
            assert page.width * page.height <= settings.page_max_pixels
    assert by_doc["red.png"][0].text == ""
    # images keep their aspect ratio: 900x300 stays 3:1
    blue = by_doc["blue.webp"][0]
    assert abs(blue.width / blue.height - 3.0) < 0.02


def test_second_ingest_skips_duplicates_by_hash(settings, services, sample_docs, tmp_path):
    ingest_files(settings, corpus="ingest-b", files=[sample_docs["png"]])
    copy = tmp_path / "same-bytes-other-name.png"
    copy.write_bytes(sample_docs["png"].read_bytes())
    report = ingest_files(settings, corpus="ingest-b", files=[sample_docs["png"], copy])
    assert report.added == [] and len(report.duplicates) == 2
    assert len(_pages(settings, "ingest-b")) == 1
    # the same file in another corpus is a new document there
    other = ingest_files(settings, corpus="ingest-b2", files=[sample_docs["png"]])
    assert len(other.added) == 1


def test_bad_files_are_named_and_good_ones_kept(settings, services, sample_docs, tmp_path):
    broken_pdf = tmp_path / "broken.pdf"
    broken_pdf.write_bytes(b"%PDF-1.4 this is not really a pdf")
    broken_png = tmp_path / "broken.png"
    broken_png.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ingest_files(settings, corpus="ingest-c", files=[sample_docs["pdf"]])
    report = ingest_files(settings, corpus="ingest-c", files=[broken_pdf, sample_docs["png"], broken_png])
    assert len(report.errors) == 2
    assert report.errors[0].startswith(f"{broken_pdf}: not a readable PDF")
    assert report.errors[1].startswith(f"{broken_png}: not a readable image")
    assert all("\n" not in e for e in report.errors)
    sources = sorted({doc.source for doc, _ in _pages(settings, "ingest-c")})
    assert sources == ["red.png", "report.pdf"]


def test_unsupported_and_missing_paths_are_refused(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(InputError, match="notes.txt: unsupported file type .txt"):
        expand_paths([text_file])
    with pytest.raises(InputError, match="nope.pdf: no such file"):
        expand_paths([tmp_path / "nope.pdf"])
