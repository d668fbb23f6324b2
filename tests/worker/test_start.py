"""Worker start-up: GPU pinning happens through CUDA_VISIBLE_DEVICES, before torch initialises CUDA."""

from __future__ import annotations

import os


def test_worker_gpu_pinning_sets_cuda_visible_devices(monkeypatch):
    from worker.start import pin_gpu

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pin_gpu(None)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    pin_gpu(3)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
