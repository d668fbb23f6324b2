"""The retrieval benchmark's database: a fresh migrated database per corpus size, the synthetic corpus
(:mod:`scripts.bench.synthetic`) pooled and loaded with binary ``COPY`` while the exact MaxSim ground truth is
computed in memory, then the HNSW index built after the load."""

from __future__ import annotations

import logging
import time

import psycopg
import torch
from sqlalchemy.engine import URL, make_url

from db import multivector as mv
from db.engine import migrate, resolve_database_url
from models.late_interaction import maxsim
from models.pooling import PoolingSpec, pool_pages
from pageqa.settings import Settings
from scripts.bench.retrieval_report import Result
from scripts.bench.synthetic import DIM
from scripts.bench.synthetic_mixed import MixedCorpus

log = logging.getLogger(__name__)

PAGES_PER_DOCUMENT = 50
MODEL_ID = "synthetic-colqwen2"


def fresh_database(settings: Settings, name: str) -> str:
    """Create database ``name`` (dropping an earlier one), migrate it; its psycopg conninfo."""
    url = make_url(resolve_database_url(settings))
    drop_database(settings, name)
    with psycopg.connect(conninfo(url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    bench_url = url.set(database=name)
    migrate(settings.model_copy(update={"database_url": bench_url.render_as_string(hide_password=False)}))
    return conninfo(bench_url)


def drop_database(settings: Settings, name: str) -> None:
    """Drop database ``name`` if it exists, closing its connections."""
    url = make_url(resolve_database_url(settings))
    with psycopg.connect(conninfo(url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def conninfo(url: URL) -> str:
    """The psycopg conninfo of a SQLAlchemy ``url``, password included."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def load_corpus(conn: psycopg.Connection, corpus: MixedCorpus, qs: list[torch.Tensor], *, spec: PoolingSpec,
                device: torch.device, res: Result) -> tuple[int, mv.VisualIndexRef, torch.Tensor]:
    """Load every page of ``corpus`` batch by batch, the HNSW index dropped, and time each phase into ``res``.

    Returns the corpus id, the visual index and the ground truth: the exact MaxSim of every query of ``qs`` against
    every page, ``(n_queries, n_pages) float32``.
    """
    truth = torch.empty(len(qs), corpus.n_pages)
    corpus_id, doc_ids = _documents(conn, corpus.n_pages)
    index = mv.ensure_visual_index(conn, corpus_id=corpus_id, model_id=MODEL_ID, pooling=spec.name, dim=DIM)
    mv.drop_first_stage_index(conn)
    conn.commit()
    for start in corpus.batches():
        t0 = time.perf_counter()
        vectors, _ = corpus.batch(start)
        t1 = time.perf_counter()
        pooled = pool_pages(vectors, spec)
        t2 = time.perf_counter()
        truth[:, start : start + len(vectors)] = maxsim(qs, vectors, device=device, page_block=32)
        t3 = time.perf_counter()
        page_ids = _pages(conn, doc_ids, start, len(vectors))
        tiers = [
            mv.PageTiers(pid, doc_ids[(start + i) // PAGES_PER_DOCUMENT], v, p.coarse, p.fine)
            for i, (pid, v, p) in enumerate(zip(page_ids, vectors, pooled, strict=True))
        ]
        mv.store_tiers(conn, index, tiers, colpali_version="synthetic", max_pixels=0)
        conn.commit()
        t4 = time.perf_counter()
        res.generate_s += t1 - t0
        res.pool_s += t2 - t1
        res.truth_s += t3 - t2
        res.copy_s += t4 - t3
        log.info("N=%d: %d pages loaded (copy %.0f pages/s)", corpus.n_pages, start + len(vectors),
                 (start + len(vectors)) / res.copy_s)
    return corpus_id, index, truth


def build_index(conn: psycopg.Connection, res: Result) -> None:
    """Build the HNSW index after the load and analyse the tables; the build time, the bytes per page of each
    table and the server settings go into ``res``."""
    t0 = time.perf_counter()
    mv.build_first_stage_index(conn)  # the server's settings, as `pageqa index rebuild` builds it
    conn.commit()
    res.index_s = time.perf_counter() - t0
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE page_embeddings")
    conn.execute("VACUUM ANALYZE page_pool_vectors")
    conn.autocommit = False
    res.bytes_per_page = {
        table: conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0] / res.total_pages
        for table in ("page_embeddings", "page_pool_vectors", "visual_indexes")
    }
    res.server = _server_settings(conn)


def page_index(conn: psycopg.Connection, index: mv.VisualIndexRef) -> dict[int, int]:
    """Page id -> 0-based synthetic page index (pages were inserted in order)."""
    ids = sorted(r[0] for r in conn.execute(
        "SELECT page_id FROM page_embeddings WHERE visual_index_id = %s", (index.id,)
    ))
    return {pid: i for i, pid in enumerate(ids)}


def _documents(conn: psycopg.Connection, n_pages: int) -> tuple[int, list[int]]:
    """A corpus with one document per ``PAGES_PER_DOCUMENT`` pages; (corpus id, document ids in order)."""
    corpus_id = conn.execute("INSERT INTO corpora (name) VALUES ('synthetic') RETURNING id").fetchone()[0]
    n_docs = -(-n_pages // PAGES_PER_DOCUMENT)
    doc_ids = [r[0] for r in conn.execute(
        "INSERT INTO documents (corpus_id, sha256, title, source, kind, page_count, size_bytes) "
        "SELECT %s, md5(i::text) || md5(i::text), 'synthetic ' || i, 'synthetic-' || i || '.pdf', 'pdf', %s, 0 "
        "FROM generate_series(1, %s::int) i ORDER BY i RETURNING id",
        (corpus_id, PAGES_PER_DOCUMENT, n_docs),
    )]
    return corpus_id, doc_ids


def _pages(conn: psycopg.Connection, doc_ids: list[int], start: int, n: int) -> list[int]:
    """Page rows (no image, no text) for synthetic pages ``start … start + n - 1``; their ids in order."""
    return [r[0] for r in conn.execute(
        "INSERT INTO pages (document_id, page_number, width, height, image_format, image, text, text_source) "
        "SELECT (%s::int[])[i / %s + 1], i %% %s + 1, 0, 0, 'none', '', '', 'none' "
        "FROM generate_series(%s::int, %s::int) i ORDER BY i RETURNING id",
        (doc_ids, PAGES_PER_DOCUMENT, PAGES_PER_DOCUMENT, start, start + n - 1),
    )]


def _server_settings(conn: psycopg.Connection) -> str:
    """The server settings that matter for these figures, as one line."""
    shows = [f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}" for name in (
        "shared_buffers", "max_wal_size", "work_mem", "maintenance_work_mem", "max_parallel_maintenance_workers")]
    version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
    return ", ".join(shows) + f", pgvector {version}"
