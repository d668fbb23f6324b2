"""The wire format of OpenAI's Batch API as pageqa reads and writes it: a request line of an input file becomes a
question row, an answered question becomes an output line whose body is a ``chat.completion``, a question that ended
without an answer becomes an error line. The lines are those of OpenAI's Batch guide (and of vLLM's ``run-batch``).

Input line::

    {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "…", "messages": [{"role": "user", "content": "<question>"}], "max_tokens": 64,
              "metadata": {"document": "<file name or title>"}}}

The question is the text of the last ``user`` message (a string, or its ``text`` content parts joined by a line
break); ``body.metadata.document`` restricts retrieval to one document, as the ``document`` column of a CSV does.
Output lines carry the citations in the ``chat.completion`` body under :data:`CITATIONS_KEY`, and the answer's
confidence under :data:`CONFIDENCE_KEY`.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from pageqa.errors import InputError

#: The one endpoint pageqa answers in a batch.
CHAT_COMPLETIONS = "/v1/chat/completions"
#: The key of the ``chat.completion`` body that holds the cited pages (a list of ``{"document", "document_id",
#: "page" (1-based), "rank", "lanes", "retrieval_score", "rerank_score"}``, best first). The SDK's
#: ``ChatCompletion`` keeps keys it does not declare: ``completion.citations``.
CITATIONS_KEY = "citations"
#: ``completion.confidence``: the generator's own probability of its answer in [0, 1], or null (extractive answers).
CONFIDENCE_KEY = "confidence"


def request_fields(record: dict, *, source: str, line: int) -> tuple[dict, int | None]:
    """The question row of one input line (``custom_id``, ``question``, ``document``) and its ``max_tokens`` (or
    ``max_completion_tokens``; None when neither is given). ``custom_id`` is passed on as given: the question-file
    reader checks it as it does every file's (a string; code ``invalid_custom_id``).

    Raises:
        InputError: with the line, when ``method`` is not ``POST``, ``url`` is not :data:`CHAT_COMPLETIONS`,
            ``body`` or its ``messages`` are malformed, the last user message has no text or has a non-text part,
            ``max_tokens`` is not a positive integer, or ``metadata.document`` is not a string.
    """
    def refuse(message: str, code: str = "invalid_request") -> InputError:
        return InputError(message, source=source, line=line, code=code)

    if record.get("method") != "POST":
        raise refuse(f"method must be POST, not {record.get('method')!r}", "invalid_method")
    if record.get("url") != CHAT_COMPLETIONS:
        raise refuse(f"url {record.get('url')!r} is not answered here: pageqa answers {CHAT_COMPLETIONS}",
                     "invalid_url")
    body = record.get("body")
    if not isinstance(body, dict):
        raise refuse("body must be a JSON object (a chat completion request)")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        raise refuse(f"max_tokens must be a positive integer, not {max_tokens!r}")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise refuse("body.metadata must be a JSON object")
    document = (metadata or {}).get("document")
    if document is not None and not isinstance(document, str):
        raise refuse("body.metadata.document must be a string (a file name or title of the corpus)")
    question = _question(body.get("messages"), refuse)
    return {"custom_id": record.get("custom_id"), "question": question, "document": document}, max_tokens


def _question(messages, refuse) -> str:
    """The text of the last user message."""
    if not isinstance(messages, list) or not messages:
        raise refuse("body.messages must be a non-empty list of messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise refuse("body.messages has no user message (the question)")
    content = users[-1].get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise refuse("the last user message has no text content")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise refuse(f"a content part of type {kind!r} is not answered: pageqa takes the question as text and "
                         "answers it from the corpus's pages")
        texts.append(part["text"])
    return "\n".join(texts)


def request_counts(counts: dict[str, int]) -> dict[str, int]:
    """A batch's ``request_counts`` from its job's (:func:`db.jobs.request_counts`): ``total``, ``completed``
    (answered) and ``failed``, every question that ended without an answer (failed, expired or cancelled: the
    lines of the error file). Questions still queued or running are in neither."""
    return {"total": counts["total"], "completed": counts["completed"],
            "failed": counts["failed"] + counts["expired"] + counts["cancelled"]}


def _ref(batch_id: str, custom_id: str) -> str:
    """24 hex digits naming one request of one batch, the same on every read."""
    return hashlib.sha256(f"{batch_id}\x00{custom_id}".encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _unix(stamp: str | None) -> int:
    return int(dt.datetime.fromisoformat(stamp).timestamp()) if stamp else 0


def output_line(batch_id: str, record: dict) -> dict:
    """The output line of an answered question (a record of :func:`services.results.result_records`): the answer as
    a ``chat.completion`` (``created``: when it was answered, Unix seconds; ``model``: the generator's id;
    ``finish_reason`` ``stop``; ``usage`` null: token counts are not recorded) with its citations and confidence."""
    ref = _ref(batch_id, record["custom_id"])
    body = {
        "id": f"chatcmpl-{ref}", "object": "chat.completion", "created": _unix(record.get("answered_at")),
        "model": record["models"]["generator"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": record["answer"], "refusal": None},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": None, CITATIONS_KEY: record["citations"], CONFIDENCE_KEY: record.get("confidence"),
    }
    return {"id": f"batch_req_{ref}", "custom_id": record["custom_id"],
            "response": {"status_code": 200, "request_id": f"req_{ref}", "body": body}, "error": None}


def error_line(batch_id: str, record: dict) -> dict:
    """The error-file line of a question that ended without an answer (a record of
    :func:`services.results.error_records`): ``response`` null and ``error`` ``{"code", "message"}``, the code
    ``batch_cancelled``, ``batch_expired`` or ``answer_failed``."""
    ref = _ref(batch_id, record["custom_id"])
    return {"id": f"batch_req_{ref}", "custom_id": record["custom_id"], "response": None, "error": record["error"]}
