"""Indexing pages with the resident models: OCR for pages without a text layer, passages with dense text
embeddings, and, when the model set has a visual retriever, the ColQwen2 multi-vector with its pooled tiers
(:mod:`db.multivector`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from db import corpus as corpus_db
from db import multivector as mv
from db import pages as pages_db
from db.engine import TRANSIENT, session_scope
from db.schema import VISUAL_DIM, Page
from models.images import decode_image
from models.passages import split_passages
from models.pooling import PoolingSpec, pool_pages
from models.retriever import COLPALI_VERSION
from pageqa.errors import one_line
from pageqa.settings import Settings
from worker import resident

log = logging.getLogger(__name__)


def index_pages(settings: Settings, page_ids: list[int]) -> int:
    """Index the pages with these ids, skipping what is already done for the resident models; returns the pages
    whose text index was (re)built.

    A page that cannot be indexed (a model or data error) gets its one-line error in ``pages.index_error`` and the
    others are indexed: a failing visual batch is embedded again page by page to find the failing pages. Ingest
    stops waiting for failed pages and lists them. The work is idempotent.

    Raises:
        sqlalchemy.exc.OperationalError, psycopg.OperationalError: the database is unreachable
            (:data:`db.engine.TRANSIENT`); the caller retries the whole task.
    """
    pipe = resident.pipeline(settings)
    with session_scope(settings) as session:
        pages = pages_db.load_pages(session, page_ids=page_ids)
        to_embed, to_pool = (
            pages_db.pages_needing_tiers(session, page_ids=page_ids, model_id=pipe.retriever.model_id)
            if pipe.retriever else ([], [])
        )
    failed: dict[int, str] = {}
    text_todo = [p for p in pages if p.text_indexed_by != pipe.text_encoder.model_id]
    for page in text_todo:
        _isolated(failed, [page], lambda one: _index_text(settings, one[0]))
    embed = [p for p in pages if p.id in set(to_embed) and p.id not in failed]
    pool = [p for p in pages if p.id in set(to_pool) and p.id not in failed]
    if embed or pool:
        both = embed + pool
        _isolated(failed, both, lambda some: _index_visual(
            settings, [p for p in some if p in embed], [p for p in some if p in pool]))
    if failed:
        with session_scope(settings) as session:
            pages_db.record_index_errors(session, errors=failed)
    log.info("indexed %d pages (%d text, %d embedded, %d pooled from stored vectors, %d failed)",
             len(pages), len(text_todo), len(embed), len(pool), len(failed))
    return len(text_todo)


def _isolated(failed: dict[int, str], pages: list[Page], run: Callable[[list[Page]], None]) -> None:
    """``run(pages)``; on a model or data error, ``run`` each page alone and note the pages that still fail in
    ``failed`` (page id -> one-line error). Transient errors propagate."""
    try:
        run(pages)
        return
    except TRANSIENT:
        raise
    except Exception as exc:  # a bad page must not keep the others unindexed
        if len(pages) == 1:
            log.exception("page %d cannot be indexed", pages[0].id)
            failed[pages[0].id] = one_line(exc)
            return
        log.warning("indexing %d pages failed together (%s); indexing them one by one", len(pages), one_line(exc))
    for page in pages:
        _isolated(failed, [page], run)


def _index_text(settings: Settings, page: Page) -> None:
    """OCR the page if it has no text layer (and OCR is on), then store its passages and their embeddings."""
    encoder = resident.pipeline(settings).text_encoder
    text, source = page.text, page.text_source
    if source == "none" and settings.ocr:
        result = resident.ocr().read(decode_image(page.image))
        text, source = result.text, "ocr"
        log.info("OCR page %d: %d lines in %.0f ms", page.id, result.n_lines, result.ms)
    passages = split_passages(text, max_words=settings.passage_words)
    vectors = encoder.encode(passages, batch_size=settings.text_batch_size)  # (n_passages, 384) float32
    with session_scope(settings) as session:
        if source == "ocr":
            pages_db.set_page_text(session, page_id=page.id, text=text, source=source)
        pages_db.store_passages(session, page_id=page.id, model_id=encoder.model_id, texts=passages, vectors=vectors)


def _index_visual(settings: Settings, to_embed: list[Page], to_pool: list[Page]) -> None:
    """Embed ``to_embed`` with ColQwen2, read the stored multi-vectors of ``to_pool`` (embedded before pooling
    existed), pool all of them on the worker's device, and store the tiers with binary COPY.

    Raises:
        ConfigError: the corpus's visual index was built with another pooling than the settings give.
    """
    pipe = resident.pipeline(settings)
    retriever, spec = pipe.retriever, PoolingSpec.of(settings)
    with pipe.residency.active("retrieve"):
        embedded = retriever.embed_pages([decode_image(p.image) for p in to_embed], batch_size=settings.embed_batch_size)
    vectors = dict(zip([p.id for p in to_embed], embedded, strict=True))
    if to_pool:
        with session_scope(settings) as session:
            vectors |= mv.fetch_exact(mv.raw_connection(session), model_id=retriever.model_id,
                                      page_ids=[p.id for p in to_pool])
    pages = to_embed + to_pool
    pooled = pool_pages([vectors[p.id] for p in pages], spec, device=pipe.device)
    with session_scope(settings) as session:
        conn = mv.raw_connection(session)
        corpus_of = corpus_db.corpus_of_documents(session, document_ids=sorted({p.document_id for p in pages}))
        for corpus_id in sorted(set(corpus_of.values())):
            index = mv.ensure_visual_index(
                conn, corpus_id=corpus_id, model_id=retriever.model_id, pooling=spec.name, dim=VISUAL_DIM
            )
            tiers = [
                mv.PageTiers(p.id, p.document_id, vectors[p.id], pool.coarse, pool.fine)
                for p, pool in zip(pages, pooled, strict=True) if corpus_of[p.document_id] == corpus_id
            ]
            mv.store_tiers(conn, index, tiers, colpali_version=COLPALI_VERSION, max_pixels=retriever.max_pixels)


def rebuild_first_stage_index(settings: Settings, *, maintenance_work_mem: str | None = None,
                              workers: int | None = None) -> int:
    """Drop and rebuild the HNSW index of the coarse pooled vectors in one transaction (after a large bulk load one
    build is much faster than inserting page by page; searches wait for it); returns the vectors indexed.
    ``maintenance_work_mem`` is PostgreSQL's memory for the build (e.g. ``"4GB"``), ``workers`` its parallel
    maintenance workers; None keeps the server's settings (the embedded server's are sized to the machine).

    Raises:
        ConfigError: ``maintenance_work_mem`` is not a PostgreSQL memory size.
    """
    with session_scope(settings) as session:
        conn = mv.raw_connection(session)
        mv.drop_first_stage_index(conn)
        mv.build_first_stage_index(conn, maintenance_work_mem=maintenance_work_mem, workers=workers)
        return mv.count_pool_vectors(conn)
