"""Task: answer a chunk of questions (:func:`services.answering.answer_chunk`)."""

from __future__ import annotations

from db.engine import TRANSIENT
from pageqa.settings import get_settings
from services import answering
from services.chunk_run import worker_id
from worker.app import app
from worker.queue import ANSWER_CHUNK


@app.task(name=ANSWER_CHUNK, bind=True, max_retries=30)
def answer_chunk(
    self, question_ids: list[int], enqueued_at: float | None = None, held_by: list[str] | None = None,
) -> int:
    """Answer the due questions among ``question_ids``; returns how many got an answer (by reuse too).

    A database error (:data:`db.engine.TRANSIENT`) retries the whole task after 2, 4, 8… s (at most 60 s, 30
    times). The retry names the workers that held its questions (``held_by``): whichever worker runs it takes them
    back without counting an attempt, instead of leaving them ``running`` until their lease expires.
    """
    try:
        return answering.answer_chunk(get_settings(), question_ids, enqueued_at=enqueued_at, held_by=held_by or [])
    except TRANSIENT as exc:
        holders = sorted({*(held_by or []), worker_id()})
        raise self.retry(exc=exc, countdown=min(2.0 * 2 ** self.request.retries, 60.0),
                         kwargs={"enqueued_at": enqueued_at, "held_by": holders}) from None
