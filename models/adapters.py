"""PEFT LoRA adapters loaded so that every weight in the adapter file lands on a module of the model, or loading fails.

Why: the published adapters (vidore/colqwen2-v1.0, lightonai/MonoQwen2-VL-v0.1) were saved under transformers 4.x,
whose Qwen2-VL kept the language model at ``model.*`` (``base_model.model.model.layers.0.self_attn.q_proj.lora_A
.weight``). transformers 5 nests it at ``model.language_model.*`` (``Qwen2VLForConditionalGeneration``) or
``language_model.*`` (``Qwen2VLModel``, which colpali-engine's ``ColQwen2`` subclasses). A key that matches no module
is only reported by transformers' load report; the LoRA stays at its initial, no-op value and the model silently
runs as its base: colpali-engine issue #424 (illuin-tech/colpali) saw reversed retrieval scores from exactly this.
Measured with transformers 5.23 and colpali-engine 0.3.18 on the tiny set: ``ColQwen2.load_adapter`` on a legacy
adapter leaves all 28 language-model LoRA pairs unapplied; ``Qwen2VLForConditionalGeneration`` happens to remap them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pageqa.errors import ModelLoadError

log = logging.getLogger(__name__)

#: Prefix peft gives every key of a saved adapter (``PeftModel.base_model.model`` is the wrapped model).
PEFT_PREFIX = "base_model.model."
#: transformers 4.x module paths of Qwen2-VL and where transformers 5 put them, tried in this order: the first whose
#: result is a module of the model wins (``Qwen2VLForConditionalGeneration``, then ``Qwen2VLModel``/``ColQwen2``).
LEGACY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.", "model.language_model."),
    ("model.", "language_model."),
    ("visual.", "model.visual."),
)
#: Where a saved key's module path ends (peft's LoRA parameter names; ``TrainableTokensWrapper``'s).
MARKERS = (".lora_", ".token_adapter.")
SHOWN_KEYS = 5  # unmatched keys named in an error message


def adapter_base(model_id: str) -> str | None:
    """The base checkpoint named by the adapter at ``model_id`` (its ``adapter_config.json``), or None when
    ``model_id`` is not an adapter: a full checkpoint, a hub id that is neither reachable nor cached, or no model at
    all (then loading ``model_id`` itself raises the error that names it).

    Raises:
        ModelLoadError: ``model_id`` is an adapter whose config names no base model.
    """
    from transformers.utils import find_adapter_config_file

    try:
        path = find_adapter_config_file(model_id)
    except (OSError, ValueError):  # e.g. a missing local path, which the hub client rejects as a repo id
        return None
    if path is None:
        return None
    base = json.loads(Path(path).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"adapter {model_id!r} does not name its base model (base_model_name_or_path)")
    return base


def remap_legacy_keys(keys: Iterable[str], modules: set[str]) -> tuple[dict[str, str], list[str]]:
    """Rename saved adapter keys whose module is not in ``modules`` by :data:`LEGACY_PREFIXES`.

    A key's module is the part between :data:`PEFT_PREFIX` and the first of :data:`MARKERS` (``lora_A``, ``lora_B``,
    ``lora_embedding_*``, ``lora_magnitude_vector``, trainable tokens), or, for a key without one (peft saves a
    ``modules_to_save`` module under its own parameter names), all but its last component.

    Returns:
        ``(renamed, unmatched)``: every key mapped to its (possibly unchanged) new name, and, in input order, the
        keys whose module is in ``modules`` under no name.
    """
    renamed: dict[str, str] = {}
    unmatched: list[str] = []
    for key in keys:
        rest = key.removeprefix(PEFT_PREFIX)
        marker = next((m for m in MARKERS if m in rest), ".")
        module, _, tail = rest.partition(marker) if marker != "." else rest.rpartition(".")
        candidates = [module] + [new + module[len(old):] for old, new in LEGACY_PREFIXES if module.startswith(old)]
        found = next((c for c in candidates if c in modules), None)
        if found is None or not key.startswith(PEFT_PREFIX):
            unmatched.append(key)
            found = module
        renamed[key] = PEFT_PREFIX + found + marker + tail
    return renamed, unmatched


def load_lora(model: Any, adapter_id: str) -> None:
    """Load the LoRA adapter ``adapter_id`` into ``model`` (transformers' PEFT integration, adapter ``default``),
    legacy transformers-4 key names renamed to the model's own module names first.

    Raises:
        ModelLoadError: the adapter cannot be read, a key of its file matches no module of ``model``, or, after
            loading, transformers reports an adapter weight missing (a LoRA layer left at its initial value) or
            unexpected; the message names ``adapter_id`` and the first :data:`SHOWN_KEYS` keys.
    """
    from peft import PeftConfig
    from peft.utils import load_peft_weights

    try:
        config = PeftConfig.from_pretrained(adapter_id)
        weights = load_peft_weights(adapter_id, device="cpu")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read adapter {adapter_id!r}: {exc}") from exc
    renamed, unmatched = remap_legacy_keys(weights, {name for name, _ in model.named_modules()})
    _fail_if(unmatched, adapter_id, "keys that match no module of the model")
    legacy = sum(old != new for old, new in renamed.items())
    if legacy:
        log.info("adapter %s: %d of %d keys renamed from transformers 4.x names", adapter_id, legacy, len(renamed))
    try:
        info = model.load_adapter(peft_config=config, adapter_state_dict={renamed[k]: v for k, v in weights.items()})
    except (ValueError, KeyError, RuntimeError) as exc:  # peft: "Target modules ... not found", shape mismatches
        raise ModelLoadError(f"cannot apply adapter {adapter_id!r}: {exc}") from exc
    _fail_if(sorted(info.unexpected_keys), adapter_id, "keys that were not loaded")
    _fail_if(sorted(info.missing_keys), adapter_id, "LoRA weights that the file does not hold")
    _fail_if(sorted(info.mismatched_keys), adapter_id, "weights whose shape does not match the model")


def _fail_if(keys: list[Any], adapter_id: str, what: str) -> None:
    if keys:
        shown = ", ".join(str(k) for k in keys[:SHOWN_KEYS]) + (", ..." if len(keys) > SHOWN_KEYS else "")
        raise ModelLoadError(f"adapter {adapter_id!r}: {len(keys)} {what}: {shown}")
