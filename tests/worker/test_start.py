"""Worker start-up: GPU pinning happens through CUDA_VISIBLE_DEVICES, before torch initialises CUDA; the beat
service's control worker schedules and runs the reconciler on the control queue alone, without loading models."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import wait_for

from worker.process import stop_worker


def test_worker_gpu_pinning_sets_cuda_visible_devices(monkeypatch):
    from worker.start import pin_gpu

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pin_gpu(None)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    pin_gpu(3)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_control_worker_consumes_only_the_control_queue_with_beat(settings):
    from worker.app import control_queue
    from worker.start import control_argv

    argv = control_argv(settings, loglevel="DEBUG")
    queues = [a.split("=", 1)[1] for a in argv if a.startswith("--queues=")]
    assert queues == [control_queue(settings)]
    assert settings.worker_queue not in queues[0].split(",")
    assert "--beat" in argv and f"--schedule={settings.home_dir / 'celerybeat-schedule'}" in argv
    assert {"--pool=solo", "--concurrency=1", "--loglevel=DEBUG"} <= set(argv)


def test_control_worker_runs_the_reconciler_on_schedule_without_models(settings, services, tmp_path):
    """A real control worker process against the session's PostgreSQL and Redis: beat sends the reconciler every
    second and the same process runs it. PAGEQA_MODELS=real with the hub offline could not load, so a clean start
    that logs no model loading shows the models were skipped, not merely fast to load."""
    from worker.app import control_queue

    log_path = tmp_path / "control.log"
    env = {**os.environ, "PAGEQA_RECONCILE_EVERY_SECONDS": "1", "PAGEQA_MODELS": "real"}
    code = ("import logging; logging.basicConfig(level=logging.INFO); "
            "from worker.start import run_control; run_control()")
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    ran = re.compile(r"Task pageqa\.reconcile\[\S+\] succeeded")
    try:
        wait_for(lambda: proc.poll() is not None or len(ran.findall(log_path.read_text(errors="replace"))) >= 2,
                 timeout_s=120, what=f"two scheduled reconciler runs in {log_path}")
        assert proc.poll() is None, log_path.read_text()[-3000:]
    finally:
        assert stop_worker(proc) == 0, log_path.read_text()[-3000:]
    out = log_path.read_text()
    assert "models resident" not in out and "Signal handler" not in out, out[-3000:]
    assert "control worker: no models loaded" in out
    assert "beat: Starting" in out
    assert f".> {control_queue(settings)} " in out  # the banner's queue list: the control queue ...
    assert f".> {settings.worker_queue} " not in out  # ... and not the answering queue
