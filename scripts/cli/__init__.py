"""The ``pageqa`` command line: commands parse their options, call :mod:`services`, and print. Each command's help
text is its docstring; the commands live in ``scripts/cli/*.py`` and register themselves on the app of
:mod:`scripts.cli.base` when imported here."""

from __future__ import annotations

import logging

from scripts.cli import bench, corpora, jobs, ops  # noqa: F401 -- importing them registers the commands
from scripts.cli.base import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``pageqa`` command."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
