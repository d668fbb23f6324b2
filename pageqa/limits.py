"""Size limits on what users send, in one wording: the HTTP API's request bodies (``max_upload_bytes``) and each
document ingest reads (``max_document_bytes``)."""

from __future__ import annotations


def over_limit(what: str, limit: int, setting: str) -> str:
    """The one-line reason ``what`` is refused, naming the limit in bytes and MiB and the setting that raises it,
    e.g. ``"the file is larger than 536870912 bytes (512 MiB, PAGEQA_MAX_DOCUMENT_BYTES)"``; ``setting`` is the
    field name of :class:`~pageqa.settings.Settings`."""
    return f"{what} is larger than {limit} bytes ({limit / 2**20:.4g} MiB, PAGEQA_{setting.upper()})"
