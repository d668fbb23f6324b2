"""PostgreSQL server settings sized to the machine: the one place where RAM and cores become parameter values.

The rules (``RAM`` in bytes, after any cgroup memory limit; ``cores`` the CPUs this process may run on):

======================================  ===========================================================================
parameter                               value
======================================  ===========================================================================
``shared_buffers``                      RAM / 4 (RAM / 8 below 1 GiB, at least 16 MB)
``effective_cache_size``                RAM × 3 / 4 (the planner's estimate of the OS cache; nothing is allocated)
``maintenance_work_mem``                RAM / 8, between 64 MB and 4 GB (an HNSW build is fast while its graph fits)
``work_mem``                            (RAM − shared_buffers) / (3 × 100 connections) / workers per gather,
                                        between 4 MB and 64 MB
``max_wal_size``                        RAM / 2, between 1 GB and 8 GB (bulk ``COPY`` loads checkpoint less often)
``max_parallel_workers``                cores
``max_parallel_workers_per_gather``     half the cores rounded up, at most 4; 0 on one core
``max_parallel_maintenance_workers``    as per gather
``max_worker_processes``                max(8, max_parallel_workers): PostgreSQL's default, raised when needed
======================================  ===========================================================================

Sources: PostgreSQL documentation, "Server Configuration › Resource Consumption" (shared_buffers: "a reasonable
starting value … is 25% of the memory", less below 1 GB; work_mem is per sort or hash, several per query;
maintenance_work_mem), "› Query Planning" (effective_cache_size) and "› Write Ahead Log" (max_wal_size); PGTune
(le0pard/pgtune, https://pgtune.leopard.in.ua), whose "web"/"data warehouse" rules these are, except that PGTune
caps maintenance_work_mem at 2 GB and leaves the parallel settings at PostgreSQL's defaults below 4 cores (here 2
cores get one worker per gather, not two); pgvector's README, "HNSW › Index Build Time" (maintenance_work_mem).
100 connections is PostgreSQL's default ``max_connections``, which the embedded server keeps.

Units: sizes are bytes in this module and PostgreSQL memory units in parameter values (``kB``, ``MB``, ``GB``,
``TB``: 1024-based, as PostgreSQL reads them); computed sizes are rounded down to whole megabytes and written with
the largest unit that divides them exactly, as ``SHOW`` prints them (``6GB``, ``6026MB``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

KB, MB, GB, TB = 1024, 1024**2, 1024**3, 1024**4
_UNITS = {"kb": KB, "mb": MB, "gb": GB, "tb": TB}
_NAMES = {KB: "kB", MB: "MB", GB: "GB", TB: "TB"}

#: Memory parameters pageqa sets, with the smallest value PostgreSQL accepts for each, bytes.
SIZE_PARAMETERS = {
    "shared_buffers": 128 * KB,
    "effective_cache_size": 8 * KB,
    "work_mem": 64 * KB,
    "maintenance_work_mem": 1 * MB,
    "max_wal_size": 32 * MB,  # two 16 MB WAL segments
}
#: Worker-count parameters pageqa sets.
WORKER_PARAMETERS = ("max_parallel_workers", "max_parallel_workers_per_gather", "max_parallel_maintenance_workers")
#: Every parameter a ``PAGEQA_PG_<NAME>`` setting can override, in the order they are written and shown.
TUNABLE = (*SIZE_PARAMETERS, *WORKER_PARAMETERS)
#: What pageqa writes: the tunable ones and ``max_worker_processes``, derived from ``max_parallel_workers``.
WRITTEN = (*TUNABLE, "max_worker_processes")
#: Written parameters that take effect only when the server restarts; the others on a configuration reload.
RESTART_ONLY = ("shared_buffers", "max_worker_processes")
_MAX_CONNECTIONS = 100


def parse_size(text: str) -> int:
    """Bytes of a PostgreSQL memory size such as ``512MB``, ``6GB`` or ``64kB`` (unit required; its case is
    ignored).

    Raises:
        ValueError: ``text`` is not a whole number followed by kB, MB, GB or TB.
    """
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT][bB])\s*", str(text))
    if not match:
        raise ValueError(f"expected a size such as 512MB or 6GB (units kB, MB, GB, TB), not {text!r}")
    return int(match[1]) * _UNITS[match[2].lower()]


def format_size(n_bytes: int) -> str:
    """``n_bytes`` (a multiple of 1 kB) with the largest unit that divides it exactly: ``6GB``, ``6026MB``.

    Raises:
        ValueError: ``n_bytes`` is not a positive multiple of 1024.
    """
    if n_bytes <= 0 or n_bytes % KB:
        raise ValueError(f"{n_bytes} bytes is not a positive whole number of kB")
    unit = max(u for u in _NAMES if n_bytes % u == 0)
    return f"{n_bytes // unit}{_NAMES[unit]}"


def check_size(name: str, text: str) -> str:
    """``text`` as PostgreSQL spells it (``6gb`` → ``6GB``) once it is a size ``name`` accepts.

    Raises:
        ValueError: not a size (see :func:`parse_size`), or below PostgreSQL's minimum for ``name``.
    """
    n_bytes = parse_size(text)
    if n_bytes < SIZE_PARAMETERS[name]:
        raise ValueError(f"{name} must be at least {format_size(SIZE_PARAMETERS[name])}, not {text!r}")
    return format_size(n_bytes)


def _megabytes(n_bytes: float) -> str:
    return format_size(max(1, int(n_bytes) // MB) * MB)


def _clamp(value: float, low: int, high: int) -> float:
    return min(max(value, low), high)


def computed(ram_bytes: int, cores: int) -> dict[str, str]:
    """Each of :data:`TUNABLE` for a machine of ``ram_bytes`` bytes of memory and ``cores`` CPUs, by the rules in
    this module's docstring: sizes as PostgreSQL memory units (``6GB``), worker counts as whole numbers.

    Raises:
        ValueError: ``ram_bytes`` or ``cores`` is not positive.
    """
    if ram_bytes <= 0 or cores <= 0:
        raise ValueError(f"need positive memory and cores, got {ram_bytes} bytes and {cores} cores")
    shared = ram_bytes / 4 if ram_bytes >= GB else max(ram_bytes / 8, 16 * MB)
    per_gather = 0 if cores < 2 else min(4, math.ceil(cores / 2))
    work_mem = (ram_bytes - shared) / (3 * _MAX_CONNECTIONS) / max(1, per_gather)
    return {
        "shared_buffers": _megabytes(shared),
        "effective_cache_size": _megabytes(ram_bytes * 3 / 4),
        "work_mem": _megabytes(_clamp(work_mem, 4 * MB, 64 * MB)),
        "maintenance_work_mem": _megabytes(_clamp(ram_bytes / 8, 64 * MB, 4 * GB)),
        "max_wal_size": _megabytes(_clamp(ram_bytes / 2, 1 * GB, 8 * GB)),
        "max_parallel_workers": str(cores),
        "max_parallel_workers_per_gather": str(per_gather),
        "max_parallel_maintenance_workers": str(per_gather),
    }


def parameters(ram_bytes: int, cores: int, overrides: Mapping[str, str | int | None] | None = None) -> dict[str, str]:
    """The values pageqa writes (:data:`WRITTEN`): ``overrides`` where set (not None), the rest
    :func:`computed` for ``ram_bytes`` and ``cores``; ``max_worker_processes`` follows ``max_parallel_workers``.

    Raises:
        ValueError: ``ram_bytes`` or ``cores`` is not positive, or an override names no parameter of
            :data:`TUNABLE`.
    """
    values = computed(ram_bytes, cores)
    for name, value in (overrides or {}).items():
        if name not in values:
            raise ValueError(f"{name!r} is not one of the parameters pageqa sets: {', '.join(TUNABLE)}")
        if value is not None:
            values[name] = str(value)
    values["max_worker_processes"] = str(max(8, int(values["max_parallel_workers"])))
    return values


def machine_memory_bytes(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """Physical memory in bytes (``SC_PAGE_SIZE × SC_PHYS_PAGES``), or the cgroup's memory limit when that is lower
    (``memory.max`` of cgroup v2, ``memory/memory.limit_in_bytes`` of v1; ``max`` or an unreadable file: none)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in (cgroup / "memory.max", cgroup / "memory" / "memory.limit_in_bytes"):
        try:
            text = limit.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0:
            memory = min(memory, int(text))
    return memory


def machine_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may run on (``os.sched_getaffinity``), or fewer when the cgroup v2 CPU quota
    (``cpu.max``: quota and period, µs) allows less, rounded up; at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return max(1, cores)
    if quota.isdigit() and period.isdigit() and int(period) > 0:
        cores = min(cores, math.ceil(int(quota) / int(period)))
    return max(1, cores)


@lru_cache(maxsize=1)
def this_machine() -> tuple[int, int]:
    """``(memory bytes, cores)`` of this machine (:func:`machine_memory_bytes`, :func:`machine_cores`), read once
    per process."""
    return machine_memory_bytes(), machine_cores()
