"""Tiny LoRA adapters in the key layout of transformers 4.x, for the tiny set (:mod:`models.tiny`).

The real adapters were saved under transformers 4.x, when Qwen2-VL's language model sat at ``model.*``: for
lightonai/MonoQwen2-VL-v0.1 (on ``Qwen2VLForConditionalGeneration``) ``base_model.model.model.layers.N...``, for
vidore/colqwen2-v1.0 (colpali-engine's ``ColQwen2``, then a ``Qwen2VLForConditionalGeneration`` subclass) the same,
plus ``base_model.model.custom_text_proj``. transformers 5 writes ``model.language_model.layers.N`` and, ColQwen2
now subclassing ``Qwen2VLModel``, ``language_model.layers.N`` (load reports quoted in colpali-engine issue #424).
A tiny adapter saved today carries the new names only, so it cannot catch a loader that misses the old ones
(:mod:`models.adapters`); a legacy copy holds the same tensors under the old names.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: (transformers 5 prefix, transformers 4 prefix) of saved adapter keys, per base class.
QWEN2_VL_LEGACY = (("base_model.model.model.language_model.", "base_model.model.model."),
                   ("base_model.model.model.visual.", "base_model.model.visual."))
COLQWEN2_LEGACY = (("base_model.model.language_model.", "base_model.model.model."),)

#: LoRA targets of ColQwen2's training (the LoraConfig of colpali-engine's ColQwen2 training scripts): the
#: language model's attention and MLP projections and the 128-dim output projection, not the vision tower.
COLQWEN2_TARGETS = (
    r"(.*(model)(?!.*visual).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(custom_text_proj).*$)"
)


def save_legacy_copy(src: Path, dst: Path, renames: tuple[tuple[str, str], ...]) -> int:
    """Copy the adapter directory ``src`` to ``dst`` with its weight keys renamed by ``renames`` (first matching
    prefix wins); tensors, adapter config and any processor files are unchanged.

    Returns:
        How many keys were renamed.

    Raises:
        ValueError: no key was renamed, so the copy would not be in the legacy layout.
        OSError: ``src`` cannot be read or ``dst`` written.
    """
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(src / "adapter_model.safetensors")
    out, count = {}, 0
    for key, tensor in weights.items():
        new = next((legacy + key[len(cur):] for cur, legacy in renames if key.startswith(cur)), key)
        count += new != key
        out[new] = tensor
    if not count:
        raise ValueError(f"{src}: no adapter key starts with any of {[cur for cur, _ in renames]}")
    save_file(out, dst / "adapter_model.safetensors", metadata={"format": "pt"})
    return count
