"""Which stage's model sits on the GPU: all of them (the default on a 24 GB L4), or, with ``low_memory``, only the
stage that is running, the others waiting in CPU memory.

The memory plan and the cost of a swap are in docs/gpu.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import torch

log = logging.getLogger(__name__)

CPU = torch.device("cpu")


class Placeable(Protocol):
    """A stage that can move its model: ``place(device)`` moves the weights and makes inputs follow."""

    device: torch.device

    def place(self, device: torch.device) -> None: ...


class Residency:
    """Keeps the registered stages' models on ``device`` (default), or only the active one (``low_memory``).

    With ``low_memory`` a stage's model moves to the GPU when the stage starts and stays until another stage
    needs the GPU, so consecutive uses cost no move. Moves are logged with their milliseconds.
    """

    def __init__(self, device: torch.device, *, low_memory: bool):
        self.device, self.low_memory = device, low_memory
        self.stages: dict[str, Placeable] = {}
        self.resident: set[str] = set()
        self.moves = 0

    @property
    def home(self) -> torch.device:
        """Where a stage's model is loaded: the CPU when it waits there between uses, else the compute device."""
        return CPU if self.low_memory else self.device

    def register(self, name: str, stage: Placeable) -> None:
        """Track a stage loaded on :attr:`home`."""
        self.stages[name] = stage
        if not self.low_memory:
            self.resident.add(name)

    @contextmanager
    def active(self, name: str) -> Iterator[None]:
        """Run a block with stage ``name``'s model on the compute device (other stages moved off first)."""
        if self.low_memory and name in self.stages and name not in self.resident:
            t0 = time.perf_counter()
            for other in sorted(self.resident):
                self.stages[other].place(CPU)
            self.resident.clear()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.stages[name].place(self.device)
            self.resident.add(name)
            self.moves += 1
            log.info("low_memory: %s model onto %s in %.0f ms", name, self.device, (time.perf_counter() - t0) * 1e3)
        yield
