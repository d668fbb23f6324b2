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

