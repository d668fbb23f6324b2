"""The PostgreSQL settings pageqa computes from a machine's memory and cores: values and units for a few machine
sizes, the machine read through cgroup limits, and PAGEQA_PG_* overrides that win or fail on one line."""

from __future__ import annotations

import os

import pytest

from pageqa import pg_tuning
from pageqa.errors import ConfigError
from pageqa.pg_tuning import GB, MB, computed, format_size, parameters, parse_size

# (GiB of RAM, cores) → every computed value, by hand from the rules in pageqa/pg_tuning.py's docstring
EXPECTED = {
    (2, 1): {"shared_buffers": "512MB", "effective_cache_size": "1536MB", "work_mem": "5MB",
             "maintenance_work_mem": "256MB", "max_wal_size": "1GB", "max_parallel_workers": "1",
             "max_parallel_workers_per_gather": "0", "max_parallel_maintenance_workers": "0"},
    (16, 4): {"shared_buffers": "4GB", "effective_cache_size": "12GB", "work_mem": "20MB",  # 12 GiB / 300 / 2
              "maintenance_work_mem": "2GB", "max_wal_size": "8GB", "max_parallel_workers": "4",
              "max_parallel_workers_per_gather": "2", "max_parallel_maintenance_workers": "2"},
    (24, 2): {"shared_buffers": "6GB", "effective_cache_size": "18GB", "work_mem": "61MB",  # 18 GiB / 300 / 1
              "maintenance_work_mem": "3GB", "max_wal_size": "8GB", "max_parallel_workers": "2",
              "max_parallel_workers_per_gather": "1", "max_parallel_maintenance_workers": "1"},
    (256, 64): {"shared_buffers": "64GB", "effective_cache_size": "192GB", "work_mem": "64MB",  # capped
                "maintenance_work_mem": "4GB", "max_wal_size": "8GB", "max_parallel_workers": "64",
                "max_parallel_workers_per_gather": "4", "max_parallel_maintenance_workers": "4"},
}


@pytest.mark.parametrize(("gib", "cores"), list(EXPECTED))
def test_values_for_a_few_machines(gib, cores):
    assert computed(gib * GB, cores) == EXPECTED[gib, cores]


def test_small_machines_stay_sane():
    for ram in (256 * MB, 512 * MB, 1 * GB, 2 * GB, 3 * GB + 123 * MB):
        values = {k: parse_size(v) for k, v in computed(ram, 1).items() if k in pg_tuning.SIZE_PARAMETERS}
        assert 16 * MB <= values["shared_buffers"] <= ram // 4, ram
        assert values["shared_buffers"] + values["maintenance_work_mem"] <= ram // 2, ram
        assert 4 * MB <= values["work_mem"] <= 64 * MB and values["max_wal_size"] >= 1 * GB, ram
        assert all(v % MB == 0 for v in values.values()), ram  # whole megabytes
    assert computed(256 * MB, 1)["shared_buffers"] == "32MB"  # RAM / 8 below 1 GiB
    with pytest.raises(ValueError, match="positive"):
        computed(0, 2)


def test_odd_sizes_are_whole_megabytes_in_showable_units():
    values = computed(25_276_203_008, 2)  # this development machine: 23.5 GiB
    assert values["shared_buffers"] == "6026MB" and values["maintenance_work_mem"] == "3013MB"
    assert [format_size(n) for n in (6 * GB, 6026 * MB, 64 * 1024, 1024**4)] == ["6GB", "6026MB", "64kB", "1TB"]
    assert [parse_size(s) for s in ("6GB", "6gb", " 512 MB ", "64kB", "1TB")] == [
        6 * GB, 6 * GB, 512 * MB, 64 * 1024, 1024**4]
    for bad in ("lots", "6", "6GiB", "-1GB", "1.5GB", ""):
        with pytest.raises(ValueError, match="512MB or 6GB"):
            parse_size(bad)


def test_overrides_win_and_worker_processes_follow():
    values = parameters(24 * GB, 2, {"work_mem": "48MB", "shared_buffers": None, "max_parallel_workers": 32})
    assert values["work_mem"] == "48MB" and values["shared_buffers"] == "6GB"
    assert values["max_parallel_workers"] == "32" and values["max_worker_processes"] == "32"
    assert parameters(24 * GB, 2)["max_worker_processes"] == "8"  # PostgreSQL's default, never lowered
    assert list(parameters(2 * GB, 1)) == list(pg_tuning.WRITTEN)
    with pytest.raises(ValueError, match="not one of the parameters"):
        parameters(24 * GB, 2, {"fsync": "off"})


def test_the_machine_is_read_through_cgroup_limits(tmp_path):
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert pg_tuning.machine_memory_bytes(tmp_path) == physical  # no cgroup files
    (tmp_path / "memory.max").write_text("max\n")
    assert pg_tuning.machine_memory_bytes(tmp_path) == physical
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1 "unlimited"
    assert pg_tuning.machine_memory_bytes(tmp_path) == physical
    (tmp_path / "memory.max").write_text(f"{2 * GB}\n")
    assert pg_tuning.machine_memory_bytes(tmp_path) == min(physical, 2 * GB)

    affinity = len(os.sched_getaffinity(0))
    assert pg_tuning.machine_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert pg_tuning.machine_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core: rounded up
    assert pg_tuning.machine_cores(tmp_path) == 1


def test_a_setting_from_the_environment_wins(monkeypatch):
    from pageqa.settings import Settings

    monkeypatch.setenv("PAGEQA_PG_WORK_MEM", "48mb")
    monkeypatch.setenv("PAGEQA_PG_MAX_PARALLEL_WORKERS", "12")
    values = Settings().pg_parameters()
    assert values["work_mem"] == "48MB"  # spelled as PostgreSQL reads it
    assert values["max_parallel_workers"] == "12" and values["max_worker_processes"] == "12"
    assert values["shared_buffers"] == parameters(*pg_tuning.this_machine())["shared_buffers"]


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("PAGEQA_PG_SHARED_BUFFERS", "lots", "expected a size such as 512MB or 6GB"),
    ("PAGEQA_PG_WORK_MEM", "10kB", "work_mem must be at least 64kB"),
    ("PAGEQA_PG_MAX_PARALLEL_WORKERS", "many", "valid integer"),
])
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, variable, value, says):
    from pageqa.settings import get_settings

    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as err:
            get_settings()
    finally:
        get_settings.cache_clear()  # the next caller reads the restored environment
    message = str(err.value)
    assert f"{variable}:" in message and says in message and "\n" not in message
