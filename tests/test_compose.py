"""docker-compose.yml has the production shape: healthy Postgres with pgvector and durable Redis before
migrations, migrations before workers, and each worker pinned to exactly one GPU."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text())


def test_services_and_health_checks():
    services = COMPOSE["services"]
    assert {"postgres", "redis", "migrate", "worker-gpu0"} <= set(services)
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    redis_cmd = services["redis"]["command"]
    assert "--appendonly" in redis_cmd and "noeviction" in redis_cmd
    assert services["migrate"]["command"] == ["migrate"]


def test_each_worker_reserves_one_gpu_after_migrations():
    workers = {k: v for k, v in COMPOSE["services"].items() if k.startswith("worker-")}
    assert workers
    for name, svc in workers.items():
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1 and devices[0]["driver"] == "nvidia" and len(devices[0]["device_ids"]) == 1, name
        assert svc["command"][:3] == ["worker", "--gpu", "0"], name
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "PAGEQA_DATABASE_URL" in svc["environment"] and "PAGEQA_BROKER_URL" in svc["environment"]
        grace = svc.get("stop_grace_period", "10s")  # Docker's default: SIGKILL 10 s after SIGTERM
        assert grace.endswith("m") or int(grace.rstrip("s")) >= 60, f"{name}: a micro-batch needs time to end"
    beats = [name for name, svc in workers.items() if "--beat" in svc["command"]]
    assert len(beats) == 1, f"exactly one worker schedules the reconciler, not {beats}"

