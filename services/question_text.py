"""Reading a question file as text: choosing its encoding (UTF-8, UTF-16 after its BOM, else Windows-1252) and
its lines, each bounded to :data:`MAX_LINE_CHARS`, so a hostile file never makes a reader hold a huge line."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import TextIO

from pageqa.errors import InputError

#: Longest line read, in characters: the csv module's default field limit. A question at the length limit needs at
#: most 24,000 characters even with every character JSON-escaped as ``\\uXXXX``.
MAX_LINE_CHARS = 131_072
_READ_BYTES = 1 << 20  # bytes per read while checking the encoding


def open_text(path: Path, encoding: str, *, newline: str | None = None) -> TextIO:
    """The file as text in ``encoding`` (from :func:`sniff_encoding`); undecodable cp1252 bytes become U+FFFD."""
    return path.open(encoding=encoding, errors="replace" if encoding == "cp1252" else "strict", newline=newline)


def sniff_encoding(path: Path) -> tuple[str, list[str]]:
    """(codec name, notes): UTF-16 after its BOM, else UTF-8 (BOM or not) if every byte decodes, else cp1252."""
    with path.open("rb") as f:
        head = f.read(2)
        if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            encoding, notes = "utf-16", [f"{path}: read as UTF-16"]
        else:
            encoding, notes = "utf-8-sig", []
        f.seek(0)
        decoder = codecs.getincrementaldecoder(encoding)()
        newlines = 0
        for block in iter(lambda: f.read(_READ_BYTES), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return _not_decoded(path, encoding, exc, newlines)
            newlines += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:  # the file ends inside a multi-byte character
            return _not_decoded(path, encoding, exc, newlines)
    return encoding, notes


def _not_decoded(path: Path, encoding: str, exc: UnicodeDecodeError, newlines_before: int) -> tuple[str, list[str]]:
    if encoding == "utf-16":
        raise InputError(f"not valid UTF-16 ({exc.reason})", source=str(path)) from exc
    # exc.object is the decoder's pending bytes (never a newline: part of one character) followed by this block
    line = newlines_before + exc.object.count(b"\n", 0, exc.start) + 1
    note = f"{path}:{line}: not UTF-8 (byte 0x{exc.object[exc.start]:02x}); the file was read as Windows-1252"
    return "cp1252", [note]


def has_text(path: Path, encoding: str) -> bool:
    """Whether the decoded file has any non-whitespace character; reads only up to the first one."""
    with open_text(path, encoding) as f:
        return any(block.strip() for block in iter(lambda: f.read(_READ_BYTES), ""))


class LineTooLong(Exception):
    """A line longer than :data:`MAX_LINE_CHARS`; raised by :class:`Lines` (the csv reader passes it on)."""


class Lines:
    """The lines of a text file, each at most :data:`MAX_LINE_CHARS` long; ``number`` is the 1-based number of the
    last line read. A longer line is read through in bounded pieces and raises :class:`LineTooLong`; the next call
    goes on with the following line (which is why this is a class, not a generator)."""

    def __init__(self, f: TextIO):
        self.f, self.number = f, 0

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        line = self.f.readline(MAX_LINE_CHARS + 1)
        if not line:
            raise StopIteration
        self.number += 1
        if len(line) > MAX_LINE_CHARS:
            while (rest := self.f.readline(MAX_LINE_CHARS)) and not rest.endswith(("\n", "\r")):
                pass
            raise LineTooLong(self.number)
        return line


def too_long(path: Path, line: int) -> InputError:
    """The error of a line over :data:`MAX_LINE_CHARS` (1-based ``line``)."""
    return InputError(f"the line is longer than {MAX_LINE_CHARS} characters", source=str(path), line=line)
