"""Progress bars (rich) for long CLI work: reading documents, waiting for embeddings, following a job."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from db import corpus as corpus_db
from db.engine import session_scope
from pageqa.errors import ServiceError
from pageqa.settings import Settings
from scripts.jobs import JobStatusView, job_status
from tasks.enqueue import enqueue_indexing

POLL_S = 0.5
console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )


@contextmanager
def bar(description: str, *, total: int) -> Iterator[Callable[[], None]]:
    """A progress bar; yields a function that advances it by one."""
    with _progress() as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


def _check(alive: Callable[[], bool] | None) -> None:
    if alive is not None and not alive():
        raise ServiceError("the worker stopped before the work was done (see its log)")


def embed_and_wait(
    settings: Settings, *, corpus: str, wait: bool, alive: Callable[[], bool] | None = None,
    queued: Collection[int] = (), retry_failed: bool = False,
) -> list[str]:
    """Queue every page of the corpus not yet indexed for the configured model set (OCR, passages, multi-vector),
    except the ``queued`` page ids (already queued, e.g. by ``ingest_files(enqueue=True)``) and pages whose
    indexing failed (unless ``retry_failed``: their errors are cleared and they are queued again); optionally wait
    until no page is left waiting for the workers.

    Returns:
        One line per page of the corpus that could not be indexed (empty without ``wait``).

    Raises:
        ServiceError: ``alive()`` returned False while waiting (the worker this run depends on has exited).
    """
    ids = settings.model_ids()
    models = {"visual_model": ids["retriever"] if "visual" in settings.available_lanes() else None,
              "text_model": ids["text"]}
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_corpus(session, name=corpus).id
        if retry_failed:
            corpus_db.clear_index_errors(session, corpus_id=corpus_id)
        todo = corpus_db.pages_to_index(session, corpus_id=corpus_id, **models)
    already = set(queued)
    if to_send := [page_id for page_id in todo if page_id not in already]:
        enqueue_indexing(settings, page_ids=to_send)
    if not wait:
        return []
    with _progress() as progress:
        task = progress.add_task("indexing pages (needs a running worker)", total=None)
        while True:
            with session_scope(settings) as session:
                state = corpus_db.count_indexed(session, corpus_id=corpus_id, **models)
            progress.update(task, completed=state.indexed + state.failed, total=state.total)
            if state.ended:
                break
            _check(alive)
            time.sleep(POLL_S)
    if not state.failed:
        return []
    with session_scope(settings) as session:
        return corpus_db.index_errors(session, corpus_id=corpus_id)


def watch_job(settings: Settings, *, job_id: str, alive: Callable[[], bool] | None = None) -> JobStatusView:
    """Follow a job with a progress bar until it is completed, failed or cancelled; returns the final status.

    Raises:
        ServiceError: ``alive()`` returned False before the job ended.
    """
    view = job_status(settings, job_id=job_id)
    with _progress() as progress:
        task = progress.add_task(f"{job_id} {view.status}", total=view.total)
        while True:
            progress.update(task, completed=view.done, description=f"{job_id} {view.status}")
            if view.finished:
                return view
            _check(alive)
            time.sleep(POLL_S)
            view = job_status(settings, job_id=job_id)
