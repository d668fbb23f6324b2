"""Task: one reconciler pass (:func:`services.reconcile.run_reconciler`), sent by beat every
``reconcile_every_seconds`` to the control queue."""

from __future__ import annotations

from pageqa.settings import get_settings
from services.reconcile import run_reconciler
from worker.app import app
from worker.queue import RECONCILE


@app.task(name=RECONCILE)
def reconcile() -> int:
    """One reconciler pass with the process settings; returns the questions sent again."""
    return run_reconciler(get_settings())
