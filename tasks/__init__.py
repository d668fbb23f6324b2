"""Celery task definitions only: each is a retry policy around one call into :mod:`services`. Task names
(``pageqa.answer_chunk`` …) never change, so messages already queued stay valid."""
