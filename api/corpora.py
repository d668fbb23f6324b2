"""Corpus routes: upload documents (PDFs and images) into a corpus, list corpora, read one. Corpus names are the
tenant's own: two tenants may each have a corpus "reports", and neither sees the other's."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select
from starlette.datastructures import UploadFile

from api.deps import SettingsDep, TenantDep, uploads_dir
from db import corpus as corpus_db
from db.engine import session_scope
from db.schema import Corpus, Document, Page
from pageqa.errors import InputError
from pageqa.settings import Settings
from scripts.ingest import IngestReport, ingest_files
from scripts.ingest_inputs import SUFFIXES

router = APIRouter(tags=["corpora"])
CorpusName = Annotated[str, PathParam(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f/]+$")]
MAX_FILES = 100

_UPLOAD = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"], "properties": {"files": {
        "type": "array", "items": {"type": "string", "format": "binary"},
        "description": f"PDFs or PNG/JPEG/WebP images, at most {MAX_FILES} per request."}}}}}}}


@router.post("/corpora/{name}/documents", status_code=201, openapi_extra=_UPLOAD, summary="Upload documents")
async def upload_documents(name: CorpusName, request: Request, settings: SettingsDep, tenant: TenantDep) -> dict:
    """Store each uploaded file under a server-made name, ingest it into the tenant's corpus ``name`` (created
    when missing) and queue its pages for indexing. Documents keep the uploaded file name, which question files
    use to filter by document. A bad file is one error naming it; the others are ingested. 400 when none is."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(415, "send the documents as multipart/form-data fields named 'files'")
    form = await request.form(max_files=MAX_FILES, max_fields=10)
    uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not uploads:
        raise InputError("no file: send the documents as multipart fields named 'files'")
    workdir = Path(tempfile.mkdtemp(prefix="docs-", dir=uploads_dir(settings)))
    try:
        return await run_in_threadpool(_ingest, settings, tenant, name, uploads, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _ingest(settings: Settings, tenant: str, name: str, uploads: list[UploadFile], workdir: Path) -> dict:
    names: dict[Path, str] = {}
    errors: list[str] = []
    for upload in uploads:
        shown = corpus_db.clean_file_name(upload.filename or "document")
        suffix = Path(shown).suffix.lower()
        if suffix not in SUFFIXES:
            errors.append(str(InputError(f"not a PDF or image ({', '.join(sorted(SUFFIXES))})", source=shown)))
            continue
        path = workdir / f"{uuid.uuid4().hex}{suffix}"
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
        names[path] = shown
    report = ingest_files(settings, corpus=name, files=list(names), tenant=tenant, names=names, enqueue=True,
                          report=IngestReport(errors=errors))
    shown = {str(p): n for p, n in names.items()}

    def named(text: str) -> str:  # messages name the user's file, not the server's copy
        for server, user in shown.items():
            text = text.replace(server, user)
        return text

    if not report.added and not report.duplicates:
        raise InputError(named(report.errors[0]) if report.errors else "no document could be ingested")
    return {"corpus": name, "added": [shown[p] for p in report.added], "duplicates": [shown[p] for p in report.duplicates],
            "errors": [named(e) for e in report.errors], "pages": report.pages,
            "pages_queued": len(report.queued_page_ids)}


def _summaries(session, tenant: str, name: str | None = None) -> list[dict]:
    docs = (select(Document.corpus_id, func.count(Document.id).label("documents"),
                   func.coalesce(func.sum(Document.page_count), 0).label("pages"))
            .group_by(Document.corpus_id).subquery())
    failed = (select(Document.corpus_id, func.count(Page.id).label("failed"))
              .join(Page, Page.document_id == Document.id).where(Page.index_error.is_not(None))
              .group_by(Document.corpus_id).subquery())
    stmt = (select(Corpus, func.coalesce(docs.c.documents, 0), func.coalesce(docs.c.pages, 0),
                   func.coalesce(failed.c.failed, 0))
            .outerjoin(docs, docs.c.corpus_id == Corpus.id).outerjoin(failed, failed.c.corpus_id == Corpus.id)
            .where(Corpus.tenant == tenant).order_by(Corpus.name))
    if name is not None:
        stmt = stmt.where(Corpus.name == name)
    return [{"object": "corpus", "name": c.name, "documents": n_docs, "pages": n_pages, "pages_failed": n_failed,
             "created_at": c.created_at.isoformat().replace("+00:00", "Z"), "id": c.id}
            for c, n_docs, n_pages, n_failed in session.execute(stmt)]


def _indexed(settings: Settings, session, corpus_id: int) -> int:
    """Pages of the corpus indexed for the configured model set (searchable)."""
    ids = settings.model_ids()
    visual = ids["retriever"] if "visual" in settings.available_lanes() else None
    return corpus_db.count_indexed(session, corpus_id=corpus_id, visual_model=visual, text_model=ids["text"]).indexed


@router.get("/corpora", summary="List corpora")
def list_corpora(settings: SettingsDep, tenant: TenantDep) -> dict:
    """The tenant's corpora with their document and page counts: pages, pages indexed (searchable) and pages that
    could not be indexed."""
    with session_scope(settings) as session:
        data = _summaries(session, tenant)
        for row in data:
            row["pages_indexed"] = _indexed(settings, session, row.pop("id"))
    return {"object": "list", "data": data}


@router.get("/corpora/{name}", summary="Get a corpus")
def get_corpus(name: CorpusName, settings: SettingsDep, tenant: TenantDep) -> dict:
    """The tenant's corpus ``name`` with its documents (name, title, kind, pages, bytes)."""
    with session_scope(settings) as session:
        found = _summaries(session, tenant, name)
        if not found:
            raise HTTPException(404, f"no corpus named {name!r}")
        corpus_id = found[0].pop("id")
        found[0]["pages_indexed"] = _indexed(settings, session, corpus_id)
        documents = [{"id": d.id, "name": d.source, "title": d.title, "kind": d.kind, "pages": d.page_count,
                      "size_bytes": d.size_bytes, "created_at": d.created_at.isoformat().replace("+00:00", "Z")}
                     for d in session.scalars(select(Document).where(Document.corpus_id == corpus_id)
                                              .order_by(Document.id))]
    return {**found[0], "document_list": documents}
