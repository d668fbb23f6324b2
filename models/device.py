"""Device and dtype selection for the model stages."""

from __future__ import annotations

import logging

import torch

from pageqa.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` → ``cuda`` (the first visible GPU; ``pageqa worker --gpu N`` pins which one) or ``cpu``.

    Raises:
        ConfigError: CUDA was asked for but is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"PAGEQA_DEVICE={name} but CUDA is not available on this machine (use --device cpu)")
    return device


def compute_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA (L4s support it natively), float32 on the CPU, where bf16 matmuls are slow."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def amx_bf16() -> bool:
    """Whether this CPU has AMX tiles (Intel Xeon since Sapphire Rapids), whose bfloat16 matmuls oneDNN uses."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch's own check; private, so looked up softly
    return bool(probe and probe())


def llm_dtype(device: torch.device) -> torch.dtype:
    """The offline LLM's dtype: bfloat16 on CUDA and on CPUs with AMX (:func:`amx_bf16`), float32 elsewhere.

    Measured for Qwen2.5-Coder-0.5B on 2 cores of a Xeon with AMX (``scripts/bench/offline_llm.py``, table in
    docs/evaluation.md): a 531-token prompt in 0.48 s in bfloat16 against 1.63 s in float32, each generated token
    about 95 ms in both, so a 10-token answer takes 1.4 s against 2.6 s.
    Without AMX, CPU bfloat16 matmuls are slower than float32.
    """
    return torch.bfloat16 if device.type == "cuda" or amx_bf16() else torch.float32

