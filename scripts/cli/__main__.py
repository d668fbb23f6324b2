"""``python -m scripts.cli``: the ``pageqa`` command without its console script."""

from scripts.cli import main

main()
