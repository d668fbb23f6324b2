"""Domain exceptions. The CLI turns them into one-line messages with exit code 1."""

from __future__ import annotations


class PageQAError(Exception):
    """Base class of every error pageqa reports to a user."""


class ConfigError(PageQAError):
    """A setting is missing or inconsistent."""


class ServiceError(PageQAError):
    """An embedded or external service (PostgreSQL, Redis) cannot be started or reached."""


def printable(text: str) -> str:
    """``text`` with each character that is not printable (NUL, newlines, terminal escapes, bidi overrides)
    written as its Python escape, e.g. ``\\x00``, so a hostile file name shows as one inert line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class InputError(PageQAError):
    """Bad user input: the message names the file and the line or page, on one printable line. ``reason`` is the
    message without that place, ``code`` a short machine-readable kind (the HTTP API reports both)."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None, page: int | None = None,
                 code: str = "invalid_input"):
        message = printable(" ".join(message.split()))  # one line, whatever a library put in its message
        self.reason, self.code = message, code
        where = printable(source or "")
        if line is not None:
            where += f":{line}"
        if page is not None:
            where += f" page {page}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source, self.line, self.page = source, line, page


class NotFoundError(PageQAError):
    """A named corpus, document or job does not exist."""


class ConflictError(PageQAError):
    """The request contradicts the current state, e.g. cancelling a job that has already ended (HTTP 409)."""


class DuplicateDocumentError(ConflictError):
    """The corpus already holds a document with the same bytes (sha256); another process may have stored it while
    this one rendered it."""


class ModelLoadError(PageQAError):
    """A model checkpoint cannot be loaded (missing weights, no hub access, missing extra)."""


def one_line(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"`` on one line, as stored in ``last_error`` and ``index_error``."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
