"""OCR for page images without a text layer: rapidocr on onnxruntime, CPU, with the models its wheel ships.

Models (rapidocr 3.10 wheel, ``rapidocr/models/``; model list at https://rapidai.github.io/RapidOCRDocs/):

* detection: ``PP-OCRv6_det_small.onnx`` (DB text detector, PaddleOCR PP-OCRv6, multilingual);
* direction classifier: ``ch_ppocr_mobile_v2.0_cls_mobile.onnx`` (0° / 180° text lines);
* recognition: ``PP-OCRv6_rec_small.onnx`` (CTC, one multilingual model: Chinese, Japanese, English and ~45 Latin
  script languages; its 18,708-character dictionary is stored in the ONNX metadata, and rapidocr appends the space
  character, so English words come out space-separated).

The three files are passed to rapidocr as explicit ``model_path`` values: with a path, rapidocr opens the file and
never reaches its download code (by default it resolves a model key, checks the SHA-256 of the bundled file and
downloads from modelscope.cn when the file is missing or differs).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from models.images import pad_to_aspect
from pageqa.errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

# rapidocr's own logger ("RapidOCR", propagate=False, its own colour handler) logs every model load at INFO and an
# empty page at WARNING; the engine sets this logger's level from ``Global.log_level``.
RAPIDOCR_LOG_LEVEL = "error"

MODEL_FILES = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}

# A box joins a line when their vertical extents overlap by at least this fraction of the shorter of the two.
LINE_OVERLAP = 0.5
# Pages longer than this one way are padded to it before OCR. rapidocr's detector enlarges an image until its
# shorter side is 736 px (Det.limit_type "min"), so its cost grows with the ratio: a blank 44 × 4472 page (a
# 1 × 14400 pt PDF page) took 65 s on 2 cores, 1118 × 4472 3.3 s, a blank 1414 × 2000 page 2.2 s.
OCR_MAX_ASPECT = 4


@dataclass(frozen=True)
class OcrResult:
    """The text of one page image.

    Attributes:
        text: lines top to bottom, joined by ``"\\n"``; text boxes left to right within a line, joined by a space.
        n_lines: number of lines in ``text``.
        mean_confidence: mean recognition score of the kept text boxes, 0..1; 0.0 when nothing was found.
        ms: wall milliseconds spent in :meth:`PageOCR.read`.
    """

    text: str
    n_lines: int
    mean_confidence: float
    ms: float


def bundled_model_dir() -> Path:
    """The ``models/`` folder inside the installed rapidocr package (found without importing it)."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("cannot create the OCR engine: the rapidocr package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class PageOCR:
    """OCR for page images without a text layer: rapidocr (PP-OCR det + cls + rec ONNX models shipped in the wheel)
    on onnxruntime, CPU.

    The three ONNX sessions are created here, once, so a missing or broken model fails at start-up, not on the
    first page. ``read`` may be called from one thread at a time.

    Args:
        max_side: longest image side in pixels; larger images are downscaled (aspect ratio kept) before detection.
        threads: onnxruntime intra-op threads per session; ``None`` lets onnxruntime decide (one per physical core).
            rapidocr ignores values above ``os.cpu_count()``.
        min_confidence: text boxes whose recognition score is below this (0..1) are dropped.

    Raises:
        ConfigError: ``threads`` < 1, ``max_side`` < 32 or ``min_confidence`` outside 0..1.
        ModelLoadError: rapidocr is missing, a bundled model file is missing, or onnxruntime cannot load it.
    """

    def __init__(self, *, max_side: int = 2000, threads: int | None = None, min_confidence: float = 0.5):
        if threads is not None and threads < 1:
            raise ConfigError(f"OCR threads must be ≥ 1 (or None for onnxruntime's default), got {threads}")
        if max_side < 32:
            raise ConfigError(f"OCR max_side must be ≥ 32 pixels, got {max_side}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"OCR min_confidence must be within 0..1, got {min_confidence}")
        self.max_side, self.threads, self.min_confidence = max_side, threads, min_confidence
        self._engine = _create_engine(self._params())

    def _params(self) -> dict[str, object]:
        """rapidocr config overrides (keys of rapidocr/config.yaml)."""
        model_dir = bundled_model_dir()
        paths = {stage: model_dir / name for stage, name in MODEL_FILES.items()}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise ModelLoadError(f"cannot create the OCR engine: bundled rapidocr model missing: {', '.join(missing)}")
        params: dict[str, object] = {f"{stage}.model_path": str(path) for stage, path in paths.items()}
        params |= {
            "Global.log_level": RAPIDOCR_LOG_LEVEL,
            "Global.max_side_len": self.max_side,
            "Global.text_score": self.min_confidence,
            "EngineConfig.onnxruntime.intra_op_num_threads": self.threads or -1,
        }
        return params

    def read(self, image: Image.Image) -> OcrResult:
        """OCR one page image (any PIL mode; converted to RGB; padded to ``OCR_MAX_ASPECT`` when longer).

        Returns:
            the page text in reading order (see :func:`group_lines`); an empty text with 0 lines when no text
            box is found or none reaches ``min_confidence``.
        """
        start = time.perf_counter()
        out = self._engine(pad_to_aspect(image.convert("RGB"), OCR_MAX_ASPECT))  # box coordinates unchanged
        boxes = [] if out.boxes is None else [[tuple(map(float, pt)) for pt in box] for box in out.boxes]
        texts, scores = list(out.txts or ()), [float(s) for s in (out.scores or ())]
        lines = group_lines(boxes, texts)
        return OcrResult(
            text="\n".join(lines),
            n_lines=len(lines),
            mean_confidence=sum(scores) / len(scores) if scores else 0.0,
            ms=(time.perf_counter() - start) * 1000.0,
        )


def _create_engine(params: dict[str, object]):
    """A ``rapidocr.RapidOCR`` with its three onnxruntime sessions already created."""
    try:
        from rapidocr import RapidOCR

        engine = RapidOCR(params=params)
        # rapidocr creates each session lazily on first use; these are its loaders (rapidocr/main.py).
        engine._load_det_model()
        engine._load_cls_model()
        engine._load_rec_model()
    # onnxruntime's load errors (InvalidProtobuf, NoSuchFile, Fail) derive from Exception directly.
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot create the OCR engine (rapidocr on onnxruntime): {first}") from exc
    log.info("OCR engine ready: %s", ", ".join(f"{k}={v}" for k, v in params.items() if not k.endswith("model_path")))
    return engine


def group_lines(boxes: Sequence[Sequence[tuple[float, float]]], texts: Sequence[str]) -> list[str]:
    """Text boxes in reading order: boxes grouped into lines by vertical overlap, lines top to bottom, boxes left
    to right within a line, joined by one space.

    Args:
        boxes: one quadrilateral per text box, 4 ``(x, y)`` corners in pixels (y grows downwards).
        texts: the recognised text of each box, same order as ``boxes``.

    Boxes are taken in order of vertical centre; a box joins the line being built when their vertical extents
    overlap by at least ``LINE_OVERLAP`` of the shorter height, else it starts a new line. Side-by-side columns
    therefore read across: one row of both columns per line.
    """
    items = []  # (top, bottom, left, text) per box, pixels
    for corners, text in zip(boxes, texts, strict=True):
        xs, ys = [x for x, _ in corners], [y for _, y in corners]
        items.append((min(ys), max(ys), min(xs), text))
    items.sort(key=lambda it: (it[0] + it[1]) / 2)
    lines: list[list[tuple[float, float, float, str]]] = []
    top = bottom = 0.0  # vertical extent of the current line, pixels
    for item in items:
        y0, y1 = item[0], item[1]
        overlap = min(y1, bottom) - max(y0, top)
        if lines and overlap >= LINE_OVERLAP * min(y1 - y0, bottom - top):
            lines[-1].append(item)
            top, bottom = min(top, y0), max(bottom, y1)
        else:
            lines.append([item])
            top, bottom = y0, y1
    joined = (" ".join(t.strip() for *_, t in sorted(line, key=lambda it: it[2]) if t.strip()) for line in lines)
    return [line for line in joined if line]
