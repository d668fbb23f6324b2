"""docker-compose.yml has the production shape, checked without a Docker engine: healthy Postgres with pgvector
and durable Redis before migrations, migrations before everything that uses the database, one beat without a
GPU, each worker pinned to exactly one GPU of its own, and every variable documented in .env.example with the
default pageqa itself uses."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import TypeAdapter

from pageqa.settings import Settings

ROOT = Path(__file__).parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
# ${NAME}, ${NAME:-default}, ${NAME:?message}: compose's interpolation forms
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")
# variables docker compose reads for itself, not interpolated into the file
COMPOSE_OWN = {"COMPOSE_PROFILES"}


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def workers() -> dict[str, dict]:
    return {name: svc for name, svc in SERVICES.items() if svc.get("command", [None])[0] == "worker"}


def after(svc: dict, dependency: str) -> str | None:
    return svc.get("depends_on", {}).get(dependency, {}).get("condition")


def test_services_and_health_checks():
    assert {"postgres", "redis", "migrate", "api", "beat", "flower", "worker-gpu0"} <= set(SERVICES)
    assert SERVICES["postgres"]["image"].startswith("pgvector/pgvector:")
    assert "pgdata" in COMPOSE["volumes"] and any(v.startswith("pgdata:") for v in SERVICES["postgres"]["volumes"])
    for name in ("postgres", "redis", "api"):
        assert SERVICES[name]["healthcheck"]["test"], name
    api_check = " ".join(SERVICES["api"]["healthcheck"]["test"])
    assert "urllib" in api_check and "localhost:8000/v1/health" in api_check and "curl" not in api_check
    assert SERVICES["migrate"]["command"] == ["migrate"] and SERVICES["migrate"]["restart"] == "no"


def test_redis_is_durable_and_never_evicts():
    cmd = SERVICES["redis"]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/data") for v in SERVICES["redis"]["volumes"])


def test_start_order_follows_the_database():
    assert after(SERVICES["migrate"], "postgres") == "service_healthy"
    for name in ("api", "beat", *workers()):
        assert after(SERVICES[name], "migrate") == "service_completed_successfully", name
        assert after(SERVICES[name], "redis") == "service_healthy", name
        env = SERVICES[name]["environment"]
        assert env["PAGEQA_DATABASE_URL"].endswith("@postgres:5432/pageqa") and env["PAGEQA_BROKER_URL"], name
    assert after(SERVICES["flower"], "redis") == "service_healthy"


def test_api_serves_its_port_and_keeps_uploads_in_a_volume():
    api = SERVICES["api"]
    cmd = api["command"]
    assert cmd[0] == "api" and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    port = cmd[cmd.index("--port") + 1]
    assert any(mapping.rsplit(":", 1)[1] == port for mapping in api["ports"])
    assert f"localhost:{port}/" in " ".join(api["healthcheck"]["test"])
    home = re.search(r"PAGEQA_HOME=(\S+)", (ROOT / "Dockerfile").read_text()).group(1)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in api["volumes"]}
    assert mounts.get(home) in COMPOSE["volumes"], f"uploads under PAGEQA_HOME={home} need a named volume"


def test_each_worker_reserves_one_gpu_of_its_own():
    assert "worker-gpu0" in workers() and len(workers()) >= 2
    device_ids = []
    for name, svc in workers().items():
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1 and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"], name
        assert len(devices[0]["device_ids"]) == 1, name
        device_ids.append(devices[0]["device_ids"][0])
        assert name == f"worker-gpu{device_ids[-1]}", f"{name} reserves GPU {device_ids[-1]}"
        assert svc["command"] == ["worker", "--gpu", "0"], name  # its one reserved GPU is index 0 inside
        grace = svc.get("stop_grace_period", "10s")  # Docker's default: SIGKILL 10 s after SIGTERM
        assert grace.endswith("m") or int(grace.rstrip("s")) >= 60, f"{name}: a micro-batch needs time to end"
        assert ("profiles" in svc) == (name != "worker-gpu0"), f"{name}: only GPU 0's worker runs by default"
    assert len(set(device_ids)) == len(device_ids), f"two workers share a GPU: {sorted(device_ids)}"


def test_exactly_one_beat_without_a_gpu():
    beats = [name for name, svc in SERVICES.items()
             if svc.get("command") and (svc["command"][0] == "beat" or "--beat" in svc["command"])]
    assert beats == ["beat"], f"exactly one service schedules the reconciler, not {beats}"
    beat = SERVICES["beat"]
    assert beat["command"] == ["beat"] and beat["deploy"]["replicas"] == 1
    assert "resources" not in beat["deploy"] and "profiles" not in beat


def test_flower_watches_the_broker_of_the_workers_behind_a_login():
    import importlib.util

    flower = SERVICES["flower"]
    assert flower["entrypoint"] == ["celery"] and "flower" in flower["command"]
    assert f"--broker={SERVICES['worker-gpu0']['environment']['PAGEQA_BROKER_URL']}" in flower["command"]
    assert any(m.endswith(":5555") for m in flower["ports"]) and "--port=5555" in flower["command"]
    assert ":?" in flower["environment"]["FLOWER_BASIC_AUTH"], "Flower must not start without a login"
    assert importlib.util.find_spec("flower") is not None, "flower is not in the locked environment"


def test_every_variable_is_documented_in_env_example():
    example = env_example()
    used = {m["name"] for m in VARIABLE.finditer(COMPOSE_TEXT)}
    assert used - set(example) == set(), "used in docker-compose.yml, missing from .env.example"
    assert set(example) - used - COMPOSE_OWN == set(), "in .env.example, used nowhere in docker-compose.yml"
    for m in VARIABLE.finditer(COMPOSE_TEXT):
        if m["op"] == ":?":  # a secret: the copied file must not start the stack before it is set
            assert example[m["name"]] == "", m["name"]
        else:
            assert m["op"] == ":-", f"${{{m['name']}}} has no default"
            assert example[m["name"]] == m["arg"], f"{m['name']}: .env.example and the compose default differ"


def test_pageqa_defaults_in_compose_are_the_settings_defaults():
    checked = 0
    for m in VARIABLE.finditer(COMPOSE_TEXT):
        if m["name"].startswith("PAGEQA_PG_"):  # computed from the machine: see the test below
            continue
        if m["name"].startswith("PAGEQA_") and m["name"].removeprefix("PAGEQA_").lower() in Settings.model_fields:
            field = Settings.model_fields[m["name"].removeprefix("PAGEQA_").lower()]
            assert TypeAdapter(field.annotation).validate_python(m["arg"]) == field.default, m["name"]
            checked += 1
    assert checked >= 10


def test_postgres_takes_every_pg_setting_with_the_embedded_rules_for_a_16_gib_4_core_host():
    """The postgres service gets each server setting the embedded server gets, from the same PAGEQA_PG_* variable,
    and its defaults are what pageqa/pg_tuning.py computes for the host the comments name."""
    from pageqa import pg_tuning

    cmd = SERVICES["postgres"]["command"]
    assert cmd[0] == "postgres" and all(flag == "-c" for flag in cmd[1::2])
    given = dict(option.split("=", 1) for option in cmd[2::2])
    assert set(given) == set(pg_tuning.TUNABLE), "every PAGEQA_PG_* setting, and only those"
    reference = pg_tuning.computed(16 * pg_tuning.GB, 4)
    for name, value in given.items():
        m = VARIABLE.fullmatch(value)
        assert m and m["name"] == f"PAGEQA_PG_{name.upper()}" and m["op"] == ":-", (name, value)
        assert m["arg"] == reference[name], f"{name}: compose says {m['arg']}, the rules {reference[name]}"
        assert f"pg_{name}" in Settings.model_fields, name
    for text in (COMPOSE_TEXT, (ROOT / ".env.example").read_text()):  # comments, as one line of words
        assert "16 GiB, 4-core host" in " ".join(text.replace("#", " ").split())


def test_postgres_shm_holds_a_parallel_index_build():
    from pageqa.pg_tuning import GB, parse_size

    shm = VARIABLE.fullmatch(SERVICES["postgres"]["shm_size"])
    assert shm and shm["op"] == ":-" and shm["arg"].endswith("g"), SERVICES["postgres"]["shm_size"]
    maintenance = VARIABLE.search(COMPOSE_TEXT[COMPOSE_TEXT.index("maintenance_work_mem="):])["arg"]
    assert int(shm["arg"][:-1]) * GB >= parse_size(maintenance) + GB


def test_commands_are_pageqa_commands():
    from scripts.cli import app

    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    entrypoint = re.search(r'ENTRYPOINT \["(\w+)"\]', (ROOT / "Dockerfile").read_text()).group(1)
    assert entrypoint == "pageqa"
    used = {svc["command"][0] for svc in SERVICES.values() if "command" in svc and "entrypoint" not in svc
            and svc.get("image", "").startswith("pageqa")}
    assert {"migrate", "api", "beat", "worker"} <= used
    assert used - names == set(), "not commands of scripts.cli.app"


def test_image_holds_every_package_and_no_working_tree():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile, re.MULTILINE))
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert "pageqa" in packages and packages - copied == set(), "packages missing from the image"
    assert not re.search(r"^COPY \. ", dockerfile, re.MULTILINE), "COPY . would put a .env into the image"
