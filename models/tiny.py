"""Tiny, randomly initialised stand-ins for pageqa's model set, for CPU tests and demos without the hub.

One call to :func:`make_tiny` writes, under one root directory, about 4 MB in well under a second on a 2-core CPU
(plus the one-off import of torch, transformers, colpali-engine and peft, 5-15 s):

* ``qwen2_vl/``: a ``Qwen2VLForConditionalGeneration`` with its ``Qwen2VLProcessor`` and generation config; it stands
  in for ``Qwen/Qwen2-VL-7B-Instruct`` (generator) and ``Qwen/Qwen2-VL-2B-Instruct`` (reranker base).
* ``colqwen2/``: a colpali-engine ``ColQwen2`` (128-dim multi-vector embeddings) with its ``ColQwen2Processor``; it
  stands in for ``vidore/colqwen2-v1.0``.
* ``monoqwen2_vl/``: a peft LoRA adapter on ``qwen2_vl/``; it stands in for ``lightonai/MonoQwen2-VL-v0.1``.
* ``colqwen2_lora/``: a peft LoRA adapter on ``colqwen2/`` with the processor beside it, as
  ``vidore/colqwen2-v1.0`` is an adapter on ``vidore/colqwen2-base``.
* ``monoqwen2_vl_legacy/``, ``colqwen2_lora_legacy/``: the same two adapters under the transformers 4.x key names
  the real ones were saved with (:mod:`models.tiny_adapters`).

All of them share one byte-level BPE tokenizer (:mod:`models.tiny_tokenizer`) trained on a built-in English text,
carrying Qwen2-VL's special tokens (in Qwen2-VL's order, after the ordinary vocabulary) and its chat template. The
weights are random: outputs are meaningless but shapes, token ids, padding and loading code paths are those of the
real models.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.tiny_adapters import COLQWEN2_LEGACY, COLQWEN2_TARGETS, QWEN2_VL_LEGACY, save_legacy_copy
from models.tiny_tokenizer import CHAT_TEMPLATE, build_tokenizer

log = logging.getLogger(__name__)

#: Bumped whenever the layout or the architecture of the tiny set changes; an older set is rebuilt.
FORMAT_VERSION = 2  # 2: the ColQwen2 LoRA and the two legacy-layout adapters
#: Written last into a complete set; holds the seed and the format version.
MARKER = "tiny.json"
SUBDIRS = ("qwen2_vl", "colqwen2", "monoqwen2_vl", "colqwen2_lora", "monoqwen2_vl_legacy", "colqwen2_lora_legacy")

#: Default pixel budget (pixels, width x height) of the tiny image processors: 4 to 128 visual tokens per image.
MIN_PIXELS = 56 * 56
MAX_PIXELS = 128 * 28 * 28
LORA_B_STD = 0.05  # LoRA B init; peft's default (zeros) would make the adapter a no-op


@dataclass(frozen=True)
class TinyModelSet:
    """Directories of a built tiny model set (see the module docstring for what each stands in for).

    Attributes:
        root: The set's directory, holding the marker file ``tiny.json``.
        qwen2_vl: Qwen2-VL model, processor and generation config (``from_pretrained``-loadable).
        colqwen2: ColQwen2 model and ``ColQwen2Processor``.
        monoqwen2_vl: peft LoRA adapter whose ``base_model_name_or_path`` is ``str(qwen2_vl)``.
        colqwen2_lora: peft LoRA adapter on ``colqwen2`` (``base_model_name_or_path``), with a ``ColQwen2Processor``.
        monoqwen2_vl_legacy: ``monoqwen2_vl``'s tensors under transformers 4.x names
            (``base_model.model.model.layers``).
        colqwen2_lora_legacy: ``colqwen2_lora``'s tensors under transformers 4.x names (same prefix).
    """

    root: Path
    qwen2_vl: Path
    colqwen2: Path
    monoqwen2_vl: Path
    colqwen2_lora: Path
    monoqwen2_vl_legacy: Path
    colqwen2_lora_legacy: Path

    @classmethod
    def at(cls, root: Path) -> TinyModelSet:
        """The paths of a set rooted at ``root``; nothing is checked."""
        root = Path(root).expanduser().absolute()
        return cls(root, *(root / name for name in SUBDIRS))


def tiny_model_set(root: Path) -> TinyModelSet:
    """The tiny set built under ``root``, without building anything.

    Raises:
        FileNotFoundError: ``root``, its marker file or one of its model directories is missing (the set was never
            built, or its build did not finish); the message names the missing path.
    """
    tiny = TinyModelSet.at(root)
    for path in (tiny.root / MARKER, *(tiny.root / name for name in SUBDIRS)):
        if not path.exists():
            raise FileNotFoundError(f"{path}: tiny model set not built; run `pageqa models make-tiny`")
    return tiny


def make_tiny(root: Path, *, seed: int = 0, overwrite: bool = False) -> TinyModelSet:
    """Build the tiny model set under ``root`` (created, parents included) and return its paths.

    The weights are drawn after ``torch.manual_seed(seed)``, so a seed always gives the same set. If ``root`` already
    holds a complete set of this format version and seed, it is returned as is unless ``overwrite``; any other
    content of ``root`` is replaced. The set is built in a temporary sibling directory, marker written last, then
    renamed into place, so an interrupted build never leaves a set that looks complete.

    Raises:
        OSError: ``root`` cannot be written.
    """
    tiny = TinyModelSet.at(root)
    marker = _read_marker(tiny.root)
    if not overwrite and marker.get("format_version") == FORMAT_VERSION and marker.get("seed") == seed:
        log.debug("tiny model set already built at %s", tiny.root)
        return tiny_model_set(tiny.root)
    tiny.root.parent.mkdir(parents=True, exist_ok=True)
    tmp = tiny.root.with_name(f".{tiny.root.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        log.info("building tiny model set (seed %d) at %s", seed, tiny.root)
        with _quiet():
            _build(tmp, final=tiny, seed=seed)
        _move_into_place(tmp, tiny.root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tiny_model_set(tiny.root)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence, for the build only, transformers' progress bars and bitsandbytes' import-time warning about the
    optional ``kernels`` package (imported through peft)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    bnb_log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = bnb_log.level
    hf_logging.disable_progress_bar()
    bnb_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        bnb_log.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


def _read_marker(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _move_into_place(tmp: Path, root: Path) -> None:
    """Rename ``tmp`` to ``root``; an existing ``root`` is first renamed aside, then deleted."""
    old = None
    if root.exists():
        old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(root, old)
    os.replace(tmp, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _build(out: Path, *, final: TinyModelSet, seed: int) -> None:
    """Write the checkpoints and the marker into ``out``; the adapters' base paths point into ``final``."""
    import torch
    import transformers
    from colpali_engine.models import ColQwen2, ColQwen2Processor
    from transformers import (
        GenerationConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = build_tokenizer()
    config = _tiny_config(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")}

    def parts() -> dict[str, Any]:
        budget = dict(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        return dict(
            image_processor=Qwen2VLImageProcessor(**budget), video_processor=Qwen2VLVideoProcessor(**budget),
            tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
        )  # fmt: skip

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out / "qwen2_vl")
    Qwen2VLProcessor(**parts()).save_pretrained(out / "qwen2_vl")

    torch.manual_seed(seed + 1)
    colqwen2 = ColQwen2(config).eval()
    with torch.no_grad():  # a trained projection has a bias; a zero one gives 0/0 on all-zero hidden states
        colqwen2.custom_text_proj.bias.normal_(0.0, config.text_config.initializer_range)
    colqwen2.save_pretrained(out / "colqwen2")
    ColQwen2Processor(**parts()).save_pretrained(out / "colqwen2")

    torch.manual_seed(seed + 2)
    _save_lora(model, out / "monoqwen2_vl", base=final.qwen2_vl)

    # Seeds of the earlier parts unchanged, so their files stay byte-identical to format version 1's.
    torch.manual_seed(seed + 3)
    _save_lora(colqwen2, out / "colqwen2_lora", base=final.colqwen2, targets=COLQWEN2_TARGETS,
               task_type="FEATURE_EXTRACTION")
    ColQwen2Processor(**parts()).save_pretrained(out / "colqwen2_lora")
    save_legacy_copy(out / "monoqwen2_vl", out / "monoqwen2_vl_legacy", QWEN2_VL_LEGACY)
    save_legacy_copy(out / "colqwen2_lora", out / "colqwen2_lora_legacy", COLQWEN2_LEGACY)

    info = {"format_version": FORMAT_VERSION, "seed": seed, "transformers": transformers.__version__}
    info |= {"vocab_size": len(tokenizer), "stands_in_for": _STANDS_IN_FOR}
    (out / MARKER).write_text(json.dumps(info, indent=2) + "\n")


_STANDS_IN_FOR = {
    "qwen2_vl": ["Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-2B-Instruct"],
    "colqwen2": ["vidore/colqwen2-v1.0"],
    "monoqwen2_vl": ["lightonai/MonoQwen2-VL-v0.1"],
    "colqwen2_lora": ["vidore/colqwen2-v1.0"],
}


def _save_lora(
    model: Any, out: Path, *, base: Path, targets: Any = ("q_proj", "k_proj", "v_proj", "o_proj"),
    task_type: str = "CAUSAL_LM",
) -> None:
    """Wrap ``model`` (modified in place) in a LoRA adapter on ``targets`` (module names or one regex) with random
    non-zero B and save the adapter only."""
    import torch
    from peft import LoraConfig, get_peft_model

    targets = targets if isinstance(targets, str) else list(targets)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, task_type=task_type)
    with warnings.catch_warnings():  # peft 0.20 calls transformers 5's deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, LORA_B_STD)
    peft_model.peft_config["default"].base_model_name_or_path = str(base)
    peft_model.save_pretrained(out, save_embedding_layers=False)


def _tiny_config(tokenizer: Any) -> Any:
    """A Qwen2VLConfig of about 0.5 M parameters, with token ids taken from ``tokenizer``."""
    from transformers import Qwen2VLConfig

    tid = tokenizer.convert_tokens_to_ids
    # head_dim 16, so mrope_section sums to 8. No pad_token_id, as in the real config: it would zero the pad row of
    # the embedding, hence zero hidden states at padding, hence NaN ColQwen2 rows (0/0 in its L2 normalisation).
    text = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=tid("<|endoftext|>"), eos_token_id=tid("<|im_end|>"), use_sliding_window=False, dtype="float32",
    )  # fmt: skip
    # hidden_size is the patch merger's output, = text hidden size. embed_dim 64 keeps every Linear at in_features
    # % 64 == 0 and out_features % 32 == 0, which bitsandbytes' CPU 4-bit kernel needs (32 breaks NF4 on the CPU).
    vision = dict(
        depth=2, embed_dim=64, hidden_size=64, num_heads=2, mlp_ratio=4, in_channels=3, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2,
    )  # fmt: skip
    return Qwen2VLConfig(
        text_config=text, vision_config=vision, image_token_id=tid("<|image_pad|>"),
        video_token_id=tid("<|video_pad|>"), vision_start_token_id=tid("<|vision_start|>"),
        vision_end_token_id=tid("<|vision_end|>"), tie_word_embeddings=False, dtype="float32",
    )  # fmt: skip
