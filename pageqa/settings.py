"""The one settings object of pageqa, read from ``PAGEQA_*`` environment variables.

Everything configurable lives here and is passed down; no other module reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ModelSetName = Literal["real", "tiny"]

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

    models: ModelSetName = Field(default="real", description="'real' (hub ids below) or 'tiny' (random checkpoints).")
    retriever_model: str | None = None
    reranker_base_model: str | None = None
    reranker_model: str | None = None
    generator_model: str | None = None

    device: str = Field(default="auto", description="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'.")
    quantize_generator: bool | None = Field(
        default=None, description="Load the generator in 4-bit NF4; unset: only when the device is CUDA."
    )

    page_max_pixels: int = Field(default=1_605_632, gt=0, description="Budget of the stored page image.")
    page_image_format: Literal["WEBP", "PNG", "JPEG"] = "WEBP"
    page_image_quality: int = Field(default=90, ge=1, le=100)
    retriever_max_pixels: int = Field(default=768 * 28 * 28, gt=0)
    reranker_max_pixels: int = Field(default=512 * 28 * 28, gt=0)
    generator_min_pixels: int = Field(default=256 * 28 * 28, gt=0)
    generator_max_pixels: int = Field(default=1024 * 28 * 28, gt=0)

    embed_batch_size: int = Field(default=4, gt=0, description="Pages per ColQwen2 forward pass.")
    embed_task_pages: int = Field(default=16, gt=0, description="Pages per embedding task.")
    query_batch_size: int = Field(default=32, gt=0)
    rerank_batch_size: int = Field(default=4, gt=0, description="(question, page) pairs per reranker pass.")
    generate_batch_size: int = Field(default=4, gt=0, description="Questions per generate() call.")
    chunk_size: int = Field(default=8, gt=0, description="Questions per answering task.")

    retrieve_top_k: int = Field(default=20, gt=0)
    rerank_top_k: int = Field(default=3, gt=0, description="Pages passed to the generator.")
    max_new_tokens: int = Field(default=128, gt=0)

    worker_queue: str = "pageqa"

    @property
    def home_dir(self) -> Path:
        """``home`` with ``~`` expanded, as an absolute path."""
        return self.home.expanduser().resolve()

    def model_ids(self) -> dict[str, str]:
        """Model ids or local directories for each stage, after applying ``models`` and explicit overrides.

        Raises:
            FileNotFoundError: ``models`` is ``tiny`` and the tiny set is not built (``pageqa models make-tiny``).
        """
        if self.models == "tiny":
            from models.tiny import tiny_model_set

            tiny = tiny_model_set(self.home_dir / "models" / "tiny")
            base = {
                "retriever": str(tiny.colqwen2),
                "reranker_base": str(tiny.qwen2_vl),
                "reranker": str(tiny.monoqwen2_vl),
                "generator": str(tiny.qwen2_vl),
            }
        else:
            base = dict(REAL_MODELS)
        overrides = {
            "retriever": self.retriever_model,
            "reranker_base": self.reranker_base_model,
            "reranker": self.reranker_model,
            "generator": self.generator_model,
        }
        return {k: overrides[k] or v for k, v in base.items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
