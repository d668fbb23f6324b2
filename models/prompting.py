"""The answer prompt's contract, shared by every generator: answer from the given document content only, the
answer alone and briefly, and exactly ``NOT_ANSWERABLE`` when the content does not hold it."""

from __future__ import annotations

from pageqa.domain import NOT_ANSWERABLE


def answer_instruction(question: str, *, noun: str, where: str) -> str:
    """The instruction that follows the document content in a generator's prompt. ``noun`` and ``where`` name that
    content: ("pages", "shown above") for page images, ("passages", "above") for text. ``question`` must already be
    made safe for the model's chat template (:func:`models.loading.plain_text`)."""
    return (
        f"Answer the question using only the document {noun} {where}. Reply with the answer alone, as briefly as "
        f'possible. If the {noun} do not contain the answer, reply exactly "{NOT_ANSWERABLE}".\nQuestion: {question}'
    )
