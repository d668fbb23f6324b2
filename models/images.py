"""Page images: decoding stored bytes and fitting images into pixel budgets (aspect ratio kept)."""

from __future__ import annotations

import io
import math

from PIL import Image


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale ``image`` so width × height ≤ ``max_pixels`` (pixels), keeping the aspect ratio; never upscales."""
    w, h = image.size
    if w * h <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (w * h))
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def encode_image(image: Image.Image, *, fmt: str, quality: int) -> bytes:
    """Compress an RGB image to ``fmt`` (WEBP, PNG or JPEG) bytes; ``quality`` 1–100 for the lossy formats."""
    buf = io.BytesIO()
    if fmt == "PNG":
        image.save(buf, format="PNG", optimize=True)
    else:
        image.save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def decode_image(data: bytes) -> Image.Image:
    """A stored page image as an RGB PIL image."""
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")
