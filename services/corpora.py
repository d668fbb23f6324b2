"""Corpora: their summaries in the shape ``GET /v1/corpora`` answers (so the CLI prints either source alike),
queueing the pages not yet indexed, following the indexing, and deleting documents."""

from __future__ import annotations

from collections.abc import Collection

from db import corpus as corpus_db
from db import lifecycle
from db import pages as pages_db
from db.engine import session_scope
from models.loading import model_ids
from pageqa.domain import rfc3339
from pageqa.errors import NotFoundError
from pageqa.settings import Settings
from worker.queue import enqueue_indexing


def indexed_models(settings: Settings) -> dict[str, str | None]:
    """What "indexed" means for ``settings``, as :func:`db.corpus.count_indexed` and
    :func:`db.corpus.pages_to_index` take it: ``visual_model`` (the ColQwen2 id, or None when the model set has no
    visual lane) and ``text_model`` (the passage encoder id)."""
    ids = model_ids(settings)
    return {"visual_model": ids["retriever"] if "visual" in settings.available_lanes() else None,
            "text_model": ids["text"]}


def corpus_summaries(settings: Settings, *, tenant: str | None, name: str | None = None) -> list[dict]:
    """Corpora by tenant and name (``tenant`` None: every tenant's), each with ``name``, ``tenant``,
    ``documents``, ``pages``, ``pages_indexed`` (searchable with the configured model set), ``pages_failed``
    (indexing failed) and ``created_at`` (RFC 3339, UTC)."""
    models = indexed_models(settings)
    out = []
    with session_scope(settings) as session:
        for corpus in corpus_db.list_corpora(session, tenant=tenant, name=name):
            state = pages_db.count_indexed(session, corpus_id=corpus.id, **models)
            documents = corpus_db.count_documents(session, corpus_id=corpus.id)
            out.append({"object": "corpus", "name": corpus.name, "tenant": corpus.tenant, "documents": documents,
                        "pages": state.total, "pages_indexed": state.indexed, "pages_failed": state.failed,
                        "created_at": rfc3339(corpus.created_at)})
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
                      "size_bytes": d.size_bytes, "created_at": rfc3339(d.created_at)}
                     for d in corpus_db.list_documents(session, corpus_id=corpus_id)]
    return {**found[0], "document_list": documents}


def queue_unindexed(
    settings: Settings, *, corpus: str, queued: Collection[int] = (), retry_failed: bool = False,
    tenant: str = "default",
) -> int:
    """Queue every page of the tenant's corpus not yet indexed for the configured model set (OCR, passages,
    multi-vector), except the ``queued`` page ids (already queued, e.g. by ``ingest_files(enqueue=True)``) and
    pages whose indexing failed (unless ``retry_failed``: their errors are cleared and they are queued again);
    returns the corpus id.

    Raises:
        NotFoundError: the tenant has no such corpus.
    """
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_corpus(session, name=corpus, tenant=tenant).id
        if retry_failed:
            pages_db.clear_index_errors(session, corpus_id=corpus_id)
        todo = pages_db.pages_to_index(session, corpus_id=corpus_id, **indexed_models(settings))
    already = set(queued)
    if to_send := [page_id for page_id in todo if page_id not in already]:
        enqueue_indexing(settings, page_ids=to_send)
    return corpus_id


def index_state(settings: Settings, *, corpus_id: int) -> pages_db.IndexProgress:
    """How far the corpus's indexing is: pages in all, indexed and failed."""
    with session_scope(settings) as session:
        return pages_db.count_indexed(session, corpus_id=corpus_id, **indexed_models(settings))


def index_errors(settings: Settings, *, corpus_id: int) -> list[str]:
    """One line per page of the corpus whose indexing failed."""
    with session_scope(settings) as session:
        return pages_db.index_errors(session, corpus_id=corpus_id)


def delete_documents(
    settings: Settings, *, corpus: str, document: str | None = None, tenant: str = "default",
) -> corpus_db.Deleted:
    """Delete a document of the tenant's corpus (by file name or title), or every document when ``document`` is
    None, with their pages, embeddings, index entries and citations (the answers stay); returns what went.

    Unanswered questions restricted to a deleted document fail (:func:`db.corpus.delete_documents`); a job left
    with nothing to run ends.

    Raises:
        NotFoundError: no such corpus, or no such document in it.
    """
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_corpus(session, name=corpus, tenant=tenant).id
        ids = None
        if document is not None:
            doc = corpus_db.documents_by_name(session, corpus_id=corpus_id).get(document)
            if doc is None:
                raise NotFoundError(f"no document {document!r} in corpus {corpus!r}")
            ids = [doc.id]
        gone = corpus_db.delete_documents(session, corpus_id=corpus_id, document_ids=ids)
        finalizing = lifecycle.finish_jobs(session, job_ids=list(gone.jobs))
    if finalizing:  # the second step of a job's end, after ``finalizing`` committed (as a worker's last chunk does)
        with session_scope(settings) as session:
            lifecycle.finalize_jobs(session, job_ids=finalizing)
    return gone
