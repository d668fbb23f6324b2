"""Report routes: the nightly reports of the caller's tenant (its own page of each day; the page over every tenant
is for operators, on disk and through ``pageqa report``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from api.deps import SettingsDep, TenantDep
from api.schemas import ReportList, ReportPublic
from services.report import store

router = APIRouter(tags=["reports"])


@router.get("/reports", summary="List reports", response_model=ReportList)
def list_reports(settings: SettingsDep, tenant: TenantDep,
                 limit: Annotated[int, Query(ge=1, le=366)] = 30) -> ReportList:
    """The days with a report for the tenant (a day it was active), newest first."""
    rows = store.list_reports(settings, scope=tenant, limit=limit)
    return ReportList(data=[ReportPublic(date=r.day.isoformat(), generated_at=r.generated_at.isoformat(),
                                         url=f"/v1/reports/{r.day.isoformat()}") for r in rows])


_FORMATS = {200: {"description": "The report page (HTML, self-contained), its figures (JSON) or a flat table "
                                 "(CSV).", "content": {"text/html": {}, "application/json": {}, "text/csv": {}}}}


@router.get("/reports/{day}", summary="Get a report", responses=_FORMATS)
def get_report(day: dt.date, settings: SettingsDep, tenant: TenantDep,
               format: Literal["html", "json", "csv"] = "html") -> Response:
    """The tenant's report of ``day`` (``YYYY-MM-DD``): one self-contained HTML page (plots embedded), or the
    same figures as JSON or CSV. 404 when the tenant has no report that day."""
    row = store.get_report(settings, day=day, scope=tenant)
    if format == "json":
        return JSONResponse(row.json)
    if format == "csv":
        return Response(row.csv, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="report-{day.isoformat()}.csv"'})
    return HTMLResponse(row.html)
