"""Tables the CLI prints: corpora and their documents, from the records :mod:`services.corpora` (or the HTTP API)
gives."""

from __future__ import annotations

import datetime as dt

from rich.table import Table

from scripts.cli.base import shown


def _when(iso: str) -> str:
    return f"{dt.datetime.fromisoformat(iso):%Y-%m-%d %H:%M:%S}"


def corpora_table(rows: list[dict]) -> Table:
    """One row per corpus; a tenant column when the rows carry their tenant (the database side)."""
    with_tenant = any("tenant" in r for r in rows)
    table = Table("corpus", *(["tenant"] if with_tenant else []), "documents", "pages", "indexed", "failed",
                  "created")
    for r in rows:
        table.add_row(shown(r["name"]), *([shown(r["tenant"])] if with_tenant else []), str(r["documents"]),
                      str(r["pages"]), str(r["pages_indexed"]), str(r["pages_failed"]), _when(r["created_at"]))
    return table


def documents_table(corpus: dict) -> Table:
    """The corpus's documents, titled with its counts."""
    title = (f"corpus {shown(corpus['name'])}: {corpus['documents']} documents, {corpus['pages']} pages "
             f"({corpus['pages_indexed']} indexed, {corpus['pages_failed']} failed)")
    table = Table("document", "title", "kind", "pages", "bytes", "added", title=title, title_justify="left")
    for d in corpus["document_list"]:
        table.add_row(shown(d["name"]), shown(d["title"] or ""), shown(d["kind"]), str(d["pages"]),
                      f"{d['size_bytes']:,}", _when(d["created_at"]))
    return table
