"""Per-job options, as the CLI's flags and the HTTP API's JSON body give them; stored with the job as JSON."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pageqa.domain import Lane, name_problem
from pageqa.errors import ConfigError

_WINDOW = re.compile(r"^(\d{1,7})(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
#: Longest completion window accepted: 30 days.
MAX_WINDOW_S = 30 * 86_400
#: Longest answer a job may ask for, in tokens.
MAX_NEW_TOKENS = 4096


class JobOptions(BaseModel):
    """How a job's questions are answered. Unset top-k and length options fall back to the worker's settings
    (``PAGEQA_RETRIEVE_TOP_K`` …).

    ``priority`` orders jobs in the queue: 0 runs last, 9 first (default 5). ``completion_window`` is how long the
    job may take, e.g. ``"24h"`` (as in OpenAI's Batch API), ``"90m"``, ``"30s"``, ``"7d"``: when it passes, the
    questions not answered yet end ``expired``.
    """

    model_config = ConfigDict(extra="forbid")

    document_field: str = Field("document", min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$",
                                description="Column (CSV) or key (JSONL) naming the document to search in: a name "
                                            "(pageqa.domain.name_problem).")
    retrieve_top_k: int | None = Field(None, ge=1, le=1000, description="Pages kept after first-stage fusion.")
    rerank_top_k: int | None = Field(None, ge=1, le=100, description="Pages passed on to the generator.")
    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS, description="Longest answer, in tokens.")
    chunk_size: int | None = Field(None, ge=1, le=1024, description="Questions per worker task.")
    lanes: list[Lane] | None = Field(
        None, min_length=1, max_length=3, description="Retrieval lanes fused by reciprocal rank fusion.")
    priority: int = Field(5, ge=0, le=9, description="0 runs last, 9 first.")
    completion_window: str = Field("24h", pattern=_WINDOW.pattern, description="e.g. 24h, 90m, 30s, 7d.")

    @field_validator("document_field")
    @classmethod
    def _a_name(cls, value: str) -> str:
        problem = name_problem(value, max_chars=100)
        if problem is not None:
            raise ValueError(f"{value!r} {problem}")
        return value

    @property
    def completion_window_s(self) -> float:
        """The completion window in seconds."""
        value, unit = _WINDOW.match(self.completion_window).groups()
        return float(int(value) * _UNIT_S[unit])

    def stored(self) -> dict:
        """The options as stored with the job (unset ones left out)."""
        return self.model_dump(exclude_none=True)


def job_options(**values) -> JobOptions:
    """:class:`JobOptions` from keyword values (None: unset).

    Raises:
        ConfigError: an option is out of range or unknown, or the completion window is 0 or over 30 days (the
            message names the option).
    """
    try:
        options = JobOptions(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "options"
        raise ConfigError(f"job option {where}: {first['msg']}") from None
    if not 0 < options.completion_window_s <= MAX_WINDOW_S:
        raise ConfigError(f"job option completion_window: {options.completion_window!r} must be more than 0 and "
                          "at most 30d")
    return options
