"""``GET /v1/health``: is the database, the broker and at least one worker answering. No API key needed; it
shows nothing of any tenant."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter, Response

from api.deps import SettingsDep
from api.schemas import Health
from pageqa.errors import printable
from services.health import Probes

router = APIRouter(tags=["health"])
#: Seconds to wait for workers to answer a ping.
PING_S = 1.0


def _check(probe: Callable[[], dict | None]) -> dict:
    start = time.perf_counter()
    try:
        detail = probe()
    except Exception as exc:  # noqa: BLE001 -- any failure of a dependency is the answer, not an error here
        return {"ok": False, "error": printable(" ".join(f"{type(exc).__name__}: {exc}".split()))[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - start) * 1e3, 1), **(detail or {})}


# Only the keys each check gives are sent (a failed check has no "ms"), hence exclude_unset.
@router.get("/health", summary="Service health", response_model=Health, response_model_exclude_unset=True,
            responses={503: {"description": "Database or broker down.", "model": Health}})
def health(settings: SettingsDep, response: Response) -> dict:
    """``database`` (``SELECT 1``), ``broker`` (a Redis connection) and ``workers`` (Celery workers answering a
    ping within 1 s, by name). 200 when the database and the broker answer, else 503; no worker is reported but
    is not an error (jobs wait in the queue)."""
    probes = Probes(settings)

    def workers() -> dict:
        names = probes.worker_names(timeout_s=PING_S)
        return {"count": len(names), "names": names}

    report = {"database": _check(probes.database), "broker": _check(probes.broker)}
    report["workers"] = _check(workers) if report["broker"]["ok"] else {"ok": False, "error": "broker down"}
    ok = report["database"]["ok"] and report["broker"]["ok"]
    response.status_code = 200 if ok else 503
    return {"status": "ok" if ok else "unavailable", **report}
