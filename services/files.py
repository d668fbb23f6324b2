"""Stored files of the OpenAI-compatible ``/v1/files``: a tenant uploads a batch input file, pageqa writes each
batch's output and error files; each can be listed, read back and deleted. Content lives in PostgreSQL (in parts,
:mod:`db.files`), so any API process of a deployment serves any file and nothing lives on one host's disk."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from db import corpus as corpus_db
from db import files as files_db
from db.engine import session_scope
from db.schema import StoredFile
from pageqa.errors import InputError
from pageqa.settings import Settings

#: What a tenant may upload a file for: the input of a batch (pageqa stores nothing else).
UPLOAD_PURPOSES = ("batch",)
#: The purpose of the files pageqa writes: a batch's output and error files.
OUTPUT_PURPOSE = "batch_output"


@dataclass(frozen=True)
class FileInfo:
    """A file as ``/v1/files`` shows it: id, name, purpose, size in bytes, creation time (Unix seconds)."""

    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int

    @classmethod
    def of(cls, row: StoredFile) -> FileInfo:
        """The info of a file row."""
        return cls(row.id, row.filename, row.purpose, row.bytes, int(row.created_at.timestamp()))


def store(settings: Settings, *, tenant: str, filename: str, purpose: str, chunks: Iterable[bytes]) -> FileInfo:
    """Store an uploaded file of ``tenant`` (its content read from ``chunks`` as they come) under ``filename`` made
    one printable path component (:func:`db.corpus.clean_file_name`, as document names are).

    Raises:
        InputError: ``purpose`` is not one of :data:`UPLOAD_PURPOSES`, or the file is empty.
    """
    if purpose not in UPLOAD_PURPOSES:
        raise InputError(f"purpose {purpose!r} is not stored here: pageqa keeps files for batches "
                         f"(purpose {', '.join(UPLOAD_PURPOSES)})", code="invalid_purpose")
    # the user's file name, cleaned as a document's is (one printable path component), not refused: it is theirs
    filename = corpus_db.clean_file_name(filename) or "upload.jsonl"
    with session_scope(settings) as session:
        row = files_db.store_file(session, tenant=tenant, filename=filename, purpose=purpose, chunks=chunks)
        if not row.bytes:
            raise InputError("the file is empty", source=filename or None)
        return FileInfo.of(row)


def info(settings: Settings, *, file_id: str, tenant: str) -> FileInfo:
    """The tenant's file.

    Raises:
        NotFoundError: no such file of the tenant.
    """
    with session_scope(settings) as session:
        return FileInfo.of(files_db.get_file(session, file_id=file_id, tenant=tenant))


def list_files(
    settings: Settings, *, tenant: str, purpose: str | None = None, limit: int = 100, after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> tuple[list[FileInfo], bool]:
    """A page of the tenant's files (:func:`db.files.list_files`) and whether more follow.

    Raises:
        NotFoundError: ``after`` is not a file of the tenant.
    """
    with session_scope(settings) as session:
        rows, more = files_db.list_files(session, tenant=tenant, purpose=purpose, limit=limit, after=after,
                                         order=order)
        return [FileInfo.of(r) for r in rows], more


def content(settings: Settings, *, file_id: str, tenant: str) -> tuple[FileInfo, Iterator[bytes]]:
    """The tenant's file and its content as a stream of parts (at most 1 MiB each), read as consumed.

    Raises:
        NotFoundError: at the call (before any content is read), when there is no such file of the tenant.
    """
    found = info(settings, file_id=file_id, tenant=tenant)

    def parts() -> Iterator[bytes]:
        with session_scope(settings) as session:
            yield from files_db.iter_content(session, file_id=found.id)

    return found, parts()


def delete(settings: Settings, *, file_id: str, tenant: str) -> None:
    """Delete the tenant's file. A batch that read it keeps its questions; one not yet read fails with a
    one-line error.

    Raises:
        NotFoundError: no such file of the tenant.
    """
    with session_scope(settings) as session:
        files_db.delete_file(session, file_id=file_id, tenant=tenant)
