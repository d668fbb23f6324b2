"""Job routes: submit a question file (multipart) or questions (JSON), list, read, cancel, download the output and
error files. A tenant sees only its own jobs: another tenant's job id answers 404, as an unknown one does."""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from api.deps import SettingsDep, TenantDep, uploads_dir
from api.schemas import ErrorBody, JobList, JobPublic, cursor_page, job_record
from pageqa.domain import JobStatus, split_lanes
from pageqa.errors import InputError, PageQAError
from pageqa.options import JobOptions, job_options
from pageqa.settings import Settings
from services import job_views, jobs
from services.question_file import QUESTION_SUFFIXES
from services.results import export

log = logging.getLogger(__name__)
router = APIRouter(tags=["jobs"])

MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


class JobRequest(BaseModel):
    """A job as a JSON body: the questions inline (each object as a JSONL line of a question file: ``custom_id``,
    ``question``, optionally the document field), checked exactly as a file is, with item 1 as line 1."""

    model_config = ConfigDict(extra="forbid")
    corpus: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    questions: list[dict[str, Any]] = Field(min_length=1)
    options: JobOptions = Field(default_factory=JobOptions)
    strict: bool = False


_MULTIPART = {"type": "object", "required": ["file", "corpus"], "properties": {
    "file": {"type": "string", "format": "binary", "description": "CSV (custom_id,question[,document]) or JSONL."},
    "corpus": {"type": "string"}, "strict": {"type": "boolean"},
    "lanes": {"type": "string", "description": "Comma-separated: visual,lexical,dense."},
    **{k: v for k, v in JobOptions.model_json_schema()["properties"].items() if k != "lanes"},
}}


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with each ``{"$ref": "#/$defs/NAME"}`` replaced by the definition ``defs[NAME]``: an
    ``openapi_extra`` schema adds nothing to the document's ``components``, and a ``$ref`` resolves from the
    document's root, so its models are written out in place (ReDoc refuses a reference to nothing)."""
    if isinstance(node, list):
        return [_inlined(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**_inlined(defs[node["$ref"].rsplit("/", 1)[-1]], defs), **_inlined(rest, defs)}
    return {k: _inlined(v, defs) for k, v in node.items() if k != "$defs"}


_JSON_BODY = JobRequest.model_json_schema()
_OPENAPI = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": _MULTIPART},
    "application/json": {"schema": _inlined(_JSON_BODY, _JSON_BODY.get("$defs", {}))},
}}}


@router.post("/jobs", status_code=202, openapi_extra=_OPENAPI, summary="Submit a job", response_model=JobPublic,
             responses={202: {"description": "The job, in `validating`; poll GET /v1/jobs/{id}."},
                        415: {"model": ErrorBody, "description": "Neither multipart/form-data nor JSON."}})
async def create_job(request: Request, settings: SettingsDep, tenant: TenantDep, background: BackgroundTasks):
    """Store the question file under a server-made name, create the job (``validating``) and answer at once;
    the file is checked and its questions queued after the response. Refused rows are listed in the job's
    ``errors`` with their line; a file with no valid row (or any invalid one with ``strict``) ends ``failed``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    target = uploads_dir(settings) / uuid.uuid4().hex
    if kind == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=20)
        fields = {k: v for k, v in form.items() if k != "file"}
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or any(not isinstance(v, str) for v in fields.values()):
            raise InputError("send the question file as the multipart field 'file' (other fields are text)")
        corpus, strict = fields.pop("corpus", ""), fields.pop("strict", "false").lower() in ("true", "1", "yes")
        if "lanes" in fields:
            fields["lanes"] = split_lanes(fields["lanes"])
        options = job_options(**fields)
        source = upload.filename or "questions"
        suffix = Path(source).suffix.lower()
        if suffix not in QUESTION_SUFFIXES:
            raise InputError("question files are .csv or .jsonl", source=source)
        target = target.with_suffix(suffix)
        await run_in_threadpool(_save, upload, target)
    elif kind == "application/json":
        try:
            body = JobRequest.model_validate(await request.json())
        except ValueError as exc:
            raise InputError(f"invalid JSON body ({' '.join(str(exc).split())[:300]})") from None
        corpus, strict, options, source = body.corpus, body.strict, body.options, "request.jsonl"
        target = target.with_suffix(".jsonl")
        await run_in_threadpool(_write_jsonl, body.questions, target)
    else:
        raise HTTPException(415, "send multipart/form-data (a file) or application/json (questions)")
    try:
        job_id = await run_in_threadpool(jobs.open_job, settings, corpus=corpus, source=source, options=options,
                                         tenant=tenant)
    except PageQAError:
        target.unlink(missing_ok=True)
        raise
    background.add_task(_validate, settings, job_id, target, strict)
    record = await run_in_threadpool(_record, settings, job_id, tenant)
    # A response of our own, for the Location header: FastAPI then sends it as is, so the model is applied here.
    return JSONResponse(record.model_dump(mode="json"), status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})


def _save(upload: UploadFile, target: Path) -> None:
    with target.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)


def _write_jsonl(rows: list[dict], target: Path) -> None:
    with target.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _validate(settings: Settings, job_id: str, path: Path, strict: bool) -> None:
    """After the response: check and store the file, queue its questions; the upload is then removed (the rows
    are in PostgreSQL). A refused file has already ended the job ``failed`` with its errors."""
    try:
        jobs.validate_job(settings, job_id=job_id, path=path, strict=strict)
    except PageQAError as exc:
        log.warning("job %s: %s", job_id, exc)
    finally:
        path.unlink(missing_ok=True)


def _record(settings: Settings, job_id: str, tenant: str) -> JobPublic:
    return job_record(job_views.job_detail(settings, job_id=job_id, tenant=tenant))


@router.get("/jobs", summary="List jobs", response_model=JobList)
def list_jobs(
    settings: SettingsDep, tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=40, description="Last job id of the previous page.")] = None,
    status: JobStatus | None = None,
) -> JobList:
    """The tenant's jobs, newest first, a page at a time (``after`` the last id of the previous page)."""
    details, more = job_views.list_job_details(settings, tenant=tenant, status=status, limit=limit, after=after)
    return JobList(**cursor_page([job_record(detail) for detail in details], more))


@router.get("/jobs/{job_id}", summary="Get a job", response_model=JobPublic)
def get_job(job_id: str, settings: SettingsDep, tenant: TenantDep) -> JobPublic:
    """The job: status, ``request_counts`` (they sum to ``total``), validation ``errors``, a timestamp per state."""
    return _record(settings, job_id, tenant)


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job", response_model=JobPublic,
             responses={409: {"model": ErrorBody, "description": "The job has already ended."}})
def cancel_job(job_id: str, settings: SettingsDep, tenant: TenantDep) -> JobPublic:
    """Queued questions are cancelled, answered ones kept, running ones finish; the job is ``cancelling`` until
    then, ``cancelled`` after. 409 when the job has already ended."""
    jobs.cancel_job(settings, job_id=job_id, tenant=tenant)
    return _record(settings, job_id, tenant)


def _download(
    settings: Settings, job_id: str, tenant: str, format: Literal["jsonl", "csv"], kind: Literal["results", "errors"],
) -> StreamingResponse:
    job_views.require_job(settings, job_id=job_id, tenant=tenant)  # 404 before the stream starts
    chunks = export(settings, job_id=job_id, kind=kind, format=format, tenant=tenant)
    return StreamingResponse(chunks, media_type=MEDIA[format], headers={
        "Content-Disposition": f'attachment; filename="{job_id}-{kind}.{format}"'})


_FILE = {200: {"description": "JSON lines or CSV, streamed.",
               "content": {"application/x-ndjson": {}, "text/csv": {}}}}


@router.get("/jobs/{job_id}/results", summary="Download the output file", responses=_FILE)
def job_results(job_id: str, settings: SettingsDep, tenant: TenantDep, format: Literal["jsonl", "csv"] = "jsonl"):
    """One record per answered question, in file order: ``custom_id``, answer, citations (document, 1-based page,
    rank, scores), per-stage milliseconds, model ids."""
    return _download(settings, job_id, tenant, format, "results")


@router.get("/jobs/{job_id}/errors", summary="Download the error file", responses=_FILE)
def job_errors(job_id: str, settings: SettingsDep, tenant: TenantDep, format: Literal["jsonl", "csv"] = "jsonl"):
    """One record per question that ended without an answer: ``custom_id``, status, error code and message."""
    return _download(settings, job_id, tenant, format, "errors")
