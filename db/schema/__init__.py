"""SQLAlchemy 2 models of pageqa's tables. The schema itself changes only through Alembic migrations.

One module per kind of data, beside the data access that owns it: :mod:`db.schema.corpus` (corpora, documents,
pages, passages, the late-interaction index), :mod:`db.schema.jobs` (jobs, questions, answers, citations, lane
rankings, chunk runs), :mod:`db.schema.files` (files and batches of the OpenAI-compatible protocol),
:mod:`db.schema.keys` (API keys), :mod:`db.schema.report` (nightly reports), all on
:class:`~db.schema.base.Base`. Importing this package registers every table on ``Base.metadata`` (the Alembic
environment compares against it); import the models from here.

Page numbers are 1-based everywhere. Times are ``timestamptz``; durations are milliseconds (float).
"""

from db.schema.base import Base
from db.schema.corpus import (
    TEXT_DIM,
    VISUAL_DIM,
    Corpus,
    Document,
    Page,
    PageEmbedding,
    PagePoolVector,
    Passage,
    VisualIndex,
)
from db.schema.files import Batch, FilePart, StoredFile
from db.schema.jobs import Answer, ChunkRun, Citation, Job, LaneHit, Question
from db.schema.keys import ApiKey
from db.schema.report import Report

__all__ = [
    "TEXT_DIM", "VISUAL_DIM", "Answer", "ApiKey", "Base", "Batch", "ChunkRun", "Citation", "Corpus", "Document", "FilePart", "Job",
    "LaneHit", "Page", "PageEmbedding", "PagePoolVector", "Passage", "Question", "Report", "StoredFile", "VisualIndex",
]
