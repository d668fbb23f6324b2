"""The offline model set through a real worker: text lanes (full-text + MiniLM passages), no reranker, and answers
from an LLM over the best passages (a tiny random Qwen2ForCausalLM in place of the bundled GGUF one), stored with
their confidence."""

from __future__ import annotations

import pytest

from models.tiny_text import make_tiny_text_llm
from services.ingest.pipeline import ingest_files
from services.jobs import submit_file
from services.results import result_records
from scripts.cli.progress import embed_and_wait, watch_job
from worker.process import running_worker

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def offline(settings, services, tmp_path_factory):
    """Settings for the offline set with a tiny LLM on their own queue, with a worker serving it."""
    llm = make_tiny_text_llm(tmp_path_factory.mktemp("offline") / "llm")
    offline = settings.model_copy(update={"models": "offline", "worker_queue": "pageqa-offline",
                                          "offline_generator": str(llm)})
    with running_worker(offline, log_name="test-offline-worker") as alive:
        yield offline, alive


def test_offline_answers_come_from_the_llm_with_a_confidence(offline, sample_docs, tmp_path):
    settings, alive = offline
    ingest_files(settings, corpus="offline", files=[sample_docs["pdf"]])
    embed_and_wait(settings, corpus="offline", wait=True, alive=alive)
    questions = tmp_path / "q.csv"
    questions.write_text(
        "custom_id,question\n"
        "apples,How many tonnes of apples were harvested in 2023?\n"
        "revenue,What did quarterly revenue rise to?\n",
        encoding="utf-8",
    )
    job = submit_file(settings, path=questions, corpus="offline", options={})
    assert watch_job(settings, job_id=job.job_id, alive=alive).status == "completed"
    records = {r["custom_id"]: r for r in result_records(settings, job_id=job.job_id)}

    apples, revenue = records["apples"], records["revenue"]
    assert apples["answer_kind"] == "generated" and 0.0 < apples["confidence"] <= 1.0
    assert apples["citations"][0]["page"] == 1 and set(apples["citations"][0]["lanes"]) == {"lexical", "dense"}
    assert revenue["citations"][0]["page"] == 3 and 0.0 < revenue["confidence"] <= 1.0
    assert apples["models"] == {"retriever": "text:sentence-transformers/all-MiniLM-L6-v2", "reranker": "none",
                                "generator": settings.offline_generator}
