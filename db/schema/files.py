"""The tables of the OpenAI-compatible batch protocol (data access: :mod:`db.files`): stored files and their
content in parts, and the batch view of a job. A batch *is* a job (``batches.job_id`` is its id); its row keeps only
what the protocol adds to it: the input file, endpoint and window as sent, the caller's metadata, and the output and
error files once they are written."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.schema.base import Base, now_column


class StoredFile(Base):
    """A file of a tenant as ``/v1/files`` shows it: ``purpose`` ``batch`` (uploaded input) or ``batch_output`` (a
    batch's output or error file, written by pageqa), its size in ``bytes``; the content is in :class:`FilePart`
    rows, in order."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_tenant_created", "tenant", text("created_at DESC"), text("id DESC")),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = now_column()


class FilePart(Base):
    """One part of a file's content (at most :data:`db.files.PART_BYTES` bytes), ``seq`` 0, 1, … in order: parts
    keep a file of any size out of one ``bytea`` value and out of memory, on the way in and out."""

    __tablename__ = "file_parts"
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Batch(Base):
    """The batch view of a job created through ``POST /v1/batches``. ``input_file_id`` stays as sent even once the
    file is deleted; ``output_file_id``/``error_file_id`` are set when the job has ended and its files were written
    (``files_written_at``; either stays null when its file would be empty)."""

    __tablename__ = "batches"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    input_file_id: Mapped[str] = mapped_column(String(40))
    endpoint: Mapped[str] = mapped_column(Text)
    completion_window: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict | None] = mapped_column("metadata", JSONB)
    output_file_id: Mapped[str | None] = mapped_column(String(40))
    error_file_id: Mapped[str | None] = mapped_column(String(40))
    files_written_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
