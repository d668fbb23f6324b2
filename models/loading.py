"""One place where checkpoints are loaded, so a missing weight or an unreachable hub reads as one clear error."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pageqa.errors import ModelLoadError
from pageqa.settings import REAL_MODELS, Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


def from_pretrained(cls: type[T], model_id: str, **kwargs: Any) -> T:
    """``cls.from_pretrained(model_id, **kwargs)``, the same call for hub ids and local tiny checkpoints.

    Raises:
        ModelLoadError: the checkpoint cannot be found or read (for example the hub is unreachable and the
            weights are not cached); the message names the model id.
    """
    log.info("loading %s from %s", cls.__name__, model_id)
    try:
        return cls.from_pretrained(model_id, **kwargs)  # type: ignore[attr-defined]
    except (OSError, ValueError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"cannot load {cls.__name__} from {model_id!r}: {first} "
            "(real weights need the Hugging Face hub or a local copy; PAGEQA_MODELS=tiny uses random tiny ones)"
        ) from exc


def set_pixel_budget(processor, *, max_pixels: int, min_pixels: int | None = None) -> None:
    """Bound the images a Qwen2-VL processor produces to ``max_pixels`` pixels (and at least ``min_pixels``).

    Qwen2-VL resizes each image, keeping its aspect ratio, to a multiple of 28 × 28 pixels within
    ``size.shortest_edge``..``size.longest_edge`` total pixels (model card of Qwen/Qwen2-VL-7B-Instruct).
    """
    from transformers.image_utils import SizeDict

    ip = processor.image_processor
    low = min(min_pixels if min_pixels is not None else ip.size["shortest_edge"], max_pixels)
    ip.size = SizeDict(shortest_edge=low, longest_edge=max_pixels)


def fit_to_processor(processor, image):
    """``image`` resized once, with Pillow's bicubic filter, to the size a Qwen2-VL processor would resize it to.

    That size is a multiple of ``patch_size × merge_size`` (28 px) per side, within the processor's pixel budget
    (``smart_resize`` of transformers' Qwen2-VL image processor). The processor then finds nothing to resize. A page
    shared by many (question, page) pairs of a chunk is resized once, not once per pair. Resizing full pages was
    most of the reranker's CPU time: 7.0 of 9.9 s for two chunks of 16 questions, profiled.
    """
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    ip = processor.image_processor
    factor = ip.patch_size * ip.merge_size
    height, width = smart_resize(image.height, image.width, factor=factor, min_pixels=ip.size["shortest_edge"],
                                 max_pixels=ip.size["longest_edge"])
    if (width, height) == image.size:
        return image
    return image.resize((width, height), Image.Resampling.BICUBIC)


def plain_text(text: str) -> str:
    """User text made safe to place in a Qwen2-VL prompt: ``<|`` gets a zero-width space after the ``<``, so a
    question cannot smuggle in special tokens such as ``<|image_pad|>`` or ``<|im_end|>``. Left as they were, they
    are parsed as the real tokens: an extra ``<|image_pad|>`` made the processor refuse the whole micro-batch
    ("number of <|image_pad|> tokens ... should be the same as the number of images"), failing every question of
    the chunk. The stored question is not changed; only the prompt text is."""
    return text.replace("<|", "<\u200b|")


def model_ids(settings: Settings) -> dict[str, str | None]:
    """Model ids or local directories per stage (``retriever``, ``reranker_base``, ``reranker``, ``generator``,
    ``text``) after applying ``settings.models`` and the explicit overrides; None for a stage the model set does not
    have (the offline set has no visual retriever, reranker or generator).

    Raises:
        FileNotFoundError: ``models`` is ``tiny`` and the tiny set is not built (``pageqa models make-tiny``).
    """
    base: dict[str, str | None]
    if settings.models == "tiny":
        from models.tiny import tiny_model_set

        tiny = tiny_model_set(settings.home_dir / "models" / "tiny")
        base = {"retriever": str(tiny.colqwen2), "reranker_base": str(tiny.qwen2_vl),
                "reranker": str(tiny.monoqwen2_vl), "generator": str(tiny.qwen2_vl)}
    elif settings.models == "offline":
        base = dict.fromkeys(REAL_MODELS)
    else:
        base = dict(REAL_MODELS)
    overrides = {"retriever": settings.retriever_model, "reranker_base": settings.reranker_base_model,
                 "reranker": settings.reranker_model, "generator": settings.generator_model}
    ids = {k: (overrides[k] or v) if v is not None else None for k, v in base.items()}
    ids["text"] = settings.text_model
    return ids

