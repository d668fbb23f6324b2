"""Benchmark sections in Markdown docs: each command's output sits between markers and a rerun replaces it."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, key: str, body: str, *, tag: str, header: str) -> None:
    """Put ``body`` into ``path`` between ``<!-- tag key -->`` markers, replacing an earlier section with that key;
    a new file starts with ``header``."""
    start, end = f"<!-- {tag} {key} -->", f"<!-- /{tag} {key} -->"
    text = path.read_text() if path.exists() else header
    section = f"{start}\n{body}{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
