"""Corpus summaries for ``pageqa corpora``: read from the database in the shape ``GET /v1/corpora`` answers (so
the CLI prints either source alike), and the tables that show them."""

from __future__ import annotations

import datetime as dt

from rich.markup import escape
from rich.table import Table
from sqlalchemy import func, select

from db import corpus as corpus_db
from db.engine import session_scope
from db.schema import Corpus, Document
from pageqa.errors import NotFoundError
from pageqa.settings import Settings


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def corpus_summaries(settings: Settings, *, tenant: str | None, name: str | None = None) -> list[dict]:
    """Corpora by tenant and name (``tenant`` None: every tenant's), each with ``name``, ``tenant``,
    ``documents``, ``pages``, ``pages_indexed`` (searchable with the configured model set), ``pages_failed``
    (indexing failed) and ``created_at`` (RFC 3339, UTC)."""
    ids = settings.model_ids()
    models = {"visual_model": ids["retriever"] if "visual" in settings.available_lanes() else None,
              "text_model": ids["text"]}
    stmt = select(Corpus).order_by(Corpus.tenant, Corpus.name)
    if tenant is not None:
        stmt = stmt.where(Corpus.tenant == tenant)
    if name is not None:
        stmt = stmt.where(Corpus.name == name)
    out = []
    with session_scope(settings) as session:
        for corpus in session.scalars(stmt):
            state = corpus_db.count_indexed(session, corpus_id=corpus.id, **models)
            documents = session.scalar(select(func.count(Document.id)).where(Document.corpus_id == corpus.id))
            out.append({"object": "corpus", "name": corpus.name, "tenant": corpus.tenant, "documents": documents,
                        "pages": state.total, "pages_indexed": state.indexed, "pages_failed": state.failed,
                        "created_at": _iso(corpus.created_at)})
    return out


def corpus_detail(settings: Settings, *, name: str, tenant: str) -> dict:
    """The tenant's corpus ``name`` as :func:`corpus_summaries` gives it, with its ``document_list`` (``name``,
    ``title``, ``kind``, ``pages``, ``size_bytes``, ``created_at``), as ``GET /v1/corpora/{name}`` answers.

    Raises:
        NotFoundError: the tenant has no such corpus.
    """
    found = corpus_summaries(settings, tenant=tenant, name=name)
    if not found:
        raise NotFoundError(f"no corpus named {name!r} of tenant {tenant!r}")
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_corpus(session, name=name, tenant=tenant).id
        documents = [{"id": d.id, "name": d.source, "title": d.title, "kind": d.kind, "pages": d.page_count,
                      "size_bytes": d.size_bytes, "created_at": _iso(d.created_at)}
                     for d in session.scalars(select(Document).where(Document.corpus_id == corpus_id)
                                              .order_by(Document.id))]
    return {**found[0], "document_list": documents}


def _when(iso: str) -> str:
    return f"{dt.datetime.fromisoformat(iso):%Y-%m-%d %H:%M:%S}"


def corpora_table(rows: list[dict]) -> Table:
    """One row per corpus; a tenant column when the rows carry their tenant (the database side)."""
    with_tenant = any("tenant" in r for r in rows)
    table = Table("corpus", *(["tenant"] if with_tenant else []), "documents", "pages", "indexed", "failed",
                  "created")
    for r in rows:
        table.add_row(escape(r["name"]), *([escape(r["tenant"])] if with_tenant else []), str(r["documents"]),
                      str(r["pages"]), str(r["pages_indexed"]), str(r["pages_failed"]), _when(r["created_at"]))
    return table


def documents_table(corpus: dict) -> Table:
    """The corpus's documents, titled with its counts."""
    title = (f"corpus {corpus['name']}: {corpus['documents']} documents, {corpus['pages']} pages "
             f"({corpus['pages_indexed']} indexed, {corpus['pages_failed']} failed)")
    table = Table("document", "title", "kind", "pages", "bytes", "added", title=escape(title), title_justify="left")
    for d in corpus["document_list"]:
        table.add_row(escape(d["name"]), escape(d["title"] or ""), escape(d["kind"]), str(d["pages"]),
                      f"{d['size_bytes']:,}", _when(d["created_at"]))
    return table
