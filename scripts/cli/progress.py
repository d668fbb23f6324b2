"""Progress bars (rich) for long CLI work: reading documents, waiting for embeddings, following a job, sending
and receiving files. Descriptions are plain text (a job id or file name is never read as rich markup)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from pageqa.errors import ServiceError
from pageqa.settings import Settings
from services import corpora
from services.job_views import JobStatusView, job_status

POLL_S = 0.5
INDEXING = "indexing pages (needs a running worker)"
console = Console(stderr=True, emoji=False)  # a description "q.jsonl:100:" is no emoji code


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )


@contextmanager
def bar(description: str, *, total: int) -> Iterator[Callable[[], None]]:
    """A progress bar; yields a function that advances it by one."""
    with _progress() as progress:
        task = progress.add_task(escape(description), total=total)
        yield lambda: progress.advance(task)


@contextmanager
def transfer_bar(description: str, *, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar over bytes (``total`` None: size unknown, e.g. a streamed download) with the transfer speed;
    yields a function that advances it by n bytes."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(escape(description), total=total)
        yield lambda n: progress.advance(task, n)


@dataclass(frozen=True)
class Tick:
    """One reading of work being waited for: units done of ``total`` (None: not known yet), whether it has ended,
    and the bar's description."""

    completed: int
    total: int | None
    done: bool
    description: str


def follow(read: Callable[[], Tick], *, alive: Callable[[], bool] | None = None) -> None:
    """Call ``read`` every ``POLL_S`` seconds and show its progress until it says done.

    Raises:
        ServiceError: ``alive()`` returned False before then.
    """
    tick = read()  # before the bar: a job that does not exist is reported without one
    with _progress() as progress:
        task = progress.add_task(escape(tick.description), total=tick.total)
        while True:
            progress.update(task, completed=tick.completed, total=tick.total, description=escape(tick.description))
            if tick.done:
                return
            _check(alive)
            time.sleep(POLL_S)
            tick = read()


def _check(alive: Callable[[], bool] | None) -> None:
    if alive is not None and not alive():
        raise ServiceError("the worker stopped before the work was done (see its log)")


def embed_and_wait(
    settings: Settings, *, corpus: str, wait: bool, alive: Callable[[], bool] | None = None,
    queued: Collection[int] = (), retry_failed: bool = False, tenant: str = "default",
) -> list[str]:
    """Queue the tenant's corpus pages not yet indexed (:func:`services.corpora.queue_unindexed`); optionally wait
    with a progress bar until no page is left waiting for the workers.

    Returns:
        One line per page of the corpus that could not be indexed (empty without ``wait``).

    Raises:
        NotFoundError: the tenant has no such corpus.
        ServiceError: ``alive()`` returned False while waiting (the worker this run depends on has exited).
    """
    corpus_id = corpora.queue_unindexed(settings, corpus=corpus, queued=queued, retry_failed=retry_failed,
                                        tenant=tenant)
    if not wait:
        return []
    state = None

    def read() -> Tick:
        nonlocal state
        state = corpora.index_state(settings, corpus_id=corpus_id)
        return Tick(state.indexed + state.failed, state.total, state.ended, INDEXING)

    follow(read, alive=alive)
    return corpora.index_errors(settings, corpus_id=corpus_id) if state.failed else []


def watch_job(settings: Settings, *, job_id: str, alive: Callable[[], bool] | None = None) -> JobStatusView:
    """Follow a job with a progress bar until it is completed, failed or cancelled; returns the final status.

    Raises:
        NotFoundError: no such job.
        ServiceError: ``alive()`` returned False before the job ended.
    """
    return watch(lambda: job_status(settings, job_id=job_id), alive=alive)


def watch(read: Callable[[], JobStatusView], *, alive: Callable[[], bool] | None = None) -> JobStatusView:
    """Follow the job that ``read`` reports on (from the database or the HTTP API) with a progress bar over its
    ended questions until it reaches a final status; returns that last status.

    Raises:
        ServiceError: ``alive()`` returned False before the job ended.
    """
    view = None

    def tick() -> Tick:
        nonlocal view
        view = read()
        return Tick(view.done, view.total, view.finished, f"{view.job_id} {view.status}")

    follow(tick, alive=alive)
    return view
