"""The visual retriever: ColQwen2 page and query multi-vectors for late interaction (scored by
:func:`models.late_interaction.maxsim`).

Method: ColPali (Faysse et al., "ColPali: Efficient Document Retrieval with Vision Language Models", 2024), model
card of vidore/colqwen2-v1.0; MaxSim as in ColBERT (Khattab & Zaharia, 2020): for a query of token vectors q_i and
a page of patch vectors d_j, score = Σ_i max_j ⟨q_i, d_j⟩.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from models.adapters import adapter_base, load_lora
from models.batching import BatchLog
from models.loading import from_pretrained, model_ids, plain_text, set_pixel_budget
from pageqa.settings import Settings

log = logging.getLogger(__name__)

COLPALI_VERSION = importlib.metadata.version("colpali-engine")


class ColQwen2Retriever:
    """ColQwen2 model and processor, resident on one device.

    Args:
        model_id: hub id or local directory of a ColQwen2 checkpoint (default vidore/colqwen2-v1.0), either a full
            model or a LoRA adapter with the processor beside it, as vidore/colqwen2-v1.0 is (its adapter_config.json
            names the base, vidore/colqwen2-base).
        device: where the model runs; ``dtype`` is its parameter dtype (bf16 on CUDA, fp32 on CPU).
        max_pixels: page image budget in pixels (≈ 28 × 28 per visual token).

    Raises:
        ModelLoadError: a checkpoint cannot be loaded, or a weight of the adapter matches no module of the base
            (:func:`models.adapters.load_lora`).
    """

    def __init__(self, model_id: str, *, device: torch.device, dtype: torch.dtype, max_pixels: int):
        from colpali_engine.models import ColQwen2, ColQwen2Processor

        self.model_id, self.device, self.max_pixels = model_id, device, max_pixels
        # An adapter is loaded onto its base here rather than by from_pretrained's implicit PEFT path, so that every
        # LoRA weight is checked to have landed (colpali-engine issue #424: unapplied LoRA, reversed scores).
        base_id = adapter_base(model_id)
        self.model = from_pretrained(ColQwen2, base_id or model_id, dtype=dtype, device_map=str(device))
        if base_id is not None:
            load_lora(self.model, model_id)
        self.model.eval()
        self.processor = from_pretrained(ColQwen2Processor, model_id)
        set_pixel_budget(self.processor, max_pixels=max_pixels)

    def place(self, device: torch.device) -> None:
        """Move the model to ``device``; later inputs follow it (see :mod:`models.residency`)."""
        self.model.to(device)
        self.device = device

    @torch.inference_mode()
    def embed_pages(self, images: Sequence[Image.Image], *, batch_size: int) -> list[np.ndarray]:
        """Page multi-vectors, one ``(n_tokens_i, 128) float16`` array per image, padding rows stripped.

        Batches are left-padded by the processor; the attention mask marks the real rows, and only those are
        kept, since zero padding rows would otherwise enter every later MaxSim.
        """
        out: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            batch = self.processor.process_images(list(images[start : start + batch_size])).to(self.device)
            emb = self.model(**batch)  # (batch, seq, 128), zeros on padding rows
            out.extend(_strip_padding(emb, batch["attention_mask"]))
        return out

    @torch.inference_mode()
    def embed_queries(
        self, queries: Sequence[str], *, batch_size: int, batch_log: BatchLog | None = None
    ) -> list[torch.Tensor]:
        """Query multi-vectors, one ``(n_tokens_i, 128) float32`` CPU tensor per query, padding stripped; a chunk
        of up to ``batch_size`` queries is one forward pass."""
        out: list[torch.Tensor] = []
        for start in range(0, len(queries), batch_size):
            texts = list(queries[start : start + batch_size])
            if batch_log is not None:
                batch_log.before_batch()
                batch_log.sizes.setdefault("query", []).append(len(texts))
            batch = self.processor.process_queries([plain_text(t) for t in texts]).to(self.device)
            emb = self.model(**batch)  # (batch, seq, 128)
            out.extend(torch.from_numpy(v.astype(np.float32)) for v in _strip_padding(emb, batch["attention_mask"]))
        return out


def load_retriever(settings: Settings, *, device: torch.device, dtype: torch.dtype) -> ColQwen2Retriever | None:
    """The model set's ColQwen2 retriever (``model_ids(settings)["retriever"]``, ``retriever_max_pixels``) on
    ``device``; None for a set without a visual lane (offline). Raises as :class:`ColQwen2Retriever` does."""
    model_id = model_ids(settings)["retriever"]
    if model_id is None:
        return None
    return ColQwen2Retriever(model_id, device=device, dtype=dtype, max_pixels=settings.retriever_max_pixels)


def _strip_padding(emb: torch.Tensor, mask: torch.Tensor) -> list[np.ndarray]:
    """Split ``(batch, seq, dim)`` embeddings into per-row ``(n_real, dim) float16`` arrays using ``mask``."""
    keep = mask.bool().cpu()
    emb = emb.float().cpu()
    return [emb[i][keep[i]].numpy().astype(np.float16) for i in range(emb.shape[0])]
