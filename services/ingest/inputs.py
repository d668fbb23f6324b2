"""What ingest accepts: the paths given, expanded to files, and the checks of a file's bytes before any rendering.

Each problem is a one-line message for an :class:`~pageqa.errors.InputError` naming the file, so one bad file
never stops the others.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from pageqa.errors import InputError
from pageqa.limits import over_limit

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
SUFFIXES = IMAGE_SUFFIXES | {".pdf"}


def expand_paths(paths: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Files to ingest, and a one-line error for each path left out (the others go on).

    Files are taken as given, symbolic links followed: the user named them. Folders are searched recursively for
    PDFs and images, sorted by path; there a symbolic link whose target is outside the folder is not followed, so
    a folder from elsewhere (an unpacked archive, a share) cannot pull in the user's other files.
    """
    files: list[Path] = []
    errors: list[str] = []
    for given in paths:
        path = Path(given)
        if "\x00" in str(given):  # the OS cannot name such a file; pathlib would only say it does not exist
            errors.append(str(InputError("the path contains a NUL byte", source=str(given))))
        elif path.is_dir():
            root = path.resolve()
            for found in sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and not p.is_dir()):
                if _is_link_loop(found):
                    errors.append(str(InputError(LINK_LOOP, source=str(found))))
                elif found.is_symlink() and not found.resolve().is_relative_to(root):
                    errors.append(str(InputError(
                        f"symbolic link to {found.resolve()}, outside the folder: not followed (name the file itself "
                        "to ingest it)", source=str(found))))
                elif not found.is_file():
                    errors.append(str(InputError("not a regular file (a broken link, a device or a pipe)",
                                                 source=str(found))))
                else:
                    files.append(found)
        elif _is_link_loop(path):
            errors.append(str(InputError(LINK_LOOP, source=str(path))))
        elif not path.exists():
            errors.append(str(InputError("no such file or folder", source=str(path))))
        elif path.suffix.lower() not in SUFFIXES:
            errors.append(str(InputError(f"unsupported file type {path.suffix or '(none)'} (PDF, PNG, JPEG or WebP)",
                                         source=str(path))))
        elif not path.is_file():
            errors.append(str(InputError("not a regular file (a device or a pipe)", source=str(path))))
        else:
            files.append(path)
    return files, errors


LINK_LOOP = "symbolic link loop (the link leads back to itself): not followed"


def _is_link_loop(path: Path) -> bool:
    """Whether resolving ``path`` runs into a loop of symbolic links (pathlib raises rather than answer)."""
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python before 3.13: "Symlink loop from ..."
        return True
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def read_document(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path``, read only when at most ``max_bytes`` (``max_document_bytes``): a file over it is
    refused after ``max_bytes + 1`` bytes, whatever its size claims (it may grow, or be a special file).

    Raises:
        InputError: over ``max_bytes``, or not readable (the OS's reason).
    """
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", source=str(path)) from exc
    if len(data) > max_bytes:
        raise InputError(over_limit("the file", max_bytes, "max_document_bytes"), source=str(path))
    return data


def content_problem(path: Path, data: bytes) -> str | None:
    """Why the bytes of ``path`` cannot be what its extension says, seen without parsing them; None if they may."""
    if not data:
        return "empty file (0 bytes)"
    if path.suffix.lower() == ".pdf":
        # pdfium, like Acrobat, accepts a header anywhere in the first 1024 bytes
        return None if b"%PDF-" in data[:1024] else "not a PDF (no %PDF- header)"
    if data.startswith(b"%PDF-"):
        return f"not a PNG, JPEG or WebP image but a PDF: name it {path.stem}.pdf to ingest it"
    return None


def pdf_outline(path: Path, data: bytes) -> tuple[str, int]:
    """The PDF's title (metadata, else the file name) and page count.

    A file that does not end with ``%%EOF`` and whose cross-reference table pdfium had to rebuild is refused as
    truncated, even when pdfium can open it: the pages past the cut would render blank or be missing, and the
    complete file, ingested later, would be another document (another sha256) next to the partial one.

    Raises:
        InputError: encrypted, truncated, not readable, or without pages.
    """
    ends = b"%%EOF" in data[-1024:]
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise InputError(_load_problem(exc, data, ends=ends), source=str(path)) from exc
    try:
        if not ends and not pdfium_c.FPDF_DocumentHasValidCrossReferenceTable(pdf.raw):
            raise InputError(TRUNCATED, source=str(path))
        return (pdf.get_metadata_dict().get("Title") or "").strip() or path.stem, len(pdf)
    finally:
        pdf.close()


TRUNCATED = "not a readable PDF: truncated, it does not end with %%EOF (an incomplete download or copy?)"


def _load_problem(exc: pdfium.PdfiumError, data: bytes, *, ends: bool) -> str:
    """What pypdfium2's refusal to open ``data`` means, in words."""
    # pypdfium2 also refuses a document pdfium loaded but found no page in, and then its error code is whatever
    # pdfium's last error was, maybe another file's: ask pdfium first whether it loads.
    raw = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
    if raw:
        pdfium_c.FPDF_CloseDocument(raw)
        return "the PDF has no pages"
    if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:  # pdfium's FPDF_ERR_* codes, fpdfview.h
        return "encrypted PDF (password-protected): save a copy without the password to ingest it"
    if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
        return "encrypted PDF with a security handler pdfium does not support (e.g. certificates)"
    if not ends:
        return TRUNCATED
    return f"not a readable PDF ({exc})"
