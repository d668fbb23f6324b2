"""pageqa: batch question answering over visual documents.

Top-level packages: ``db`` (schema, sessions, embedded PostgreSQL), ``models`` (ColQwen2 retrieval, MonoQwen2-VL
rerank, Qwen2-VL generation), ``tasks`` (Celery tasks), ``worker`` (Celery app, embedded Redis, worker start-up),
``scripts`` (CLI, demo). This package holds what they all share: settings and errors.
"""

__version__ = "0.1.0"
