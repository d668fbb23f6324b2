"""``pageqa bench gpu --size tiny --device cpu``: the GPU bench's whole path (checkpoints saved and loaded back,
the three production stages, both residency modes, the report) on the CPU, as the suite can run it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from scripts.cli import app

pytestmark = pytest.mark.models

STAGES = ("embed", "query", "rerank", "generate")


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_models):
    out = tmp_path_factory.mktemp("bench-gpu")
    result = CliRunner().invoke(app, [
        "bench", "gpu", "--size", "tiny", "--device", "cpu", "--pages", "4", "--questions", "4",
        "--workdir", str(tiny_models.root.parent), "--output", str(out),  # the session's tiny set, reused
    ])
    assert result.exit_code == 0, result.output
    return result, json.loads((out / "gpu.json").read_text()), (out / "gpu.md").read_text()


def test_every_stage_is_measured_in_both_modes_with_positive_throughput(bench):
    _, report, _ = bench
    assert set(report["modes"]) == {"resident", "low_memory"}
    for mode in report["modes"].values():
        assert set(mode["stages"]) == set(STAGES)
        for name, stage in mode["stages"].items():
            assert stage["rate"] > 0 and stage["seconds"] > 0, name
            assert sum(sum(v) for v in stage["batch_sizes"].values()) == stage["items"], "every item ran once"
        assert mode["stages"]["generate"]["tokens_per_s"] > 0
        assert mode["stages"]["query"]["ms_per_query"] > 0
        assert set(mode["load"]) == {"retrieve", "rerank", "generate"}
        assert all(v["seconds"] > 0 and v["footprint_gib"] > 0 for v in mode["load"].values())


def test_the_cpu_run_invents_no_gpu_figure(bench):
    _, report, md = bench
    for mode in report["modes"].values():
        assert all(s["peak_gib"] is None for s in mode["stages"].values())
        assert all(v["resident_gib"] is None and not v["quantized"] for v in mode["load"].values())
    assert report["memory_cap_gib"] is None, "--memory-gib means nothing on the CPU"
    assert report["oom"] == {"skipped": "a real out-of-memory error needs CUDA"}
    assert "n/a (CPU)" in md and "Skipped: a real out-of-memory error needs CUDA." in md


def test_default_micro_batches_and_low_memory_moves(bench, settings):
    _, report, _ = bench
    resident, low = report["modes"]["resident"], report["modes"]["low_memory"]
    assert resident["stages"]["rerank"]["batch_sizes"] == {"rerank": [min(16, settings.rerank_batch_size)]}
    assert resident["moves"] == 0 and low["moves"] == 3, "low_memory moves each stage's model once"
    equal = low["equal_to_resident"]
    assert equal["ranks_equal"] and equal["max_score_diff"] <= 1e-6, "fp32 on the CPU: the same numbers"
    assert equal["answers_equal"] == equal["answers"] == 4


def test_the_markdown_table_is_printed_and_written(bench):
    result, _, md = bench
    for row in ("| embed (pages embedded) | 4 |", "| rerank (pairs reranked) | 16 |",
                "| generate (questions answered) | 4 |", "| Qwen2-VL (generator) |"):
        assert row in md, row
    assert md.count("| stage | items |") == 2
    assert "4/4 greedy answers identical (token ids)" in md, "low_memory compared with the resident run"
    assert "pages/s" in result.stdout and "tokens/s" in result.stdout
