"""Rendering at ingest: PDF pages rasterised with pypdfium2 and image files decoded with Pillow, each stored
downscaled to ``page_max_pixels`` and compressed. Runs in a pool of render processes: a PDF's pages are split into
page ranges that the processes render side by side, each opening the file itself (pdfium is not thread-safe;
separate processes are).

Hostile input is refused with a one-line error naming the file (and the 1-based page): images over
``max_image_pixels`` (decompression bombs, refused before decoding) and pages pdfium cannot render. Page boxes of
any size render within ``page_max_pixels``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image, UnidentifiedImageError

from db import corpus as corpus_db
from models.images import MAX_ASPECT, WEBP_METHOD, as_viewed, encode_image, fit_page
from pageqa.errors import InputError
from pageqa.settings import Settings

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")  # the only Pillow decoders tried: never EPS (Ghostscript) or others
MAX_RENDER_DPI = 300
RANGE_PAGES = 8  # most pages per render task: processes share even short PDFs; reopening one per task costs little


@dataclass(frozen=True)
class RenderSpec:
    """How a page is stored: at most ``max_pixels`` pixels, compressed to ``fmt`` at ``quality`` (1–100) and, for
    WEBP, libwebp effort ``webp_method`` (0–6); image files over ``max_image_pixels`` pixels are refused."""

    max_pixels: int
    fmt: str
    quality: int
    webp_method: int = WEBP_METHOD
    max_image_pixels: int = Settings.model_fields["max_image_pixels"].default

    @classmethod
    def of(cls, settings: Settings) -> RenderSpec:
        """The spec of ``page_max_pixels``, ``page_image_format``, ``page_image_quality`` and
        ``max_image_pixels``."""
        return cls(settings.page_max_pixels, settings.page_image_format, settings.page_image_quality,
                   max_image_pixels=settings.max_image_pixels)


def render_scale(width_pt: float, height_pt: float, max_pixels: int) -> float:
    """The pdfium scale (1 = 72 DPI) of a page of ``width_pt`` × ``height_pt`` points whose bitmap fits
    ``max_pixels``, at most 300 DPI.

    pdfium makes a bitmap of ceil(w·s) × ceil(h·s) pixels; s is the root of (w·s + 1)(h·s + 1) = max_pixels, so the
    bitmap always fits and never needs a second, Lanczos resampling (which cost more than the render itself).
    """
    w, h = max(width_pt, 1.0), max(height_pt, 1.0)
    scale = (math.sqrt((w + h) ** 2 + 4 * w * h * (max_pixels - 1)) - (w + h)) / (2 * w * h)
    return min(scale, MAX_RENDER_DPI / 72)


def rasterise_page(pdf: pdfium.PdfDocument, index: int, *, max_pixels: int) -> tuple[Image.Image, str]:
    """Page ``index`` (0-based) as an RGB image of at most ``max_pixels`` pixels, and its text layer.

    Raises ``PdfiumError`` for a page pdfium cannot load, and for one whose CropBox and MediaBox do not overlap
    (nothing of it is visible; pdf.js would show the MediaBox, pdfium renders nothing).

    A page more than ``MAX_ASPECT`` times longer one way than the other (the PDF allows 14400 × 1 pt) is rendered
    for the page box padded to that ratio and stored padded (``fit_page``), so its bitmap fits the budget and has
    a shape the models take. pdfium itself gives empty or inverted boxes a real size.
    """
    page = pdf[index]
    width, height = page.get_size()  # points: the CropBox within the MediaBox
    if width <= 0 or height <= 0:  # pypdfium2 would raise ValueError("Crop exceeds page dimensions")
        raise pdfium.PdfiumError(f"its CropBox {_box(page.get_cropbox())} lies outside its MediaBox "
                                 f"{_box(page.get_mediabox())}: nothing of the page is visible")
    box = (max(width, height / MAX_ASPECT), max(height, width / MAX_ASPECT))
    image = page.render(scale=render_scale(*box, max_pixels)).to_pil()  # pdfium's BGR → an RGB copy
    return fit_page(image, max_pixels), page.get_textpage().get_text_range()


def _box(box: tuple[float, float, float, float]) -> str:
    return "[" + " ".join(f"{v:g}" for v in box) + "]"


def render_pdf_pages(path: Path, first: int, stop: int, spec: RenderSpec) -> list[corpus_db.PageRecord]:
    """Pages ``first`` … ``stop - 1`` (0-based) of the PDF at ``path``, rasterised with their text layers and
    compressed. Runs in a render process, which opens the file itself.

    Raises:
        InputError: the PDF cannot be opened, or a page cannot be rendered (names the 1-based page).
    """
    pdf = _open_pdf(path)
    try:
        records = []
        for index in range(first, stop):
            try:
                image, text = rasterise_page(pdf, index, max_pixels=spec.max_pixels)
            except pdfium.PdfiumError as exc:
                raise InputError(f"cannot render ({exc})", source=str(path), page=index + 1) from exc
            except ValueError as exc:  # what else pypdfium2 refuses to render (bitmap sizes it checks itself)
                raise InputError(f"cannot render ({exc})", source=str(path), page=index + 1) from exc
            records.append(_record(index + 1, image, text, spec))
        return records
    finally:
        pdf.close()


def read_image(path: Path, spec: RenderSpec) -> list[corpus_db.PageRecord]:
    """An image file as a one-page document (a list of one page, like ``render_pdf_pages``).

    Raises:
        InputError: not a PNG, JPEG or WebP file Pillow can decode, or over ``spec.max_image_pixels`` pixels
            (refused from its header, before decoding: a few kB can declare gigabytes of pixels).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # spec.max_image_pixels decides, below
            img = Image.open(path, formats=IMAGE_FORMATS)
        with img:
            if img.width * img.height > spec.max_image_pixels:
                raise InputError(
                    f"{img.width:,} × {img.height:,} pixels is over max_image_pixels ({spec.max_image_pixels:,}): "
                    "refused before decoding, as a possible decompression bomb", source=str(path))
            image = fit_page(as_viewed(img), spec.max_pixels)
    except UnidentifiedImageError as exc:
        raise InputError("not a readable image (not a PNG, JPEG or WebP file, or a damaged one)",
                         source=str(path)) from exc
    except Image.DecompressionBombError as exc:  # Pillow's own hard limit; render processes turn it off
        raise InputError(f"refused before decoding, as a possible decompression bomb ({exc})", source=str(path)) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # what Pillow's decoders raise on damaged data
        raise InputError(f"not a readable image ({exc})", source=str(path)) from exc
    return [_record(1, image, "", spec)]


def _record(number: int, image: Image.Image, text: str, spec: RenderSpec) -> corpus_db.PageRecord:
    data = encode_image(image, fmt=spec.fmt, quality=spec.quality, webp_method=spec.webp_method)
    return corpus_db.PageRecord(number, data, spec.fmt, image.width, image.height, text)


def _open_pdf(path: Path) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:  # pdf_outline opened these bytes: the file changed or vanished since
        raise InputError(f"not a readable PDF any more ({exc})", source=str(path)) from exc


def page_ranges(n_pages: int, processes: int) -> list[tuple[int, int]]:
    """(first, stop) 0-based ranges covering ``n_pages`` pages in order: about one per process, at most
    ``RANGE_PAGES`` pages each."""
    size = max(1, min(RANGE_PAGES, math.ceil(n_pages / processes)))
    return [(first, min(first + size, n_pages)) for first in range(0, n_pages, size)]


def render_pool(processes: int) -> ProcessPoolExecutor:
    """A pool of ``processes`` render processes for ``render_pdf_pages`` and ``read_image``."""
    # Not fork: this process holds PostgreSQL connections (and a progress-bar thread) that a forked child would
    # share. The forkserver is a fresh interpreter started once per process; with this module preloaded there,
    # each render process is a cheap fork of it.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(processes, mp_context=context, initializer=_start_render_process,
                               initargs=(os.getcwd(),))


def _start_render_process(folder: str) -> None:
    # The forkserver keeps the folder it was started in: without this, a relative path would name another file
    # in the render processes than the one the caller hashed.
    os.chdir(folder)
    # read_image applies max_image_pixels itself, from the header and with one message; Pillow's module-wide check
    # would otherwise refuse images over twice its default first, with its own message and limit.
    Image.MAX_IMAGE_PIXELS = None
