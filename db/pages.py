"""Data access for pages: what is left to index and how far indexing is, page images and texts, passages with
their embeddings (keyword-only functions over a session)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.schema import Document, Page, PageEmbedding, Passage
from pageqa.errors import NotFoundError


def _unindexed(stmt, *, visual_model: str | None, text_model: str):
    """Restrict a pages query to pages missing the text index of ``text_model`` or the visual embedding with its
    pooled tiers."""
    missing = Page.text_indexed_by.is_distinct_from(text_model)
    if visual_model is not None:
        has = select(PageEmbedding.page_id).where(
            PageEmbedding.model_id == visual_model, PageEmbedding.visual_index_id.is_not(None)
        )
        missing = missing | Page.id.not_in(has)
    return stmt.where(missing)


def pages_to_index(session: Session, *, corpus_id: int, visual_model: str | None, text_model: str) -> list[int]:
    """Ids of the corpus's pages not fully indexed yet (text passages of ``text_model``, and the multi-vector of
    ``visual_model`` unless None) and not failed (``index_error``), in document and page order."""
    stmt = (
        select(Page.id)
        .join(Document, Document.id == Page.document_id)
        .where(Document.corpus_id == corpus_id, Page.index_error.is_(None))
        .order_by(Page.document_id, Page.page_number)
    )
    return list(session.scalars(_unindexed(stmt, visual_model=visual_model, text_model=text_model)))


@dataclass(frozen=True)
class IndexProgress:
    """Pages of a corpus: fully indexed, failed (not indexed, with an ``index_error``), and in all."""

    indexed: int
    failed: int
    total: int

    @property
    def ended(self) -> bool:
        """Whether no page is left waiting for a worker."""
        return self.indexed + self.failed >= self.total


def count_indexed(session: Session, *, corpus_id: int, visual_model: str | None, text_model: str) -> IndexProgress:
    """Indexed, failed and all pages of the corpus, as :func:`pages_to_index` defines indexed."""
    total = count_pages(session, corpus_id=corpus_id)
    base = select(func.count(Page.id), func.count(Page.index_error)).join(Document, Document.id == Page.document_id)
    base = base.where(Document.corpus_id == corpus_id)
    missing, failed = session.execute(_unindexed(base, visual_model=visual_model, text_model=text_model)).one()
    return IndexProgress(total - missing, failed, total)


def record_index_errors(session: Session, *, errors: dict[int, str]) -> None:
    """Store each page's one-line indexing error (``{page_id: error}``)."""
    if errors:
        session.execute(update(Page), [{"id": pid, "index_error": e[:2000]} for pid, e in errors.items()])


def index_errors(session: Session, *, corpus_id: int) -> list[str]:
    """One line per failed page of the corpus: ``"<document> page <n>: cannot index (<error>)"``."""
    stmt = (
        select(Document.source, Page.page_number, Page.index_error)
        .join(Document, Document.id == Page.document_id)
        .where(Document.corpus_id == corpus_id, Page.index_error.is_not(None))
        .order_by(Page.document_id, Page.page_number)
    )
    return [f"{source} page {n}: cannot index ({error})" for source, n, error in session.execute(stmt)]


def clear_index_errors(session: Session, *, corpus_id: int) -> int:
    """Forget the corpus's indexing errors, so its failed pages are queued again; returns how many."""
    docs = select(Document.id).where(Document.corpus_id == corpus_id)
    result = session.execute(
        update(Page).where(Page.document_id.in_(docs), Page.index_error.is_not(None)).values(index_error=None)
    )
    return result.rowcount


def count_pages(session: Session, *, corpus_id: int) -> int:
    """Pages of the corpus."""
    stmt = select(func.count(Page.id)).join(Document, Document.id == Page.document_id)
    return session.scalar(stmt.where(Document.corpus_id == corpus_id)) or 0


def load_pages(session: Session, *, page_ids: Sequence[int]) -> list[Page]:
    """Pages by id, in the order of ``page_ids``.

    Raises:
        NotFoundError: an id has no page (deleted since it was queued).
    """
    rows = {p.id: p for p in session.scalars(select(Page).where(Page.id.in_(page_ids)))}
    missing = [i for i in page_ids if i not in rows]
    if missing:
        raise NotFoundError(f"pages not found: {missing[:10]}")
    return [rows[i] for i in page_ids]


def pages_needing_tiers(session: Session, *, page_ids: Sequence[int], model_id: str) -> tuple[list[int], list[int]]:
    """Those of ``page_ids`` with no embedding from ``model_id`` (to embed), and those whose embedding predates
    pooling (to pool from the stored multi-vector)."""
    rows = dict(session.execute(
        select(PageEmbedding.page_id, PageEmbedding.visual_index_id)
        .where(PageEmbedding.model_id == model_id, PageEmbedding.page_id.in_(page_ids))
    ).all())
    return [p for p in page_ids if p not in rows], [p for p in page_ids if p in rows and rows[p] is None]


def set_page_text(session: Session, *, page_id: int, text: str, source: str) -> None:
    """Replace a page's text (``source``: 'pdf', 'ocr' or 'none'); its full-text vector follows (generated)."""
    session.execute(update(Page).where(Page.id == page_id).values(text=text, text_source=source))


def store_passages(
    session: Session, *, page_id: int, model_id: str, texts: Sequence[str], vectors: np.ndarray
) -> None:
    """Replace the page's passages for ``model_id`` with ``texts`` and their ``(n, 384) float32`` embeddings, and
    mark the page text-indexed by ``model_id`` (also when it has no passage)."""
    session.execute(delete(Passage).where(Passage.page_id == page_id, Passage.model_id == model_id))
    if texts:
        session.execute(insert(Passage), [
            {"page_id": page_id, "model_id": model_id, "ordinal": i, "text": t, "embedding": v}
            for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
        ])
    session.execute(update(Page).where(Page.id == page_id).values(text_indexed_by=model_id))


def page_texts(session: Session, *, page_ids: Sequence[int]) -> dict[int, str]:
    """Page id → text (PDF text layer or OCR)."""
    return dict(session.execute(select(Page.id, Page.text).where(Page.id.in_(page_ids))).tuples().all())


def page_ids_of_document(session: Session, *, document_id: int) -> list[int]:
    """The document's page ids in page order."""
    return list(session.scalars(select(Page.id).where(Page.document_id == document_id).order_by(Page.page_number)))
