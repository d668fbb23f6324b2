"""Late-interaction storage inside PostgreSQL: the tiers of every page multi-vector, their bulk load through binary
``COPY``, the first stage's HNSW index, and reading the tiers of given pages. The queries of the search stages that
run over them are :mod:`db.visual_search`.

Tiers per page (sizes for a ColQwen2 page of ~735 patch vectors of 128 dims):

* exact: ``page_embeddings.vectors``, ``(n, 128) float16`` bytes, ~188 KB, stored out of line uncompressed;
* fine pooled: ``page_embeddings.fine``, ``(64, 128) float16`` k-means centroids, 16 KB;
* coarse pooled: 16 ``halfvec(128)`` rows of ``page_pool_vectors`` under a pgvector HNSW index (inner product),
  the first stage.

Every function here takes a psycopg 3 connection (``raw_connection`` gets the one under a SQLAlchemy session), so
that a search or a load runs in the caller's transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector
from sqlalchemy.orm import Session

from pageqa.errors import ConfigError

#: Name of the first stage's HNSW index (see the 0003 migration).
HNSW_INDEX = "ix_page_pool_vectors_hnsw"

HNSW_INDEX_SQL = (
    f"CREATE INDEX IF NOT EXISTS {HNSW_INDEX} ON page_pool_vectors USING hnsw (vector halfvec_ip_ops)"
)


def raw_connection(session: Session) -> psycopg.Connection:
    """The psycopg connection under ``session``, inside its transaction, with pgvector's types registered."""
    conn = session.connection().connection.driver_connection
    if not getattr(conn, "_pageqa_vector", False):
        register_vector(conn)
        conn._pageqa_vector = True  # type: ignore[attr-defined]
    return conn


def connect(conninfo: str) -> psycopg.Connection:
    """A new psycopg connection (not autocommit) with pgvector's types registered."""
    conn = psycopg.connect(conninfo)
    register_vector(conn)
    return conn


@dataclass(frozen=True)
class VisualIndexRef:
    """A corpus's late-interaction index: its row id, retriever model and pooling spec name."""

    id: int
    corpus_id: int
    model_id: str
    pooling: str


def visual_index(conn: psycopg.Connection, *, corpus_id: int, model_id: str) -> VisualIndexRef | None:
    """The corpus's index for ``model_id``, or None before its first page is stored."""
    row = conn.execute(
        "SELECT id, pooling FROM visual_indexes WHERE corpus_id = %s AND model_id = %s", (corpus_id, model_id)
    ).fetchone()
    return None if row is None else VisualIndexRef(row[0], corpus_id, model_id, row[1])


def ensure_visual_index(
    conn: psycopg.Connection, *, corpus_id: int, model_id: str, pooling: str, dim: int
) -> VisualIndexRef:
    """The corpus's index for ``model_id``, created with ``pooling`` on first use.

    Raises:
        ConfigError: the corpus was indexed with another pooling; pages pooled two ways are never mixed.
    """
    conn.execute(
        "INSERT INTO visual_indexes (corpus_id, model_id, pooling, dim) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (corpus_id, model_id) DO NOTHING",
        (corpus_id, model_id, pooling, dim),
    )
    ref = visual_index(conn, corpus_id=corpus_id, model_id=model_id)
    assert ref is not None
    check_pooling(ref, pooling)
    return ref


def check_pooling(ref: VisualIndexRef, pooling: str) -> None:
    """Refuse to add to or search an index built with another pooling.

    Raises:
        ConfigError: ``pooling`` differs from the index's; the message says how to proceed.
    """
    if ref.pooling != pooling:
        raise ConfigError(
            f"corpus {ref.corpus_id} was indexed for {ref.model_id} with pooling {ref.pooling}, but the settings "
            f"give {pooling}; set PAGEQA_POOL_COARSE/PAGEQA_POOL_FINE/PAGEQA_POOL_ITERS to match, or delete and "
            "re-ingest the corpus"
        )


@dataclass(frozen=True)
class PageTiers:
    """What is stored for one page: its exact ``(n, dim) float16`` multi-vector and its pooled tiers, ``coarse
    (k_c, dim)`` and ``fine (k_f, dim)`` float16 unit vectors (:func:`models.pooling.pool_pages` makes them)."""

    page_id: int
    document_id: int
    vectors: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray


def store_tiers(
    conn: psycopg.Connection, index: VisualIndexRef, pages: Sequence[PageTiers], *,
    colpali_version: str, max_pixels: int,
) -> int:
    """Store pages' tiers with binary ``COPY`` (psycopg 3 + pgvector's ``halfvec`` dumper); idempotent.

    The pages' rows are locked first, so two workers storing the same page store it once; a page that already has
    an embedding for the index's model keeps it, and if that embedding predates pooling (no pooled tiers) its
    tiers are filled in. Returns the pages stored or completed.
    """
    if not pages:
        return 0
    ids = [p.page_id for p in pages]
    conn.execute("SELECT id FROM pages WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (ids,))
    existing = dict(conn.execute(
        "SELECT page_id, visual_index_id FROM page_embeddings WHERE model_id = %s AND page_id = ANY(%s)",
        (index.model_id, ids),
    ).fetchall())
    new = [p for p in pages if p.page_id not in existing]
    legacy = [p for p in pages if p.page_id in existing and existing[p.page_id] is None]
    emb_ids = _next_ids(conn, "page_embeddings_id_seq", len(new))
    with conn.cursor().copy(
        "COPY page_embeddings (id, page_id, model_id, colpali_version, max_pixels, n_vectors, dim, vectors, "
        "visual_index_id, n_fine, fine) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", "int4", "text", "text", "int4", "int4", "int4", "bytea", "int4", "int4", "bytea"])
        for emb_id, p in zip(emb_ids, new, strict=True):
            v = np.ascontiguousarray(p.vectors, dtype=np.float16)
            copy.write_row((
                emb_id, p.page_id, index.model_id, colpali_version, max_pixels, v.shape[0], v.shape[1],
                v.tobytes(), index.id, p.fine.shape[0], _f16(p.fine),
            ))
    legacy_ids = []
    for p in legacy:
        row = conn.execute(
            "UPDATE page_embeddings SET visual_index_id = %s, n_fine = %s, fine = %s "
            "WHERE page_id = %s AND model_id = %s RETURNING id",
            (index.id, p.fine.shape[0], _f16(p.fine), p.page_id, index.model_id),
        ).fetchone()
        legacy_ids.append(row[0])
    copy_pool_vectors(conn, index, list(zip(emb_ids + legacy_ids, new + legacy, strict=True)))
    return len(new) + len(legacy)


def copy_pool_vectors(conn: psycopg.Connection, index: VisualIndexRef, rows: Sequence[tuple[int, PageTiers]]) -> None:
    """``COPY`` the coarse pooled vectors of (embedding id, page) pairs into the first stage's table."""
    with conn.cursor().copy(
        "COPY page_pool_vectors (embedding_id, visual_index_id, document_id, page_id, vector) "
        "FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int4", "int4", "int4", "int4", "halfvec"])
        for emb_id, p in rows:
            for vec in p.coarse:
                copy.write_row((emb_id, index.id, p.document_id, p.page_id, HalfVector(vec)))


def _next_ids(conn: psycopg.Connection, sequence: str, n: int) -> list[int]:
    if n == 0:
        return []
    return [r[0] for r in conn.execute("SELECT nextval(%s) FROM generate_series(1, %s::int)", (sequence, n))]


def _f16(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.float16).tobytes()


def drop_first_stage_index(conn: psycopg.Connection) -> None:
    """Drop the HNSW index before a bulk load (rebuilding once is much faster than inserting into it)."""
    conn.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")


def build_first_stage_index(conn: psycopg.Connection, *, maintenance_work_mem: str | None = None,
                            workers: int | None = None) -> None:
    """(Re)build the HNSW index after a bulk load, with ``maintenance_work_mem`` sized so the graph is built in
    memory and ``workers`` parallel maintenance workers (pgvector builds HNSW in parallel since 0.6); None keeps
    the server's setting (on the embedded server, sized to the machine: ``PAGEQA_PG_MAINTENANCE_WORK_MEM``,
    ``PAGEQA_PG_MAX_PARALLEL_MAINTENANCE_WORKERS``).

    Raises:
        ConfigError: ``maintenance_work_mem`` is not a PostgreSQL memory size such as ``512MB`` or ``4GB``.
    """
    if maintenance_work_mem is not None:
        if not re.fullmatch(r"\d+\s*(kB|MB|GB|TB)", maintenance_work_mem):
            raise ConfigError(f"maintenance_work_mem {maintenance_work_mem!r} is not a size like 512MB or 4GB")
        conn.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
    if workers is not None:
        conn.execute(f"SET max_parallel_maintenance_workers = {int(workers)}")
    conn.execute(HNSW_INDEX_SQL)
    conn.execute("RESET maintenance_work_mem")
    conn.execute("RESET max_parallel_maintenance_workers")


def fetch_fine(conn: psycopg.Connection, index: VisualIndexRef, page_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """The fine pooled tier, ``(n_fine, dim) float16``, of each page id that has one."""
    rows = conn.execute(
        "SELECT page_id, n_fine, dim, fine FROM page_embeddings WHERE visual_index_id = %s AND page_id = ANY(%s)",
        (index.id, list(page_ids)), binary=True,
    )
    return {pid: np.frombuffer(raw, dtype=np.float16).reshape(n, dim) for pid, n, dim, raw in rows}


def fetch_exact(conn: psycopg.Connection, *, model_id: str, page_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """The exact tier, ``(n_vectors, dim) float16``, of each page id embedded by ``model_id``."""
    rows = conn.execute(
        "SELECT page_id, n_vectors, dim, vectors FROM page_embeddings WHERE model_id = %s AND page_id = ANY(%s)",
        (model_id, list(page_ids)), binary=True,
    )
    return {pid: np.frombuffer(raw, dtype=np.float16).reshape(n, dim) for pid, n, dim, raw in rows}


def count_pool_vectors(conn: psycopg.Connection) -> int:
    """Rows of the first stage's table (every corpus)."""
    return conn.execute("SELECT count(*) FROM page_pool_vectors").fetchone()[0]
