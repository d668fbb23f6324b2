"""What a worker process keeps resident: the model pipeline (loaded once) and the OCR engine (on first use).
Page multi-vectors stay in PostgreSQL; the visual lane reads only its candidates' tiers."""

from __future__ import annotations

import logging
import threading

from models.pipeline import Pipeline
from pageqa.settings import Settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_pipeline: Pipeline | None = None
_ocr = None


def ocr():
    """The process's OCR engine (rapidocr), created on first use: only pages without a text layer need it."""
    global _ocr
    with _lock:
        if _ocr is None:
            from models.ocr import PageOCR

            _ocr = PageOCR()
        return _ocr


def pipeline(settings: Settings) -> Pipeline:
    """The process's pipeline, loaded on first use (``worker_init`` loads it before the first task)."""
    global _pipeline
    with _lock:
        if _pipeline is None:
            _pipeline = Pipeline(settings)
            log.info("models resident on %s: %s", _pipeline.device, _pipeline.model_ids)
        return _pipeline


_search_conns: list = []


def search_connections(settings: Settings) -> list:
    """The process's ``settings.search_connections`` psycopg connections for the two-stage search (pgvector types
    registered), opened on first use; a broken one is replaced."""
    from db.engine import psycopg_conninfo
    from db.multivector import connect

    with _lock:
        _search_conns[:] = [c for c in _search_conns if not c.closed and not c.broken]
        while len(_search_conns) < settings.search_connections:
            _search_conns.append(connect(psycopg_conninfo(settings)))
        return list(_search_conns[: settings.search_connections])


class PageImageCache:
    """Decoded page images by page id, bounded by ``max_bytes`` of RGB pixels (width × height × 3 bytes each),
    least recently used evicted first (cachetools' ``LRUCache``). Questions of a job tend to hit the same pages,
    and the reranker and the generator read the same ones, so a worker keeps them decoded between chunks."""

    def __init__(self, max_bytes: int):
        import cachetools

        self.max_bytes, self.hits, self.misses = max_bytes, 0, 0
        self._cache = cachetools.LRUCache(maxsize=max_bytes, getsizeof=lambda img: img.width * img.height * 3)
        self._lock = threading.Lock()

    def get_many(self, page_ids, load) -> dict:
        """The images of ``page_ids``; the ones not cached come from ``load(missing ids) -> {id: image}``."""
        with self._lock:
            out = {pid: self._cache[pid] for pid in page_ids if pid in self._cache}
            self.hits += len(out)
        missing = [pid for pid in page_ids if pid not in out]
        if missing:
            loaded = load(missing)
            with self._lock:
                self.misses += len(missing)
                for pid, img in loaded.items():
                    if img.width * img.height * 3 <= self.max_bytes:
                        self._cache[pid] = img
            out.update(loaded)
        return out

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def bytes(self) -> int:
        """RGB bytes held now."""
        return int(self._cache.currsize)


_images: PageImageCache | None = None


def page_images(settings: Settings) -> PageImageCache:
    """The process's decoded page image cache (``settings.image_cache_mb`` megabytes)."""
    global _images
    with _lock:
        if _images is None:
            _images = PageImageCache(settings.image_cache_mb * 1024 * 1024)
        return _images
