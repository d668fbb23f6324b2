"""Image files in every mode a scanner, phone or editor writes are stored as a viewer shows them (issue 19): each is
ingested for real (render processes, PostgreSQL) and its stored page compared with a reference drawn from the
pixel values the file was made of, not through Pillow's conversions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from db.engine import session_scope
from db.schema import Corpus, Document, Page
from models.images import decode_image
from services.ingest.pipeline import ingest_files

CORPUS = "image-modes"
H, W = 120, 160  # landscape, so a page left sideways has another shape
MAX_MEAN_ABS_DIFF = 6.0  # grey levels (0–255), averaged over pixels and channels: WebP at quality 90 stays under 3


def _scene() -> np.ndarray:
    """(H, W, 3) uint8 RGB: a horizontal gradient, a red block, a dark bar; no two quadrants alike."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[...] = np.linspace(40, 230, W, dtype=np.uint8)[None, :, None]
    rgb[10:50, 10:70] = (200, 30, 30)
    rgb[80:100, 20:140] = (20, 20, 90)
    return rgb


def _grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint8: ITU-R 601 luma, the weights Pillow's L conversion uses."""
    return np.rint(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: ``rgb`` composited over white with ``alpha`` (H, W) 0–255."""
    a = alpha[..., None] / 255
    return np.rint(rgb * a + 255 * (1 - a)).astype(np.uint8)


def _alpha() -> np.ndarray:
    """(H, W) uint8: opaque, a fully transparent left third, a half-transparent bottom strip."""
    alpha = np.full((H, W), 255, np.uint8)
    alpha[:, : W // 3] = 0
    alpha[100:, :] = 128
    return alpha


def _cases(folder: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """File name → (the file, its (H, W, 3) uint8 reference as a viewer shows it)."""
    rgb, alpha = _scene(), _alpha()
    grey = _grey(rgb)
    cases: dict[str, tuple[Path, np.ndarray]] = {}

    def add(name: str, image: Image.Image, reference: np.ndarray, **save) -> None:
        image.save(folder / name, **save)
        cases[name] = (folder / name, reference if reference.ndim == 3 else np.repeat(reference[..., None], 3, 2))

    add("grey16.png", Image.fromarray(grey.astype(np.uint16) * 257), grey)  # mode I;16, 0–65535
    hidden = rgb.copy()
    hidden[alpha == 0] = 0  # what is under the transparent areas: black, as many editors leave it
    add("rgba.png", Image.fromarray(np.dstack([hidden, alpha]), "RGBA"), _on_white(hidden, alpha))
    add("la.png", Image.fromarray(np.dstack([_grey(hidden), alpha]), "LA"),
        _on_white(np.repeat(_grey(hidden)[..., None], 3, 2), alpha))
    index = (grey // 32).astype(np.uint8) + 1  # palette entries 1–8
    index[alpha == 0] = 0  # entry 0: black, transparent through tRNS
    palette = [0, 0, 0] + [c for i in range(1, 9) for c in (i * 28, 255 - i * 28, 128)]
    colours = np.array(palette, np.uint8).reshape(-1, 3)
    paletted = Image.fromarray(index, "P")
    paletted.putpalette(palette)
    add("palette-trns.png", paletted, np.where((index == 0)[..., None], 255, colours[index]).astype(np.uint8),
        transparency=0)
    add("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), rgb, quality=95)
    stripes = np.zeros((H, W), bool)
    stripes[:, ::8] = stripes[::6, :] = True
    add("one-bit.png", Image.fromarray(stripes).convert("1"), np.where(stripes, 255, 0).astype(np.uint8))
    sideways = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90)  # as a phone held upright stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the viewer turns it 90° clockwise
    add("exif-rotated.jpg", sideways, rgb, quality=95, exif=exif)
    return cases


def _stored(settings, source: str) -> np.ndarray:
    with session_scope(settings) as session:
        image = session.scalars(
            select(Page.image).join(Document, Document.id == Page.document_id)
            .join(Corpus, Corpus.id == Document.corpus_id).where(Corpus.name == CORPUS, Document.source == source)
        ).one()
    return np.asarray(decode_image(image))


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def ingested(settings, services, tmp_path_factory) -> dict[str, tuple[Path, np.ndarray]]:
    cases = _cases(tmp_path_factory.mktemp("modes"))
    report = ingest_files(settings, corpus=CORPUS, files=[path for path, _ in cases.values()])
    assert report.errors == [] and len(report.added) == len(cases)
    return cases


@pytest.mark.parametrize("name", ["grey16.png", "rgba.png", "la.png", "palette-trns.png", "cmyk.jpg",
                                  "one-bit.png", "exif-rotated.jpg"])
def test_each_image_mode_is_stored_as_a_viewer_shows_it(settings, ingested, name):
    path, reference = ingested[name]
    assert reference.std() > 40  # the scene has content a blank or uniform page would not match
    stored = _stored(settings, name)
    assert stored.shape == reference.shape  # upright: 120 rows of 160 pixels, not 160 of 120
    assert stored.std() > 40
    assert _mad(stored, reference) < MAX_MEAN_ABS_DIFF, _mad(stored, reference)


@pytest.mark.parametrize("name", ["grey16.png", "rgba.png", "la.png", "palette-trns.png", "exif-rotated.jpg"])
def test_the_reference_tells_a_plain_conversion_apart(ingested, name):
    """Pillow's plain ``convert("RGB")``, what ingest did before, is far from each reference: the comparison above
    can fail."""
    path, reference = ingested[name]
    with Image.open(path) as img:
        plain = np.asarray(img.convert("RGB"))
    assert plain.shape != reference.shape or _mad(plain, reference) > 5 * MAX_MEAN_ABS_DIFF
