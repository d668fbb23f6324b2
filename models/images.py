"""Page images: decoding stored bytes and fitting images into pixel budgets (aspect ratio kept)."""

from __future__ import annotations

import io
import math
import threading

import numpy as np
from PIL import Image, ImageOps

# libwebp effort for page images. On 1.6 MP document pages at quality 90 (docs/benchmarks.md, "Ingest"), method 2
# encodes in about half the time of Pillow's default 4 (68 vs 131 ms) for 1.4 % more bytes and 0.3 dB less PSNR:
# from method 3 on, libwebp adds rate-distortion optimised mode decisions, the slow part.
WEBP_METHOD = 2
# Widest page side ratio stored. Qwen2-VL's image processor refuses ratios over 200 (``smart_resize`` in
# transformers); padding to half that keeps later roundings of the size well clear of it.
MAX_ASPECT = 100


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale ``image`` so width × height ≤ ``max_pixels`` (pixels), keeping the aspect ratio; never upscales."""
    w, h = image.size
    if w * h <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (w * h))
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def fit_page(image: Image.Image, max_pixels: int, max_ratio: float = MAX_ASPECT) -> Image.Image:
    """``image`` as a stored page: downscaled (never upscaled) as by :func:`fit_pixels` and, when one side is more
    than ``max_ratio`` times the other, padded with white at the right or bottom to that ratio, the padding counted
    in ``max_pixels`` (width × height, pixels). A page of 14400 × 1 pt thus keeps its strip, readable or not, as an
    image the models accept."""
    w, h = image.size
    box_w, box_h = max(w, h / max_ratio), max(h, w / max_ratio)  # the padded page, in pixels
    scale = min(1.0, math.sqrt(max_pixels / (box_w * box_h)))
    canvas = (max(1, math.floor(box_w * scale)), max(1, math.floor(box_h * scale)))
    size = (min(canvas[0], max(1, round(w * scale))), min(canvas[1], max(1, round(h * scale))))
    if size != (w, h):
        image = image.resize(size, Image.Resampling.LANCZOS)
    return _pad(image, canvas)


def pad_to_aspect(image: Image.Image, max_ratio: float) -> Image.Image:
    """``image`` padded with white at the right or bottom, unscaled, so that its longer side is at most
    ``max_ratio`` times the shorter; pixel coordinates in it stay those of ``image``."""
    w, h = image.size
    return _pad(image, (max(w, math.ceil(h / max_ratio)), max(h, math.ceil(w / max_ratio))))


def _pad(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if size == image.size:
        return image
    padded = Image.new(image.mode, size, "white")
    padded.paste(image)
    return padded


def encode_image(image: Image.Image, *, fmt: str, quality: int, webp_method: int = WEBP_METHOD) -> bytes:
    """Compress an RGB image to ``fmt`` (WEBP, PNG or JPEG) bytes; ``quality`` 1–100 for the lossy formats,
    ``webp_method`` 0 (fast) – 6 (small) for WEBP (libwebp's effort, Pillow's ``method``)."""
    buf = io.BytesIO()
    if fmt == "PNG":
        image.save(buf, format="PNG", optimize=True)
    elif fmt == "WEBP":
        image.save(buf, format=fmt, quality=quality, method=webp_method)
    else:
        image.save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def as_viewed(image: Image.Image) -> Image.Image:
    """``image`` as RGB, the way an image viewer shows it: turned upright by its EXIF orientation tag
    (``ImageOps.exif_transpose``), transparency (an alpha band, or a ``tRNS`` entry of a palette, greyscale or RGB
    PNG) composited on white, 16- and 32-bit greyscale (modes ``I;16*``, ``I``) scaled from 0–65535 to 0–255, CMYK,
    1-bit and the other modes through Pillow's own conversion.

    Pillow's plain ``convert("RGB")`` gets several of these wrong: it clips 16-bit grey at 255 (a white page), turns
    transparent areas into whatever colour they hold (often black) and ignores the orientation tag (a photographed
    page stored sideways).
    """
    image = ImageOps.exif_transpose(image)  # a copy, turned or not: the caller may close the file behind it
    if image.mode.startswith("I"):  # 16-bit PNG grey (I;16, I;16B) or 32-bit I: PNG's range is 0–65535
        grey = np.asarray(image, dtype=np.float64)  # (height, width)
        return Image.fromarray(np.clip(np.rint(grey / 257), 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")  # premultiplied and palette or tRNS transparency become plain alpha
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def decode_image(data: bytes) -> Image.Image:
    """A stored page image as an RGB PIL image (see :func:`as_viewed`)."""
    with Image.open(io.BytesIO(data)) as img:
        return as_viewed(img)


class ImageCache:
    """Decoded images by key (a page id, or a (stage, page id) pair), bounded by ``max_bytes`` of RGB pixels (width
    × height × 3 bytes each), least recently used evicted first (cachetools' ``LRUCache``). Questions of a job tend
    to hit the same pages, so a worker keeps them decoded, and fitted to each stage's budget, between chunks."""

    def __init__(self, max_bytes: int):
        import cachetools

        self.max_bytes, self.hits, self.misses = max_bytes, 0, 0
        self._cache = cachetools.LRUCache(maxsize=max_bytes, getsizeof=lambda img: img.width * img.height * 3)
        self._lock = threading.Lock()

    def get_many(self, page_ids, load) -> dict:
        """The images of the keys ``page_ids``; the ones not cached come from ``load(missing keys) -> {key:
        image}``."""
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
