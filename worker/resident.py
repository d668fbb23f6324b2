"""What a worker process keeps resident: the model pipeline (loaded once), the OCR engine and the decoded page
images (on first use). Page multi-vectors stay in PostgreSQL; the visual lane reads only its candidates' tiers
(over :func:`db.engine.search_connections`)."""

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


_images = None


def page_images(settings: Settings):
    """The process's :class:`models.images.ImageCache` of decoded page images (``settings.image_cache_mb``)."""
    global _images
    from models.images import ImageCache

    with _lock:
        if _images is None:
            _images = ImageCache(settings.image_cache_mb * 1024 * 1024)
        return _images
