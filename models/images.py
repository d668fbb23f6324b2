"""Page images: decoding stored bytes and fitting images into pixel budgets (aspect ratio kept)."""

from __future__ import annotations

import io
import math

from PIL import Image

# libwebp effort for page images. On 1.6 MP document pages at quality 90 (docs/benchmarks.md, "Ingest"), method 2
# encodes in about half the time of Pillow's default 4 (68 vs 131 ms) for 1.4 % more bytes and 0.3 dB less PSNR:
# from method 3 on, libwebp adds rate-distortion optimised mode decisions, the slow part.
WEBP_METHOD = 2


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale ``image`` so width × height ≤ ``max_pixels`` (pixels), keeping the aspect ratio; never upscales."""
    w, h = image.size
    if w * h <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (w * h))
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


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


def decode_image(data: bytes) -> Image.Image:
    """A stored page image as an RGB PIL image."""
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")
