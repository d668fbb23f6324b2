"""Hostile and broken documents at ingest (issue 6), through the real CLI, PostgreSQL, Redis and worker.

Each bad input goes into one ``pageqa ingest`` call together with a valid two-page PDF. Every call must give one
error line per bad input naming the file (and the 1-based page), no traceback, exit code 1; store the valid PDF with
both pages; and leave the document stored earlier in the corpus, with its pages and embeddings, as it was.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from conftest import make_image, make_pdf
from conftest import run_cli as cli
from PIL import Image
from sqlalchemy import select

from db import corpus as corpus_db
from db.engine import session_scope
from db.schema import Corpus, Document, Page, PageEmbedding, Passage
from models.images import decode_image
from services.ingest.pipeline import ingest_files

pytestmark = [pytest.mark.models, pytest.mark.timeout(300)]
CORPUS = "hostile"


# --- documents built byte by byte --------------------------------------------------------------------------------

def raw_pdf(objects: list[str], trailer: str = "") -> bytes:
    """A PDF of ``objects`` (numbered from 1; object 1 is the catalog) with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R {trailer} >>\nstartxref\n{xref}\n%%EOF\n".encode("latin-1")
    return bytes(out)


ONE_PAGE = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>"]
# Padding of passwords, algorithm 3.2 of the PDF 1.7 reference (ISO 32000-1, 7.6.3.3).
PASSWORD_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    s, j = list(range(256)), 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def encrypted_pdf(user_password: str, *, handler: str = "Standard") -> bytes:
    """A one-page PDF encrypted with the standard security handler, revision 2 (40-bit RC4; algorithms 3.2–3.4 of
    the PDF 1.7 reference): it opens only with ``user_password``. It has no strings or streams, so nothing else
    needs encrypting. ``handler`` names another security handler instead."""
    def pad(password: str) -> bytes:
        return (password.encode("latin-1") + PASSWORD_PAD)[:32]

    file_id, permissions = hashlib.md5(b"pageqa").digest(), -44
    owner = _rc4(hashlib.md5(pad("owner")).digest()[:5], pad(user_password))
    key = hashlib.md5(pad(user_password) + owner + struct.pack("<i", permissions) + file_id).digest()[:5]
    encrypt = (f"<< /Filter /{handler} /V 1 /R 2 /O <{owner.hex()}> /U <{_rc4(key, PASSWORD_PAD).hex()}> "
               f"/P {permissions} >>")
    return raw_pdf([*ONE_PAGE, encrypt], f"/Encrypt 4 0 R /ID [<{file_id.hex()}> <{file_id.hex()}>]")


def png_header_only(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG that declares ``width`` × ``height`` pixels and holds one row: 70 bytes that a
    decoder would expand to width × height pixels (2.5 GB of RGB for 50,000²)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = zlib.compress(b"\0" * (1 + width // 8))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


def pdf_of_page_sizes(path: Path, sizes: list[tuple[float, float]]) -> Path:
    """A PDF with one blank page per (width, height) in points."""
    pdf = pdfium.PdfDocument.new()
    for width, height in sizes:
        pdf.new_page(width, height)
    pdf.save(path)
    return path


# --- what each call must leave behind ----------------------------------------------------------------------------

def _document_pages(settings, source: str) -> list[Page]:
    with session_scope(settings) as session:
        pages = session.scalars(
            select(Page).join(Document, Document.id == Page.document_id).join(Corpus, Corpus.id == Document.corpus_id)
            .where(Corpus.name == CORPUS, Document.source == source).order_by(Page.page_number)
        ).all()
        session.expunge_all()
        return list(pages)


def _snapshot(settings, source: str) -> list[tuple]:
    """Each page of the document with a digest of its image, text, multi-vector and passage embeddings."""
    with session_scope(settings) as session:
        rows = session.execute(
            select(Page.id, Page.page_number, Page.image, Page.text, PageEmbedding.vectors, PageEmbedding.fine)
            .join(Document, Document.id == Page.document_id).join(Corpus, Corpus.id == Document.corpus_id)
            .join(PageEmbedding, PageEmbedding.page_id == Page.id)
            .where(Corpus.name == CORPUS, Document.source == source).order_by(Page.page_number)
        ).all()
        passages = dict.fromkeys((r.id for r in rows), "")
        for page_id, embedding in session.execute(
            select(Passage.page_id, Passage.embedding).where(Passage.page_id.in_(passages)).order_by(Passage.id)
        ):
            passages[page_id] += hashlib.sha256(np.asarray(embedding, dtype=np.float32).tobytes()).hexdigest()
    return [(r.id, r.page_number, hashlib.sha256(r.image).hexdigest(), r.text,
             hashlib.sha256(r.vectors).hexdigest(), hashlib.sha256(r.fine or b"").hexdigest(), passages[r.id])
            for r in rows]


@pytest.fixture(scope="module")
def earlier(settings, worker, sample_docs) -> list[tuple]:
    """The sample 3-page PDF, ingested into the corpus and embedded before any hostile input: its snapshot."""
    cli("ingest", str(sample_docs["pdf"]), "--corpus", CORPUS)
    snapshot = _snapshot(settings, sample_docs["pdf"].name)
    assert len(snapshot) == 3
    return snapshot


def ingest_beside_valid(settings, sample_docs, earlier, tmp_path: Path, *paths: str, ok: bool = False) -> list[str]:
    """``pageqa ingest PATHS... VALID`` into the corpus, VALID a new two-page PDF. Checks the exit code (0 when
    ``ok``, else 1), that nothing printed a traceback or more than one line per error, that VALID is stored with
    both pages and that the earlier document is unchanged; returns the error lines."""
    valid = make_pdf(tmp_path / f"valid-{tmp_path.name}.pdf", [f"{tmp_path.name}: first page", "second page"])
    result = cli("ingest", *paths, str(valid), "--corpus", CORPUS, ok=False)
    assert result.exit_code == (0 if ok else 1), result.output
    assert "Traceback" not in result.output and "Error" not in result.output, result.output
    assert [p.page_number for p in _document_pages(settings, valid.name)] == [1, 2]
    assert _snapshot(settings, sample_docs["pdf"].name) == earlier
    return [line.removeprefix("error ") for line in result.stderr.splitlines() if line.startswith("error ")]


# --- the hostile inputs ------------------------------------------------------------------------------------------

def test_encrypted_pdfs_are_named_as_encrypted(settings, sample_docs, earlier, tmp_path):
    locked = tmp_path / "locked.pdf"
    locked.write_bytes(encrypted_pdf("secret"))
    assert len(pdfium.PdfDocument(locked, password="secret")) == 1  # a real encrypted PDF, not a broken one
    certificate = tmp_path / "certificate.pdf"
    certificate.write_bytes(encrypted_pdf("secret", handler="Adobe.PubSec"))

    errors = ingest_beside_valid(settings, sample_docs, earlier, tmp_path, str(locked), str(certificate))
    assert errors == [
        f"{locked}: encrypted PDF (password-protected): save a copy without the password to ingest it",
        f"{certificate}: encrypted PDF with a security handler pdfium does not support (e.g. certificates)",
    ]


def test_truncated_pdfs_are_refused_whole(settings, sample_docs, earlier, tmp_path):
    data = sample_docs["pdf"].read_bytes()
    half = tmp_path / "half.pdf"
    half.write_bytes(data[: len(data) // 2])
    tail_lost = tmp_path / "tail-lost.pdf"  # cut just before startxref: pdfium rebuilds the xref and opens it
    tail_lost.write_bytes(data[: data.rindex(b"startxref")])
    assert len(pdfium.PdfDocument(tail_lost)) == 3

    errors = ingest_beside_valid(settings, sample_docs, earlier, tmp_path, str(half), str(tail_lost))
    message = "not a readable PDF: truncated, it does not end with %%EOF (an incomplete download or copy?)"
    assert errors == [f"{half}: {message}", f"{tail_lost}: {message}"]
    assert _document_pages(settings, tail_lost.name) == []  # no partial document


def test_pdfs_without_pages_are_named(settings, sample_docs, earlier, tmp_path):
    saved_empty = tmp_path / "no-pages.pdf"
    pdfium.PdfDocument.new().save(saved_empty)
    no_tree = tmp_path / "no-page-tree.pdf"
    no_tree.write_bytes(raw_pdf(["<< /Type /Catalog >>"]))
    counted_not_there = tmp_path / "count-3-kids-none.pdf"
    counted_not_there.write_bytes(raw_pdf(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [] /Count 3 >>"]))

    errors = ingest_beside_valid(settings, sample_docs, earlier, tmp_path,
                                 str(saved_empty), str(no_tree), str(counted_not_there))
    assert errors == [f"{saved_empty}: the PDF has no pages", f"{no_tree}: the PDF has no pages",
                      f"{counted_not_there} page 1: cannot render (Failed to load page.)"]


def test_a_crop_box_outside_the_media_box_is_named_by_page(settings, sample_docs, earlier, tmp_path):
    cropped = tmp_path / "cropped.pdf"
    cropped.write_bytes(raw_pdf([
        "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /CropBox [500 500 600 600] >>"]))
    with pytest.raises(ValueError, match="Crop exceeds page dimensions"):  # what used to end the whole ingest
        pdfium.PdfDocument(cropped)[1].render()

    errors = ingest_beside_valid(settings, sample_docs, earlier, tmp_path, str(cropped))
    assert errors == [f"{cropped} page 2: cannot render (its CropBox [500 500 600 600] lies outside its MediaBox "
                      "[0 0 200 100]: nothing of the page is visible)"]
    assert _document_pages(settings, cropped.name) == []  # no document without its second page


def test_symbolic_link_loops_in_a_folder_are_named(settings, sample_docs, earlier, tmp_path):
    folder = tmp_path / "looped"
    folder.mkdir()
    (folder / "a.pdf").symlink_to("b.pdf")
    (folder / "b.pdf").symlink_to("a.pdf")
    (folder / "self.png").symlink_to("self.png")
    (folder / "up").symlink_to("..")  # a folder loop: walking it would never end
    (folder / "again.pdf").symlink_to(".")
    make_image(folder / "kept.png", (60, 40), (40, 90, 160))

    errors = ingest_beside_valid(settings, sample_docs, earlier, tmp_path, str(folder), str(folder / "a.pdf"))
    loop = "symbolic link loop (the link leads back to itself): not followed"
    assert errors == [f"{folder / name}: {loop}" for name in ("a.pdf", "b.pdf", "self.png", "a.pdf")]
    assert len(_document_pages(settings, "kept.png")) == 1


def test_enormous_and_extreme_page_boxes_render_within_the_budget(settings, sample_docs, earlier, tmp_path):
    sizes = [(14400, 14400), (14400, 1), (1, 14400), (14400, 0), (0.01, 0.01)]
    boxes = pdf_of_page_sizes(tmp_path / "boxes.pdf", sizes)

    assert ingest_beside_valid(settings, sample_docs, earlier, tmp_path, str(boxes), ok=True) == []
    pages = _document_pages(settings, boxes.name)  # embedded by the worker too: --wait returned
    assert [p.page_number for p in pages] == [1, 2, 3, 4, 5]
    for page in pages:
        assert decode_image(page.image).size == (page.width, page.height)
        assert 1 <= page.width * page.height <= settings.page_max_pixels
        assert max(page.width, page.height) < 200 * min(page.width, page.height)  # Qwen2-VL's smart_resize limit
    square, wide, tall, flat, speck = ((p.width, p.height) for p in pages)
    assert square[0] == square[1] and square[0] ** 2 > settings.page_max_pixels * 0.95  # budget used, not exceeded
    assert wide[0] > 40 * wide[1] and tall[1] > 40 * tall[0]  # padded to 100:1, not squeezed to a square
    assert flat[0] < flat[1]  # pdfium gives an empty box US Letter's shape
    assert speck == (1, 1)


def test_decompression_bombs_are_refused_before_decoding(settings, sample_docs, earlier, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(50_000, 50_000))
    assert bomb.stat().st_size < 200
    with pytest.raises(Image.DecompressionBombError, match="2500000000 pixels"):  # Pillow agrees it is one
        Image.open(bomb)

    errors = ingest_beside_valid(settings, sample_docs, earlier, tmp_path, str(bomb))
    assert errors == [(f"{bomb}: 50,000 × 50,000 pixels is over max_image_pixels (89,478,485): refused before "
                      "decoding, as a possible decompression bomb")]


def test_max_image_pixels_is_the_limit(settings, services, tmp_path):
    at_limit = make_image(tmp_path / "at-limit.png", (100, 100), (5, 5, 5))
    over = make_image(tmp_path / "over.png", (101, 100), (6, 6, 6))
    small = settings.model_copy(update={"max_image_pixels": 10_000})
    report = ingest_files(small, corpus="hostile-limit", files=[at_limit, over])
    assert report.added == [str(at_limit)]
    assert report.errors == [(f"{over}: 101 × 100 pixels is over max_image_pixels (10,000): refused before decoding, "
                             "as a possible decompression bomb")]


def test_files_whose_bytes_do_not_match_their_extension(settings, sample_docs, earlier, tmp_path):
    text_png = tmp_path / "notes.png"
    text_png.write_text("just some text\n")
    pdf_jpg = tmp_path / "scan.jpg"
    pdf_jpg.write_bytes(sample_docs["pdf"].read_bytes())
    png_pdf = tmp_path / "picture.pdf"
    png_pdf.write_bytes(sample_docs["png"].read_bytes())
    eps_png = tmp_path / "drawing.png"  # Pillow would hand EPS to Ghostscript; only PNG, JPEG and WebP are tried
    eps_png.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n")
    empty_pdf, empty_png = tmp_path / "empty.pdf", tmp_path / "empty.png"
    empty_pdf.touch()
    empty_png.touch()

    errors = ingest_beside_valid(settings, sample_docs, earlier, tmp_path,
                                 *map(str, (text_png, pdf_jpg, png_pdf, eps_png, empty_pdf, empty_png)))
    unreadable = "not a readable image (not a PNG, JPEG or WebP file, or a damaged one)"
    assert errors == [
        f"{text_png}: {unreadable}",
        f"{pdf_jpg}: not a PNG, JPEG or WebP image but a PDF: name it scan.pdf to ingest it",
        f"{png_pdf}: not a PDF (no %PDF- header)",
        f"{eps_png}: {unreadable}",
        f"{empty_pdf}: empty file (0 bytes)",
        f"{empty_png}: empty file (0 bytes)",
    ]


def test_paths_with_nul_devices_and_unreadable_files(settings, sample_docs, earlier, tmp_path):
    zero = tmp_path / "zero.pdf"  # reading it would never end
    zero.symlink_to("/dev/zero")
    unreadable = tmp_path / "mem.pdf"  # a regular file that cannot be read, even by root (address 0 is unmapped)
    unreadable.symlink_to("/proc/self/mem")
    dangling = tmp_path / "gone.pdf"
    dangling.symlink_to(tmp_path / "deleted.pdf")

    errors = ingest_beside_valid(settings, sample_docs, earlier, tmp_path,
                                 "a\x00b.pdf", str(zero), str(unreadable), str(dangling))
    assert errors == [
        r"a\x00b.pdf: the path contains a NUL byte",
        f"{zero}: not a regular file (a device or a pipe)",
        f"{dangling}: no such file or folder",
        f"{unreadable}: cannot read (Input/output error)",
    ]


def test_path_traversal_stores_only_a_file_name(settings, sample_docs, earlier, tmp_path, monkeypatch):
    make_pdf(tmp_path / "x.pdf", ["reached by ../../x.pdf"])
    make_pdf(tmp_path / "..pdf", ["a file called ..pdf"])
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")

    errors = ingest_beside_valid(settings, sample_docs, earlier, tmp_path,
                                 "../../x.pdf", "../../..pdf", "../../missing.pdf")
    assert errors == ["../../missing.pdf: no such file or folder"]
    with session_scope(settings) as session:
        sources = set(session.scalars(
            select(Document.source).join(Corpus, Corpus.id == Document.corpus_id).where(Corpus.name == CORPUS)))
    assert {"x.pdf", "..pdf"} <= sources
    for source in sources:  # one path component, never . or ..: safe to name a file after
        assert "/" not in source and "\\" not in source and source not in (".", "..")


def test_symbolic_links_out_of_a_folder_are_not_followed(settings, sample_docs, earlier, tmp_path):
    (tmp_path / "private").mkdir()
    secret = make_pdf(tmp_path / "private" / "secret.pdf", ["salary list"]).resolve()
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "inside.pdf").symlink_to(secret)
    make_image(folder / "fine.png", (60, 40), (9, 9, 9))
    (folder / "also-fine.png").symlink_to(folder / "fine.png")  # a link within the folder is followed

    errors = ingest_beside_valid(settings, sample_docs, earlier, tmp_path, str(folder))
    assert errors == [(f"{folder / 'inside.pdf'}: symbolic link to {secret}, outside the folder: not followed "
                      "(name the file itself to ingest it)")]
    assert _document_pages(settings, "secret.pdf") == [] and _document_pages(settings, "inside.pdf") == []
    assert len(_document_pages(settings, "also-fine.png")) == 1  # stored under the first name it was read as


def test_hostile_names_are_one_inert_line_and_stored_clean(settings, sample_docs, earlier, tmp_path):
    # rich markup across the folder and file names, a terminal escape, a newline, a bidi override
    name = "red]\x1b[31m\n\u202e.png"
    (tmp_path / "evil[").mkdir()
    broken = tmp_path / "evil[" / name
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    assert "[/red]" in str(broken)
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    good = make_image(good_dir / name, (80, 60), (1, 99, 1))
    latin1 = make_image(tmp_path / os.fsdecode(b"caf\xe9.png"), (70, 50), (1, 1, 99))  # not UTF-8: a surrogate
    titled = tmp_path / "titled.pdf"
    titled.write_bytes(raw_pdf([*ONE_PAGE, r"<< /Title (line one\nline two\000nul \033[2J) >>"], "/Info 4 0 R"))

    errors = ingest_beside_valid(settings, sample_docs, earlier, tmp_path, str(broken), str(good), str(titled),
                                 str(latin1))
    shown = rf"{tmp_path}/evil[/red]\x1b[31m\n\u202e.png"
    assert errors == [f"{shown}: not a readable image (not a PNG, JPEG or WebP file, or a damaged one)"]
    clean = "red]\ufffd[31m \ufffd.png"
    assert len(_document_pages(settings, clean)) == 1
    assert len(_document_pages(settings, "caf\ufffd.png")) == 1
    with session_scope(settings) as session:
        title = session.scalars(select(Document.title).where(Document.source == "titled.pdf")).one()
    assert title == "line one line two\ufffdnul \u02d9[2J"  # pdfium reads \033 as PDFDocEncoding's dot accent


def test_stored_names_and_text_are_cleaned_for_every_caller(settings, services):
    record = corpus_db.PageRecord(1, b"img", "WEBP", 1, 1, "before\x00after")
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_or_create_corpus(session, name="hostile-names").id
        names = ["../../etc/passwd", "..", "a\\..\\b.pdf", "\x00" + "x" * 1000]
        docs = [corpus_db.add_document(session, corpus_id=corpus_id, sha256=f"{i:064d}", title=name + "\n\x07",
                                       source=name, kind="pdf", size_bytes=3, pages=[record])
                for i, name in enumerate(names)]
        stored = [(d.source, d.title) for d in docs]
        text = session.scalars(select(Page.text).where(Page.document_id == docs[0].id)).one()
    assert [s for s, _ in stored[:3]] == [".._.._etc_passwd", "_..", "a_.._b.pdf"]
    assert stored[3][0] == "\ufffd" + "x" * (corpus_db.NAME_MAX_CHARS - 1)
    assert stored[0][1] == "../../etc/passwd \ufffd"  # a title is shown, never a path: only made one line
    assert text == "beforeafter"
