"""``pageqa`` commands that run pageqa: the embedded services, migrations, model checkpoints, API keys, the HTTP
API, beat, workers, the nightly report and the first-stage index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pageqa.errors import PageQAError
from pageqa.settings import get_settings
from scripts.cli.base import (
    app,
    command,
    console,
    err_console,
    index_app,
    keys_app,
    models_app,
    services_app,
    shown,
)
from services.runtime import prepare


@command(services_app, "start")
def services_start() -> None:
    """Start the embedded PostgreSQL (with pgvector) and Redis under PAGEQA_HOME, and apply migrations."""
    settings = get_settings()
    prepare(settings)
    services_status()


@command(services_app, "stop")
def services_stop() -> None:
    """Stop the embedded PostgreSQL and Redis (data is kept under PAGEQA_HOME)."""
    from services.runtime import stop_embedded

    for name, was_running in stop_embedded(get_settings()).items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")


@command(services_app, "status")
def services_status() -> None:
    """Show whether each service is running and where."""
    from services.runtime import service_states

    for state in service_states(get_settings()):
        if state.external:
            console.print(f"{state.name}: external ({state.where})")
        else:
            console.print(f"{state.name}: embedded, {'running' if state.running else 'stopped'} ({state.where})")
        for setting in state.settings:  # the embedded PostgreSQL's sized settings, as SHOW prints them
            notes = [f"from {setting.source}"] if setting.source != "pageqa.conf" else []
            notes += [f"restart pending: {setting.pending}"] if setting.pending is not None else []
            console.print(escape(f"  {setting.name:<34} {setting.value}" + (f"  ({', '.join(notes)})" if notes else "")))
        if any(setting.pending is not None for setting in state.settings):
            console.print("  a restart applies the pending values: pageqa services stop, then pageqa services start")
        if state.problem:
            console.print(escape(f"  settings unknown: {state.problem}"))


@command(app)
def migrate() -> None:
    """Apply the database migrations (Alembic) to PAGEQA_DATABASE_URL or the embedded PostgreSQL."""
    from services.runtime import migrate as upgrade

    upgrade(get_settings())
    console.print("database schema is up to date")


@command(models_app, "make-tiny")
def models_make_tiny(
    directory: Annotated[Path | None, typer.Argument(help="Default: PAGEQA_HOME/models/tiny")] = None,
    overwrite: bool = False,
) -> None:
    """Build tiny, randomly initialised Qwen2-VL, ColQwen2 and MonoQwen2-VL (LoRA) checkpoints for tests and
    CPU demos. They load through the same from_pretrained code as the real ones; their answers are meaningless."""
    from models.tiny import make_tiny

    target = directory or get_settings().home_dir / "models" / "tiny"
    tiny = make_tiny(target, overwrite=overwrite)
    console.print(f"tiny model set in {tiny.root}")


@command(keys_app, "create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key acts for (created with its first key).")],
    name: Annotated[str, typer.Option(help="A note to recognise the key by.")] = "",
) -> None:
    """Create an API key and print it; it is shown only this once (only its sha256 is stored)."""
    from services import keys

    settings = get_settings()
    prepare(settings)
    new = keys.create_key(settings, tenant=tenant, name=name)
    err_console.print(f"key {new.id} for tenant {shown(new.tenant)} (store it now: it is not shown again)",
                      highlight=False)
    console.print(new.key, markup=False, highlight=False)


@command(keys_app, "revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (pageqa keys list).")]) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    from services import keys

    settings = get_settings()
    prepare(settings)
    row = keys.revoke_key(settings, key_id=key_id)
    console.print(f"key {row.id} ({row.prefix}…) of tenant {shown(row.tenant)} revoked at "
                  f"{row.revoked_at:%Y-%m-%d %H:%M:%S}", highlight=False)


@command(keys_app, "list")
def keys_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None) -> None:
    """List API keys (id, tenant, prefix, name, created, last used, revoked); never the keys themselves."""
    from rich.table import Table

    from services import keys

    settings = get_settings()
    prepare(settings)
    table = Table("id", "tenant", "prefix", "name", "created", "last used", "revoked")
    for k in keys.list_keys(settings, tenant=tenant):
        table.add_row(str(k.id), shown(k.tenant), k.prefix + "…", shown(k.name),
                      *(f"{t:%Y-%m-%d %H:%M}" if t else "" for t in (k.created_at, k.last_used_at, k.revoked_at)))
    console.print(table)


@command(app)
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the HTTP API (FastAPI): jobs, results, corpora, health; OpenAPI docs at /docs. Every request but
    /v1/health carries an API key (Authorization: Bearer; pageqa keys create)."""
    import uvicorn

    settings = get_settings()
    prepare(settings)
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers, log_level="info")


@command(app)
def beat(loglevel: str = "INFO") -> None:
    """Run the one scheduler of a deployment: Celery beat with the reconciler (expired leases, lost tasks, job
    expiry), in a worker of the control queue that loads no model. Run exactly one."""
    from worker.start import run_control

    prepare(get_settings())
    run_control(loglevel=loglevel)


@command(app)
def worker(
    gpu: Annotated[int | None, typer.Option(help="GPU index to pin (sets CUDA_VISIBLE_DEVICES).")] = None,
    device: Annotated[str | None, typer.Option(help="Run on this device instead, e.g. 'cpu'.")] = None,
    loglevel: str = "INFO",
    beat: Annotated[bool, typer.Option(help="Also run the reconciler's schedule here (one worker per deployment).")]
    = False,
) -> None:
    """Run one Celery worker (solo pool, one task at a time) with the models resident; one per GPU."""
    from worker.start import start_worker

    start_worker(gpu=gpu, device=device, loglevel=loglevel, beat=beat)


@command(app)
def report(
    date: Annotated[str | None, typer.Option(help="Day to report, YYYY-MM-DD; default: yesterday in "
                                             "PAGEQA_REPORT_TIMEZONE.")] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the page in a web browser.")] = False,
) -> None:
    """Build a day's nightly report (what beat runs at PAGEQA_REPORT_TIME): one self-contained HTML page for every
    tenant and one per tenant, the figures as JSON and CSV, stored in the database and under PAGEQA_HOME/reports.
    Building a day again replaces its report."""
    import datetime as dt
    import webbrowser

    from services.report.build import build_report, previous_day

    settings = get_settings()
    try:
        day = dt.date.fromisoformat(date) if date is not None else previous_day(settings)
    except ValueError:
        raise PageQAError(f"--date must be YYYY-MM-DD, not {date!r}") from None
    prepare(settings)
    result = build_report(settings, day=day)
    console.print(f"report of {day}: {escape(str(result.pages['all']))} ({len(result.pages) - 1} tenant pages; "
                  f"figures in {escape(str(result.json_path))} and {escape(result.csv_path.name)})", highlight=False)
    if open_:
        webbrowser.open(result.pages["all"].as_uri())


@command(index_app, "rebuild")
def index_rebuild(
    maintenance_work_mem: Annotated[str | None, typer.Option(
        help="PostgreSQL memory for the build, e.g. 4GB; default: the server's (PAGEQA_PG_MAINTENANCE_WORK_MEM).",
    )] = None,
    workers: Annotated[int | None, typer.Option(
        min=0, help="Parallel maintenance workers; default: the server's (PAGEQA_PG_MAX_PARALLEL_MAINTENANCE_WORKERS).",
    )] = None,
) -> None:
    """Drop and rebuild the HNSW index of the coarse pooled vectors (after a large bulk load: one build is much
    faster than inserting into the graph page by page). Searches wait for the rebuild."""
    import time

    from services.indexing import rebuild_first_stage_index

    settings = get_settings()
    prepare(settings)
    start = time.perf_counter()
    rows = rebuild_first_stage_index(settings, maintenance_work_mem=maintenance_work_mem, workers=workers)
    console.print(f"HNSW index rebuilt over {rows:,} pooled vectors in {time.perf_counter() - start:.1f} s")
