"""``GET /v1/health``: is the database, the broker and at least one worker answering. No API key needed; it
shows nothing of any tenant."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import SettingsDep
from db.engine import session_scope
from pageqa.errors import printable
from worker.app import get_app

router = APIRouter(tags=["health"])
#: Seconds to wait for workers to answer a ping.
PING_S = 1.0


def _check(probe) -> dict:
    start = time.perf_counter()
    try:
        detail = probe()
    except Exception as exc:  # noqa: BLE001 -- any failure of a dependency is the answer, not an error here
        return {"ok": False, "error": printable(" ".join(f"{type(exc).__name__}: {exc}".split()))[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - start) * 1e3, 1), **(detail or {})}


@router.get("/health", summary="Service health", responses={503: {"description": "Database or broker down."}})
def health(settings: SettingsDep):
    """``database`` (``SELECT 1``), ``broker`` (a Redis connection) and ``workers`` (Celery workers answering a
    ping within 1 s, by name). 200 when the database and the broker answer, else 503; no worker is reported but
    is not an error (jobs wait in the queue)."""
    app = get_app(settings)

    def database() -> None:
        with session_scope(settings) as session:
            session.execute(text("SELECT 1"))

    def broker() -> None:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    def workers() -> dict:
        names = sorted(name for reply in app.control.ping(timeout=PING_S) or [] for name in reply)
        return {"count": len(names), "names": names}

    report = {"database": _check(database), "broker": _check(broker)}
    report["workers"] = _check(workers) if report["broker"]["ok"] else {"ok": False, "error": "broker down"}
    ok = report["database"]["ok"] and report["broker"]["ok"]
    return JSONResponse({"status": "ok" if ok else "unavailable", **report}, status_code=200 if ok else 503)
