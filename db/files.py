"""Data access for stored files (``/v1/files``): a file row, its content written and read in parts of at most
:data:`PART_BYTES`, listing a tenant's files a page at a time, deleting one. Ids look like OpenAI's: ``file-`` and
24 hex digits."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from typing import Literal

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from db.schema import FilePart, StoredFile
from pageqa.errors import NotFoundError

#: Largest part of a file's content in one row (1 MiB): what is held in memory while a file is written or read.
PART_BYTES = 1 << 20
FILE_ID = re.compile(r"file-[0-9a-f]{24}")


def new_file_id() -> str:
    """A new file id: ``file-`` and 24 random hex digits."""
    return f"file-{uuid.uuid4().hex[:24]}"


def store_file(
    session: Session, *, tenant: str, filename: str, purpose: str, chunks: Iterable[bytes],
    file_id: str | None = None,
) -> StoredFile:
    """Create a file of ``tenant`` with the content of ``chunks`` (any sizes; stored re-cut into parts of
    :data:`PART_BYTES`), in the caller's transaction; returns the row with its size in ``bytes``."""
    row = StoredFile(id=file_id or new_file_id(), tenant=tenant, filename=filename, purpose=purpose, bytes=0)
    session.add(row)
    session.flush()
    seq, pending = 0, bytearray()
    for chunk in chunks:
        pending += chunk
        row.bytes += len(chunk)
        while len(pending) >= PART_BYTES:
            _part(session, row.id, seq, bytes(pending[:PART_BYTES]))
            del pending[:PART_BYTES]
            seq += 1
    if pending:
        _part(session, row.id, seq, bytes(pending))
    session.flush()
    return row


def _part(session: Session, file_id: str, seq: int, data: bytes) -> None:
    session.execute(insert(FilePart).values(file_id=file_id, seq=seq, data=data))


def get_file(session: Session, *, file_id: str, tenant: str | None = None) -> StoredFile:
    """The file with this id; with ``tenant``, only that tenant's (another tenant's file is not found).

    Raises:
        NotFoundError: no such file.
    """
    row = session.get(StoredFile, file_id) if FILE_ID.fullmatch(file_id) else None
    if row is None or (tenant is not None and row.tenant != tenant):
        raise NotFoundError(f"no file {file_id!r}")
    return row


def iter_content(session: Session, *, file_id: str) -> Iterator[bytes]:
    """The file's content, one part (at most :data:`PART_BYTES`) per item, in order; read as consumed."""
    stmt = select(FilePart.data).where(FilePart.file_id == file_id).order_by(FilePart.seq)
    yield from session.scalars(stmt.execution_options(yield_per=2))


def list_files(
    session: Session, *, tenant: str, purpose: str | None = None, limit: int = 100, after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> tuple[list[StoredFile], bool]:
    """A page of the tenant's files by creation time (``order``), optionally of one ``purpose``, starting after
    the file ``after`` (the last id of the previous page); and whether more follow.

    Raises:
        NotFoundError: ``after`` is not a file of the tenant.
    """
    stmt = select(StoredFile).where(StoredFile.tenant == tenant)
    if purpose is not None:
        stmt = stmt.where(StoredFile.purpose == purpose)
    key = (StoredFile.created_at, StoredFile.id)
    if after is not None:
        cursor = get_file(session, file_id=after, tenant=tenant)
        older = (key[0] < cursor.created_at) | ((key[0] == cursor.created_at) & (key[1] < cursor.id))
        newer = (key[0] > cursor.created_at) | ((key[0] == cursor.created_at) & (key[1] > cursor.id))
        stmt = stmt.where(older if order == "desc" else newer)
    ordering = [k.desc() for k in key] if order == "desc" else list(key)
    rows = list(session.scalars(stmt.order_by(*ordering).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def delete_file(session: Session, *, file_id: str, tenant: str) -> None:
    """Delete the tenant's file and its content.

    Raises:
        NotFoundError: no such file of the tenant.
    """
    row = get_file(session, file_id=file_id, tenant=tenant)
    session.execute(delete(StoredFile).where(StoredFile.id == row.id))
