"""Data access for corpora, documents, pages and page embeddings (keyword-only functions over a session)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.schema import Corpus, Document, Page, PageEmbedding, Passage
from pageqa.errors import NotFoundError

NAME_MAX_CHARS = 300  # a document's title or file name as stored: longer than file names get, short enough to show


def get_or_create_corpus(session: Session, *, name: str, tenant: str = "default") -> Corpus:
    """The tenant's corpus called ``name``, created when missing (safe under concurrent callers)."""
    session.execute(insert(Corpus).values(name=name, tenant=tenant)
                    .on_conflict_do_nothing(index_elements=["tenant", "name"]))
    return session.scalars(select(Corpus).where(Corpus.tenant == tenant, Corpus.name == name)).one()


def get_corpus(session: Session, *, name: str, tenant: str = "default") -> Corpus:
    """The tenant's corpus called ``name`` (another tenant's corpus of that name is not found).

    Raises:
        NotFoundError: no such corpus.
    """
    corpus = None
    if "\x00" not in name:  # PostgreSQL refuses NUL in text: no corpus can be named so
        corpus = session.scalars(select(Corpus).where(Corpus.tenant == tenant, Corpus.name == name)).one_or_none()
    if corpus is None:
        raise NotFoundError(f"no corpus named {name!r} (ingest documents into it first: pageqa ingest --corpus)")
    return corpus


def find_document(session: Session, *, corpus_id: int, sha256: str) -> Document | None:
    """The document of the corpus with these bytes, if already ingested."""
    return session.scalars(
        select(Document).where(Document.corpus_id == corpus_id, Document.sha256 == sha256)
    ).one_or_none()


def documents_by_name(session: Session, *, corpus_id: int) -> dict[str, Document]:
    """The corpus's documents keyed by source file name and by title (for per-question document filters)."""
    docs = session.scalars(select(Document).where(Document.corpus_id == corpus_id).order_by(Document.id)).all()
    keyed: dict[str, Document] = {}
    for doc in docs:
        keyed.setdefault(doc.title, doc)
        keyed[doc.source] = doc
    return keyed


@dataclass(frozen=True)
class PageRecord:
    """A page ready to store: 1-based number, compressed image bytes and size in pixels, PDF text layer."""

    page_number: int
    image: bytes
    image_format: str
    width: int
    height: int
    text: str

    @property
    def text_source(self) -> str:
        """'pdf' when the text layer has text, else 'none' (OCR may fill it later)."""
        return "pdf" if self.text.strip() else "none"


def clean_name(text: str) -> str:
    """``text`` as a one-line name: runs of whitespace become one space, other characters that are not printable
    (NUL, escapes, bidi overrides) U+FFFD; at most ``NAME_MAX_CHARS`` characters."""
    text = " ".join(text.split())
    return "".join(c if c.isprintable() else "\ufffd" for c in text)[:NAME_MAX_CHARS]


def clean_file_name(name: str) -> str:
    """``name`` cleaned as by :func:`clean_name`, with ``/`` and ``\\`` replaced by ``_`` and a name of dots only
    prefixed with ``_``: it is one path component other than ``.`` or ``..``, so no code that later names a file
    after a document can leave its folder."""
    name = clean_name(name.replace("/", "_").replace("\\", "_"))
    return "_" + name if set(name) <= {"."} else name


def add_document(
    session: Session, *, corpus_id: int, sha256: str, title: str, source: str, kind: str, size_bytes: int,
    pages: Sequence[PageRecord],
) -> Document:
    """Store a document and its pages in one transaction; returns the document (pages get ids on flush).

    ``title`` (PDF metadata, any text) is stored as :func:`clean_name` makes it, ``source`` (the file name) as
    :func:`clean_file_name` does, and NUL is dropped from page text: PostgreSQL text cannot hold it.
    """
    doc = Document(
        corpus_id=corpus_id, sha256=sha256, title=clean_name(title), source=clean_file_name(source), kind=kind,
        page_count=len(pages), size_bytes=size_bytes,
    )
    session.add(doc)
    session.flush()
    session.add_all(
        Page(
            document_id=doc.id, page_number=p.page_number, image=p.image, image_format=p.image_format,
            width=p.width, height=p.height, text=p.text.replace("\x00", ""), text_source=p.text_source,
        )
        for p in pages
    )
    session.flush()
    return doc


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


def corpus_version(session: Session, *, corpus_id: int) -> str:
    """A cheap fingerprint of a corpus's content, ``"<documents>:<pages>:<newest document id>"``: it changes when
    documents are added or deleted, so answers from before the change are not reused. It reads the documents
    table only, since it runs once per answering task and a corpus has far fewer documents than pages."""
    n, pages, newest = session.execute(
        select(func.count(Document.id), func.coalesce(func.sum(Document.page_count), 0), func.max(Document.id))
        .where(Document.corpus_id == corpus_id)
    ).one()
    return f"{n}:{pages}:{newest or 0}"


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


def corpus_of_documents(session: Session, *, document_ids: Sequence[int]) -> dict[int, int]:
    """Corpus id per document id."""
    return dict(session.execute(select(Document.id, Document.corpus_id).where(Document.id.in_(document_ids))).all())


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


@dataclass(frozen=True)
class Deleted:
    """What a delete removed: documents, pages, multi-vectors, passages and citations (counts)."""

    documents: int
    pages: int
    embeddings: int
    passages: int
    citations: int


def delete_documents(session: Session, *, corpus_id: int, document_ids: Sequence[int] | None = None) -> Deleted:
    """Delete documents of a corpus (all of them when ``document_ids`` is None) with their pages, multi-vectors,
    passages, lane hits and citations (foreign keys cascade; counted first). Answers stay, minus those citations.
    """
    from db.schema import Citation

    docs = select(Document.id).where(Document.corpus_id == corpus_id)
    if document_ids is not None:
        docs = docs.where(Document.id.in_(document_ids))
    pages = select(Page.id).where(Page.document_id.in_(docs))

    def count(model, column) -> int:
        return session.scalar(select(func.count()).select_from(model).where(column.in_(pages))) or 0

    counts = Deleted(
        documents=session.scalar(select(func.count()).select_from(docs.subquery())) or 0,
        pages=count(Page, Page.id),
        embeddings=count(PageEmbedding, PageEmbedding.page_id),
        passages=count(Passage, Passage.page_id),
        citations=count(Citation, Citation.page_id),
    )
    session.execute(delete(Document).where(Document.id.in_(docs)))
    return counts
