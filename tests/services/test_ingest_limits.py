"""Limits of what ingest takes (issue 19): files over ``max_document_bytes`` are refused before they are read, by
name and with the limit; file names longer than a stored name are cut before their ending, which is kept, through
the CLI and the HTTP API."""

from __future__ import annotations

import pytest
from conftest import make_image, make_pdf
from conftest import run_cli as cli
from fastapi.testclient import TestClient
from sqlalchemy import select

from db import keys
from db.corpus import NAME_MAX_CHARS
from db.engine import session_scope
from db.schema import Corpus, Document
from services.ingest.pipeline import ingest_files

pytestmark = pytest.mark.timeout(180)


def _sources(settings, corpus: str, tenant: str = "default") -> list[str]:
    with session_scope(settings) as session:
        return list(session.scalars(
            select(Document.source).join(Corpus, Corpus.id == Document.corpus_id)
            .where(Corpus.name == corpus, Corpus.tenant == tenant).order_by(Document.id)))


def test_a_file_over_max_document_bytes_is_refused_with_the_limit(settings, services, tmp_path):
    big = make_pdf(tmp_path / "big.pdf", ["a page", "another page"])
    small = make_image(tmp_path / "small.png", (60, 40), (90, 10, 10))
    limit = big.stat().st_size - 1
    assert small.stat().st_size <= limit
    capped = settings.model_copy(update={"max_document_bytes": limit})

    report = ingest_files(capped, corpus="capped", files=[big, small])
    assert report.errors == [f"{big}: the file is larger than {limit} bytes ({limit / 2**20:.4g} MiB, "
                             "PAGEQA_MAX_DOCUMENT_BYTES)"]
    assert _sources(settings, "capped") == ["small.png"]
    exactly = settings.model_copy(update={"max_document_bytes": limit + 1})  # the limit itself is allowed
    assert ingest_files(exactly, corpus="capped", files=[big]).added == [str(big)]


def test_the_longest_file_name_the_cli_can_give_is_stored_whole(settings, services, tiny_models, tmp_path):
    name = "r" * 251 + ".pdf"  # 255 bytes: the most a Linux file name holds
    make_pdf(tmp_path / name, ["a report with a long name"])
    result = cli("ingest", str(tmp_path / name), "--corpus", "long-names-cli", "--no-wait")
    assert result.stdout.strip().splitlines()[-1].startswith("1 documents added")
    assert _sources(settings, "long-names-cli") == [name]


def test_an_uploaded_file_name_of_400_characters_keeps_its_ending(settings, services, tmp_path):
    from api.app import create_app

    data = make_pdf(tmp_path / "long.pdf", ["uploaded under a long name"]).read_bytes()
    with session_scope(settings) as session:
        auth = {"Authorization": f"Bearer {keys.create_key(session, tenant='long-names').key}"}
    long_pdf, long_exe = "q" * 396 + ".pdf", "q" * 396 + ".exe"
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/corpora/long/documents", headers=auth, files=[
            ("files", (long_pdf, data, "application/pdf")), ("files", (long_exe, b"MZ", "application/octet-stream"))])

    assert r.status_code == 201, r.text
    stored = "q" * (NAME_MAX_CHARS - 4) + ".pdf"  # the display name cut to NAME_MAX_CHARS, before its ending
    assert r.json()["added"] == [stored] and r.json()["pages"] == 1
    assert r.json()["errors"] == [f"{'q' * (NAME_MAX_CHARS - 4)}.exe: not a PDF or image (.jpeg, .jpg, .pdf, .png, "
                                  ".webp)"]
    assert _sources(settings, "long", tenant="long-names") == [stored]
