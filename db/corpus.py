"""Data access for corpora, documents, pages and page embeddings (keyword-only functions over a session)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.schema import Corpus, Document, Page, PageEmbedding, Passage, Question
from pageqa.domain import QuestionStatus, check_name, check_tenant
from pageqa.errors import DuplicateDocumentError, NotFoundError

NAME_MAX_CHARS = 300  # a document's title or file name as stored: longer than file names get, short enough to show


def get_or_create_corpus(session: Session, *, name: str, tenant: str = "default") -> Corpus:
    """The tenant's corpus called ``name``, created when missing (safe under concurrent callers).

    Raises:
        InputError: ``name`` is not a name or ``tenant`` not a tenant's (:func:`pageqa.domain.check_name`,
            :func:`~pageqa.domain.check_tenant`); nothing is created.
    """
    check_name(name, what="corpus name")
    check_tenant(tenant)
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


def list_corpora(session: Session, *, tenant: str | None = None, name: str | None = None) -> list[Corpus]:
    """Corpora by tenant and name, of ``tenant`` (None: every tenant's) and called ``name`` (None: any)."""
    stmt = select(Corpus).order_by(Corpus.tenant, Corpus.name)
    if tenant is not None:
        stmt = stmt.where(Corpus.tenant == tenant)
    if name is not None:
        stmt = stmt.where(Corpus.name == name)
    return list(session.scalars(stmt))


def corpus_name(session: Session, *, corpus_id: int) -> str:
    """The name of the corpus with this id."""
    return session.scalars(select(Corpus.name).where(Corpus.id == corpus_id)).one()


def count_documents(session: Session, *, corpus_id: int) -> int:
    """How many documents the corpus holds."""
    return session.scalar(select(func.count(Document.id)).where(Document.corpus_id == corpus_id))


def list_documents(session: Session, *, corpus_id: int) -> list[Document]:
    """The corpus's documents in the order they were added."""
    return list(session.scalars(select(Document).where(Document.corpus_id == corpus_id).order_by(Document.id)))


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


SUFFIX_MAX_CHARS = 16  # a longer "suffix" is part of the name, not a file type: ".pdf", ".jpeg", ".webp"


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


def clean_name(text: str) -> str:
    """``text`` as a one-line name: runs of whitespace become one space, other characters that are not printable
    (NUL, escapes, bidi overrides) U+FFFD; at most ``NAME_MAX_CHARS`` characters."""
    return _one_line(text)[:NAME_MAX_CHARS]


def clean_file_name(name: str) -> str:
    """``name`` made one line as by :func:`clean_name`, with ``/`` and ``\\`` replaced by ``_`` and a name of dots
    only prefixed with ``_``: it is one path component other than ``.`` or ``..``, so no code that later names a file
    after a document can leave its folder. A name over ``NAME_MAX_CHARS`` characters is cut before its suffix,
    which is kept: ``.pdf`` still says what the file is."""
    name = _one_line(name.replace("/", "_").replace("\\", "_"))
    if len(name) > NAME_MAX_CHARS:
        suffix = PurePath(name).suffix
        suffix = suffix if len(suffix) <= SUFFIX_MAX_CHARS else ""
        name = name[: NAME_MAX_CHARS - len(suffix)] + suffix
    return "_" + name if set(name) <= {"."} else name


def add_document(
    session: Session, *, corpus_id: int, sha256: str, title: str, source: str, kind: str, size_bytes: int,
    pages: Sequence[PageRecord],
) -> Document:
    """Store a document and its pages in one transaction; returns the document (pages get ids on flush).

    ``title`` (PDF metadata, any text) is stored as :func:`clean_name` makes it, ``source`` (the file name) as
    :func:`clean_file_name` does, and NUL is dropped from page text: PostgreSQL text cannot hold it.

    Raises:
        DuplicateDocumentError: the corpus has a document with this ``sha256``, maybe stored by a concurrent
            ingest since the caller looked (``INSERT … ON CONFLICT DO NOTHING`` waits for that one to commit).
    """
    doc = session.scalars(
        insert(Document).values(
            corpus_id=corpus_id, sha256=sha256, title=clean_name(title), source=clean_file_name(source), kind=kind,
            page_count=len(pages), size_bytes=size_bytes,
        ).on_conflict_do_nothing(index_elements=["corpus_id", "sha256"]).returning(Document)
    ).one_or_none()
    if doc is None:
        raise DuplicateDocumentError("already in the corpus (a document with the same bytes)")
    session.add_all(
        Page(
            document_id=doc.id, page_number=p.page_number, image=p.image, image_format=p.image_format,
            width=p.width, height=p.height, text=p.text.replace("\x00", ""), text_source=p.text_source,
        )
        for p in pages
    )
    session.flush()
    return doc


def corpus_version(session: Session, *, corpus_id: int) -> str:
    """A cheap fingerprint of a corpus's content, ``"<documents>:<pages>:<newest document id>"``: it changes when
    documents are added or deleted, so answers from before the change are not reused. It reads the documents
    table only, since it runs once per answering task and a corpus has far fewer documents than pages."""
    n, pages, newest = session.execute(
        select(func.count(Document.id), func.coalesce(func.sum(Document.page_count), 0), func.max(Document.id))
        .where(Document.corpus_id == corpus_id)
    ).one()
    return f"{n}:{pages}:{newest or 0}"


def corpus_of_documents(session: Session, *, document_ids: Sequence[int]) -> dict[int, int]:
    """Corpus id per document id."""
    return dict(session.execute(select(Document.id, Document.corpus_id).where(Document.id.in_(document_ids))).all())


@dataclass(frozen=True)
class Deleted:
    """What a delete removed: documents, pages, multi-vectors, passages and citations (counts), and the unanswered
    questions restricted to a deleted document that it failed, with their jobs."""

    documents: int
    pages: int
    embeddings: int
    passages: int
    citations: int
    questions_failed: int = 0
    jobs: tuple[str, ...] = ()


#: The last error of a question whose document filter was deleted before it was answered.
DOCUMENT_DELETED = "its document was deleted from the corpus before it was answered (a document filter never widens)"


def delete_documents(session: Session, *, corpus_id: int, document_ids: Sequence[int] | None = None) -> Deleted:
    """Delete documents of a corpus (all of them when ``document_ids`` is None) with their pages, multi-vectors,
    passages, lane hits and citations (foreign keys cascade; counted first). Answers stay, minus those citations.

    Questions restricted to a deleted document that have not ended (``queued`` or ``running``) are ``failed`` with
    :data:`DOCUMENT_DELETED` first, in the same transaction: the foreign key then clears their ``document_id``, and
    a question left waiting would be answered from the whole corpus. A worker running one finds it ended and does
    not write its answer. The caller ends the jobs in :attr:`Deleted.jobs` that have nothing left to run.
    """
    from db.schema import Citation

    docs = select(Document.id).where(Document.corpus_id == corpus_id)
    if document_ids is not None:
        docs = docs.where(Document.id.in_(document_ids))
    pages = select(Page.id).where(Page.document_id.in_(docs))

    def count(model, column) -> int:
        return session.scalar(select(func.count()).select_from(model).where(column.in_(pages))) or 0

    failed = session.scalars(
        update(Question)
        .where(Question.document_id.in_(docs),
               Question.status.in_([QuestionStatus.queued, QuestionStatus.running]))
        .values(status=QuestionStatus.failed, last_error=DOCUMENT_DELETED, lease_expires_at=None)
        .returning(Question.job_id)
    ).all()
    counts = Deleted(
        questions_failed=len(failed), jobs=tuple(sorted(set(failed))),
        documents=session.scalar(select(func.count()).select_from(docs.subquery())) or 0,
        pages=count(Page, Page.id),
        embeddings=count(PageEmbedding, PageEmbedding.page_id),
        passages=count(Passage, Passage.page_id),
        citations=count(Citation, Citation.page_id),
    )
    session.execute(delete(Document).where(Document.id.in_(docs)))
    return counts
