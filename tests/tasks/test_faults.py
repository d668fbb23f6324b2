"""Fault tests: real jobs through real worker processes, a Redis of their own and the session's PostgreSQL, with
a fault injected in the middle. Each ends by checking that every question has exactly one committed answer or
one ``failed`` row with a reason, and no duplicate answer or citation rows (:func:`exactly_once`).

The workers here consume a queue of their own on a Redis of their own, so the session worker never sees these
jobs and the broker can be killed without touching the other tests. Their limits are short (lease 8 s, reconciler
every 1 s, a task presumed lost after 3 s) so a fault is recovered in seconds; reuse across jobs is off so every
answer is made by the models. Each test prints a ``FAULT`` line with its figures (run with ``-s`` to read them;
docs/reliability.md quotes them).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from conftest import make_image, start_worker, wait_for
from conftest import run_cli as cli
from outcomes import (
    LIMITS,
    exactly_once,
    job_status,
    new_job,
    questions,
    report,
    running,
    send_chunks,
    task_client,
    wait_until_ended,
)
from sqlalchemy import func, select, update

from db import corpus as corpus_db
from db import embedded
from db.engine import session_scope
from db.schema import ChunkRun, Page, Question
from pageqa.domain import JobStatus, QuestionStatus
from worker import broker
from worker.process import stop_worker

pytestmark = pytest.mark.models

CORPUS = "faults"
QUEUE = "faults"


class Cluster:
    """A Redis of its own, worker processes on queue ``faults``, and a Celery client to send their tasks."""

    def __init__(self, root: Path, settings):
        self.root, self.settings = root, settings
        self.url = broker.start(root)
        self.client = task_client(self.url, "pageqa-faults")
        self.workers: list = []

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **LIMITS, "PAGEQA_WORKER_QUEUE": QUEUE, "PAGEQA_BROKER_URL": self.url, **extra}

    def worker(self, name: str, *, beat: bool = False, **extra: str):
        proc = start_worker(self.env(**extra), self.root / f"{name}.log", beat=beat)
        self.workers.append(proc)
        return proc

    def send(self, question_ids: list[int], *, chunk_size: int = 4, times: int = 1, queue: str = QUEUE) -> None:
        """Send the job's answering tasks as ``pageqa submit`` does (after its rows committed), ``times`` each."""
        send_chunks(self.client, question_ids, queue=queue, chunk_size=chunk_size, times=times)

    def holder(self, settings, job_id: str):
        """The worker process holding a running question of the job (waits for one)."""
        held = wait_for(lambda: running(settings, job_id), timeout_s=60, poll_s=0.02, what="a chunk to start")
        pid = int(held[0].worker.rsplit(":", 1)[1])
        return next(p for p in self.workers if p.pid == pid), held[0].worker

    def restart_redis_empty(self) -> None:
        """kill -9 the broker, delete its data (the append-only file too), start it again on the same socket."""
        pid = broker._server_pid(self.root)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: broker._server_pid(self.root) is None, timeout_s=10, what="redis-server to die")
        shutil.rmtree(broker.redis_dir(self.root))
        broker.start(self.root)

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                stop_worker(proc, timeout_s=20)
        self.client.close()
        broker.stop(self.root)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, settings, worker):
    """Two workers shared by the tests (the first with beat, as compose runs it); tests that kill one start a
    replacement."""
    c = Cluster(tmp_path_factory.mktemp("fault"), settings)
    c.worker("a", beat=True)
    c.worker("b")
    yield c
    c.close()


@pytest.fixture(scope="module")
def corpus(worker, sample_docs, settings) -> dict[str, int]:
    """The fault corpus: the sample documents, ingested and embedded by the session worker."""
    cli("ingest", str(sample_docs["root"]), "--corpus", CORPUS)
    with session_scope(settings) as session:
        corpus_id = corpus_db.get_corpus(session, name=CORPUS).id
        docs = corpus_db.documents_by_name(session, corpus_id=corpus_id)
    return {"corpus_id": corpus_id, "report": docs["report.pdf"].id}


def test_every_message_delivered_twice(settings, corpus, cluster):
    job_id, ids = new_job(settings, corpus, 16, tag="twice")
    cluster.send(ids, times=2)
    elapsed = wait_until_ended(settings, job_id, timeout_s=120)
    time.sleep(2.0)  # let the second copies of the last tasks run too
    figures = exactly_once(settings, job_id)
    assert figures["answered"] == 16 and figures["duplicated"] == 0
    assert {q.attempts for q in questions(settings, job_id)} == {1}, "the second delivery claimed nothing"
    with session_scope(settings) as session:
        modelled = session.scalar(select(func.sum(ChunkRun.n_questions)).where(ChunkRun.job_id == job_id))
    assert modelled == 16, "each question went through the models once"
    report("delivered-twice", figures, messages=2 * len(range(0, 16, 4)), elapsed_s=elapsed)


def test_poison_question_fails_alone_after_the_attempt_cap(settings, corpus, cluster, tmp_path):
    """A stored page whose image bytes are corrupt makes the rerank stage raise on every attempt."""
    path = make_image(tmp_path / "poison.png", (320, 240), (90, 90, 90))
    cli("ingest", str(path), "--corpus", CORPUS)
    with session_scope(settings) as session:
        poison_doc = corpus_db.documents_by_name(session, corpus_id=corpus["corpus_id"])["poison.png"].id
        session.execute(update(Page).where(Page.document_id == poison_doc).values(image=b"not an image at all"))
    job_id, ids = new_job(settings, corpus, 7, tag="poison")
    with session_scope(settings) as session:  # the third question of the first chunk reads the corrupt page
        session.execute(update(Question).where(Question.id == ids[2]).values(document_id=poison_doc))
    cluster.send(ids)
    elapsed = wait_until_ended(settings, job_id, timeout_s=120)
    figures = exactly_once(settings, job_id)
    assert figures["answered"] == 6 and figures["failed"] == 1
    rows = {q.id: q for q in questions(settings, job_id)}
    poison = rows[ids[2]]
    assert poison.status is QuestionStatus.failed and poison.attempts == 3
    assert poison.last_error.startswith("gave up after 3 attempts; last: UnidentifiedImageError")
    assert all(rows[i].attempts == 1 for i in ids if i != ids[2]), "the rest of its chunk was answered at once"
    with session_scope(settings) as session:
        runs = session.scalar(select(func.count()).select_from(ChunkRun).where(ChunkRun.job_id == job_id))
    assert runs == 2 + 2, "two chunks, then one retry task per further attempt: no hot loop"
    assert job_status(settings, job_id) is JobStatus.completed
    report("poison-question", figures, attempts=poison.attempts, elapsed_s=elapsed)


def test_postgres_restarted_mid_job(settings, corpus, cluster):
    job_id, ids = new_job(settings, corpus, 24, tag="postgres")
    cluster.send(ids)
    wait_for(lambda: running(settings, job_id), timeout_s=60, poll_s=0.02, what="a chunk to start")
    assert embedded.stop(settings.home_dir)
    time.sleep(1.0)  # the workers' next statements fail while it is down
    embedded.start(settings.home_dir)
    restarted_at = time.monotonic()
    wait_until_ended(settings, job_id, timeout_s=180)
    figures = exactly_once(settings, job_id)
    assert figures["answered"] == 24 and figures["duplicated"] == 0
    # The interrupted tasks retry after 2 s, then 4 s, on whichever worker takes them, and take their questions
    # back without counting an attempt (well within the 8 s lease).
    most = max(q.attempts for q in questions(settings, job_id))
    assert most == 1, "a database outage costs no attempt"
    report("postgres-restart", figures, recover_s=time.monotonic() - restarted_at, max_attempts=most)


def test_redis_restarted_empty_mid_job(settings, corpus, cluster):
    job_id, ids = new_job(settings, corpus, 24, tag="redis")
    cluster.send(ids)
    wait_for(lambda: any(q.status is QuestionStatus.answered for q in questions(settings, job_id)), timeout_s=60,
             poll_s=0.05, what="a first answer")
    cluster.restart_redis_empty()
    restarted_at = time.monotonic()
    lost = sum(q.status is QuestionStatus.queued for q in questions(settings, job_id))
    wait_until_ended(settings, job_id, timeout_s=120)
    figures = exactly_once(settings, job_id)
    assert lost > 0, "some tasks were still in the broker when it lost them"
    assert figures["answered"] == 24 and figures["duplicated"] == 0
    report("redis-restart-empty", figures, lost_in_broker=lost, recover_s=time.monotonic() - restarted_at)


def test_cancel_mid_job(settings, corpus, cluster):
    job_id, ids = new_job(settings, corpus, 40, tag="cancel")
    cluster.send(ids, chunk_size=1)
    wait_for(lambda: any(q.status is QuestionStatus.answered for q in questions(settings, job_id)), timeout_s=60,
             poll_s=0.05, what="a first answer")
    t0 = time.monotonic()
    cli("cancel", job_id)
    wait_for(lambda: job_status(settings, job_id) is JobStatus.cancelled, timeout_s=60, what="the cancel")
    cancel_s = time.monotonic() - t0
    figures = exactly_once(settings, job_id)
    assert figures["answered"] >= 1 and figures["cancelled"] >= 1
    assert figures["answered"] + figures["cancelled"] == 40
    time.sleep(2.0)  # the cancelled questions' tasks are still in the queue: they must run nothing
    assert exactly_once(settings, job_id) == figures
    again = cli("cancel", job_id, ok=False)
    assert again.exit_code == 1 and "already ended" in again.output
    report("cancel", figures, cancel_s=cancel_s)


def test_a_chunk_over_its_time_budget_is_handed_back_then_failed(settings, corpus, cluster):
    cluster.worker("budget", PAGEQA_CHUNK_TIME_BUDGET_SECONDS="0.001", PAGEQA_WORKER_QUEUE="faults-budget")
    job_id, ids = new_job(settings, corpus, 4, tag="budget")
    cluster.send(ids, queue="faults-budget")
    elapsed = wait_until_ended(settings, job_id, timeout_s=60)
    figures = exactly_once(settings, job_id)
    assert figures["failed"] == 4
    for q in questions(settings, job_id):
        assert q.attempts == 3
        assert q.last_error.startswith("gave up after 3 attempts; last: TimeBudgetExceeded: the chunk ran")
    assert job_status(settings, job_id) is JobStatus.failed
    report("time-budget", figures, elapsed_s=elapsed)


def test_kill_9_mid_chunk_a_second_worker_finishes(settings, corpus, cluster):
    job_id, ids = new_job(settings, corpus, 24, tag="kill9")
    cluster.send(ids)
    victim, _ = cluster.holder(settings, job_id)
    held = [q.id for q in running(settings, job_id)]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()
    cluster.worker("replacement", beat=True)
    wait_until_ended(settings, job_id, timeout_s=120)
    recover_s = time.monotonic() - killed_at
    figures = exactly_once(settings, job_id)
    assert figures["answered"] == 24 and figures["duplicated"] == 0
    attempts = {q.id: q.attempts for q in questions(settings, job_id)}
    assert any(attempts[q] >= 2 for q in held), "the killed chunk's questions were claimed again"
    assert job_status(settings, job_id) is JobStatus.completed
    report("kill-9", figures, recover_s=recover_s)


def test_soft_shutdown_hands_the_chunk_back(settings, corpus, cluster):
    job_id, ids = new_job(settings, corpus, 24, tag="soft")
    cluster.send(ids)
    proc, name = cluster.holder(settings, job_id)
    t0 = time.monotonic()
    assert stop_worker(proc, timeout_s=60) == 0
    stop_s = time.monotonic() - t0
    assert not [q for q in running(settings, job_id) if q.worker == name], "the stopped worker left nothing running"
    wait_until_ended(settings, job_id, timeout_s=120)
    figures = exactly_once(settings, job_id)
    assert figures["answered"] == 24 and figures["duplicated"] == 0
    assert max(q.attempts for q in questions(settings, job_id)) == 1, "a shutdown costs no attempt"
    report("soft-shutdown", figures, stop_s=stop_s)
