"""The ``pageqa`` command line. Each command's help text is its docstring; the commands live in
``scripts/cli_*.py`` and register themselves on the app of :mod:`scripts.cli_base` when imported here."""

from __future__ import annotations

import logging

from scripts import cli_bench, cli_corpora, cli_jobs, cli_ops  # noqa: F401 -- importing them registers the commands
from scripts.cli_base import app, parse_lanes, prepare

__all__ = ["app", "main", "parse_lanes", "prepare"]


def main() -> None:
    """Entry point of the ``pageqa`` command."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
