"""``GET /v1/health``: is the database, the broker and at least one worker answering. No API key needed; it
shows nothing of any tenant."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from fastapi import APIRouter, Response

from api.deps import SettingsDep
from api.schemas import Health
from pageqa.errors import printable
from services.health import Probes

router = APIRouter(tags=["health"])
#: Seconds to wait for workers to answer a ping.
PING_S = 1.0
#: Seconds the database and broker probes (run side by side) may take before their dependency counts as down: a
#: server the network lost answers nothing, and the health check must still answer. A probe that hangs ends later,
#: bounded by the connection timeouts (``PAGEQA_DATABASE_*_SECONDS``), on a thread of its own.
PROBE_S = 5.0
_probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health-probe")


def _timed(probe: Callable[[], dict | None]) -> dict:
    start = time.perf_counter()
    try:
        detail = probe()
    except Exception as exc:  # noqa: BLE001 -- any failure of a dependency is the answer, not an error here
        return {"ok": False, "error": printable(" ".join(f"{type(exc).__name__}: {exc}".split()))[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - start) * 1e3, 1), **(detail or {})}


def _by(future: Future, deadline: float) -> dict:
    """The probe's report, or "down" when it has not answered by ``deadline`` (``time.monotonic()``)."""
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        future.cancel()  # if it still waits behind probes that hang
        return {"ok": False, "error": f"no answer in {PROBE_S:g} s"}


# Only the keys each check gives are sent (a failed check has no "ms"), hence exclude_unset.
@router.get("/health", summary="Service health", response_model=Health, response_model_exclude_unset=True,
            responses={503: {"description": "Database or broker down.", "model": Health}})
def health(settings: SettingsDep, response: Response) -> dict:
    """``database`` (``SELECT 1``), ``broker`` (a Redis connection) and ``workers`` (Celery workers answering a
    ping within 1 s, by name). 200 when the database and the broker answer, else 503; no worker is reported but
    is not an error (jobs wait in the queue). The database and the broker are probed side by side, and one that
    has not answered in 5 s counts as down, so the check answers within about 6 s even when the network lost a
    server."""
    probes = Probes(settings)

    def workers() -> dict:
        names = probes.worker_names(timeout_s=PING_S)
        return {"count": len(names), "names": names}

    deadline = time.monotonic() + PROBE_S
    pending = {"database": _probes.submit(_timed, probes.database), "broker": _probes.submit(_timed, probes.broker)}
    report = {name: _by(future, deadline) for name, future in pending.items()}
    report["workers"] = (_by(_probes.submit(_timed, workers), time.monotonic() + PROBE_S) if report["broker"]["ok"]
                         else {"ok": False, "error": "broker down"})
    ok = report["database"]["ok"] and report["broker"]["ok"]
    response.status_code = 200 if ok else 503
    return {"status": "ok" if ok else "unavailable", **report}
