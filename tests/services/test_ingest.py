"""Ingest into the real embedded PostgreSQL: PDFs and images, duplicates skipped, bad files reported by name
while the good ones are kept; pages rendered by several processes match the serial rendering; indexing tasks
reach the real Redis as documents are stored."""

from __future__ import annotations

from conftest import PDF_PAGES, make_image, make_pdf, waiting_task_args
from sqlalchemy import select

from db.engine import session_scope
from db.schema import Corpus, Document, Page
from models.images import decode_image
from services.ingest.pipeline import ingest_files
from services.ingest.render import RenderSpec, page_ranges, render_pdf_pages
from services.ingest.inputs import expand_paths
from scripts.cli.progress import embed_and_wait


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
    files, errors = expand_paths([sample_docs["pdf"], sample_docs["png"], sample_docs["root"] / "charts"])
    assert [f.name for f in files] == ["report.pdf", "red.png", "blue.webp", "green.jpg"] and errors == []
    report = ingest_files(settings, corpus="ingest-a", files=files)
    assert report.errors == [] and report.pages == 6

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


def test_unsupported_and_missing_paths_are_named_and_the_others_kept(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    good = make_image(tmp_path / "good.png", (50, 40), (1, 2, 3))
    files, errors = expand_paths([text_file, good, tmp_path / "nope.pdf"])
    assert files == [good]
    assert errors == [f"{text_file}: unsupported file type .txt (PDF, PNG, JPEG or WebP)",
                      f"{tmp_path / 'nope.pdf'}: no such file or folder"]


def test_pages_rendered_by_two_processes_match_the_serial_rendering(settings, services, tmp_path):
    texts = [f"Page {i}: {i * 17} kilometres of track" for i in range(1, 8)]
    pdf = make_pdf(tmp_path / "seven.pdf", texts)
    assert len(page_ranges(len(texts), 2)) > 1  # the pages really are split between the processes

    two = settings.model_copy(update={"ingest_processes": 2})
    report = ingest_files(two, corpus="ingest-parallel", files=[pdf])
    assert report.errors == [] and report.pages == 7

    stored = [page for _doc, page in _pages(settings, "ingest-parallel")]
    serial = render_pdf_pages(pdf, 0, len(texts), RenderSpec.of(settings))
    assert [p.page_number for p in stored] == [r.page_number for r in serial] == list(range(1, 8))
    assert [(p.width, p.height) for p in stored] == [(r.width, r.height) for r in serial]
    assert len({(p.width, p.height) for p in stored}) == 7  # pages of different sizes, so order shows in sizes
    assert [p.image for p in stored] == [r.image for r in serial]
    for page, text in zip(stored, texts, strict=True):
        assert text in page.text


def test_folder_with_bad_files_keeps_the_good_ones_in_order(settings, services, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    make_pdf(folder / "a-good.pdf", PDF_PAGES[:2])
    (folder / "b-corrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage")
    make_image(folder / "c-good.png", (500, 400), (10, 120, 200))
    (folder / "d-corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")  # fails in a render process
    files, errors = expand_paths([folder])
    assert errors == []

    seen = []
    report = ingest_files(settings.model_copy(update={"ingest_processes": 2}), corpus="ingest-mixed", files=files,
                          on_file=seen.append)
    assert seen == files
    assert report.added == [str(folder / "a-good.pdf"), str(folder / "c-good.png")]
    assert len(report.errors) == 2
    assert report.errors[0].startswith(f"{folder / 'b-corrupt.pdf'}: not a readable PDF")
    assert report.errors[1].startswith(f"{folder / 'd-corrupt.png'}: not a readable image")
    assert all("\n" not in e for e in report.errors)
    assert sorted({doc.source for doc, _ in _pages(settings, "ingest-mixed")}) == ["a-good.pdf", "c-good.png"]


def test_identical_files_in_one_batch_are_stored_once(settings, services, sample_docs, tmp_path):
    copy = tmp_path / "copy.png"
    copy.write_bytes(sample_docs["png"].read_bytes())
    report = ingest_files(settings, corpus="ingest-twins", files=[sample_docs["png"], copy])
    assert report.added == [str(sample_docs["png"])] and report.duplicates == [str(copy)]


def _queued_page_ids(settings, queue: str) -> list[list[int]]:
    """The page ids of each indexing task waiting in ``queue``, oldest first."""
    return waiting_task_args(settings, queue, "pageqa.index_pages")


def test_each_stored_document_is_queued_for_indexing_once(settings, services, sample_docs):
    # a queue of its own: no worker consumes it, so every task sent is still there to read; the offline model set
    # needs no checkpoints to name the models whose indexes embed_and_wait looks for
    queued = settings.model_copy(
        update={"worker_queue": "ingest-enqueue-test", "embed_task_pages": 2, "models": "offline"}
    )
    files = [sample_docs["pdf"], sample_docs["png"], sample_docs["jpeg"]]
    report = ingest_files(queued, corpus="ingest-enqueue", files=files, enqueue=True)
    assert report.errors == [] and report.pages == len(report.queued_page_ids) == 5
    tasks = _queued_page_ids(settings, "ingest-enqueue-test")
    assert [page_id for task in tasks for page_id in task] == report.queued_page_ids
    assert [len(task) for task in tasks] == [2, 2, 1]  # full tasks while ingesting, the rest at the end

    # the CLI then waits for the workers: embed_and_wait must not queue the same pages a second time
    embed_and_wait(queued, corpus="ingest-enqueue", wait=False, queued=report.queued_page_ids)
    assert len(_queued_page_ids(settings, "ingest-enqueue-test")) == 3
    embed_and_wait(queued, corpus="ingest-enqueue", wait=False, queued=report.queued_page_ids[:-1])
    assert _queued_page_ids(settings, "ingest-enqueue-test")[3:] == [report.queued_page_ids[-1:]]
