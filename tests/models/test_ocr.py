"""PageOCR on rendered English text, with the real rapidocr engine and the ONNX models bundled in its wheel."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
from PIL import Image, ImageDraw, ImageFont

from models import ocr
from models.ocr import PageOCR, group_lines
from pageqa.errors import ConfigError, ModelLoadError

pytestmark = pytest.mark.models

LINES = ["The quick brown fox jumps", "over the lazy dog", "Annual revenue grew 12 percent"]
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


@pytest.fixture(scope="module")
def engine() -> PageOCR:
    return PageOCR()


def render(lines: list[str]) -> Image.Image:
    """Black 40 px DejaVu Sans on white, one line every 100 px, on a 760 px square.

    Square because the detector upscales the short side to 736 px: a wide strip would cost twice the pixels.
    """
    font = ImageFont.truetype(str(FONT), 40)
    image = Image.new("RGB", (760, 760), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 30 + 100 * i), line, fill="black", font=font)
    return image


def test_reads_rendered_lines_in_order_with_spaces(engine):
    result = engine.read(render(LINES))

    assert result.n_lines == len(LINES)
    got = result.text.lower().split("\n")
    assert len(got) == len(LINES)
    for line, expected in zip(got, LINES, strict=True):
        # Comparing token lists checks the words and that they are space-separated ("quickbrown" would fail).
        assert line.split() == expected.lower().split()
    assert 0.5 <= result.mean_confidence <= 1.0
    assert result.ms > 0


def test_blank_page_gives_no_text(engine):
    result = engine.read(Image.new("L", (736, 736), 255))

    assert result.text == ""
    assert result.n_lines == 0
    assert result.mean_confidence == 0.0


def box(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def test_group_lines_orders_by_overlap_then_x():
    boxes = [
        box(400, 104, 600, 136),  # second line, right column, a few px lower than its left neighbour
        box(10, 10, 200, 40),  # first line, left
        box(10, 100, 200, 130),  # second line, left
        box(400, 12, 600, 42),  # first line, right
    ]
    texts = ["d", "a", "c", "b"]

    assert group_lines(boxes, texts) == ["a b", "c d"]


def test_group_lines_keeps_barely_touching_boxes_apart():
    assert group_lines([box(0, 0, 100, 30), box(200, 20, 300, 50)], ["upper", "lower"]) == ["upper", "lower"]
    assert group_lines([], []) == []


def test_broken_model_file_raises_model_load_error(tmp_path, monkeypatch):
    for name in ocr.MODEL_FILES.values():
        (tmp_path / name).write_bytes(b"not an onnx model")
    monkeypatch.setattr(ocr, "bundled_model_dir", lambda: tmp_path)

    with pytest.raises(ModelLoadError, match="cannot create the OCR engine"):
        PageOCR()


def test_missing_model_file_raises_model_load_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ocr, "bundled_model_dir", lambda: tmp_path)

    with pytest.raises(ModelLoadError, match="PP-OCRv6_det_small.onnx"):
        PageOCR()


def test_bad_thread_count_is_a_config_error():
    with pytest.raises(ConfigError):
        PageOCR(threads=0)
