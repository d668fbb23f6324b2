"""``pageqa bench gpu``'s report: ``gpu.json`` (every figure, outputs left out) and ``gpu.md`` (the tables)."""

from __future__ import annotations

import json
from pathlib import Path

NA_CPU = "n/a (CPU)"
MODELS = {"retrieve": "ColQwen2 (retriever)", "rerank": "MonoQwen2-VL (reranker)", "generate": "Qwen2-VL (generator)"}
RATES = {"embed": ("pages embedded", "pages/s"), "query": ("queries encoded", "ms/query"),
         "rerank": ("pairs reranked", "pairs/s"), "generate": ("questions answered", "questions/s")}


def write(report: dict, output: Path) -> None:
    """Write ``output/gpu.json`` and ``output/gpu.md`` (created with parents)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "gpu.json").write_text(json.dumps(_without_outputs(report), indent=2) + "\n")
    (output / "gpu.md").write_text(markdown(report))


def _without_outputs(report: dict) -> dict:
    """The report without rerank scores and generated answers: random weights' outputs say nothing."""
    out = json.loads(json.dumps(report))
    for mode in out["modes"].values():
        for stage in mode["stages"].values():
            stage.pop("scores", None)
            stage.pop("answers", None)
    return out


def _gib(x: float | None) -> str:
    return NA_CPU if x is None else f"{x:.2f}"


def markdown(report: dict) -> str:
    """The report's tables: loads and stages per residency mode, then the out-of-memory run."""
    env = report["environment"]
    where = env["gpu"] or "CPU"
    cap = f", capped at {report['memory_cap_gib']} GiB" if report["memory_cap_gib"] else ""
    lines = [f"`{report['command']}`: {report['size']} size on {where}{cap}; torch {env['versions']['torch']}, "
             f"transformers {env['versions']['transformers']}, bitsandbytes {env['versions']['bitsandbytes']}; "
             f"{report['new_tokens']} new tokens; random weights (speed and memory only).", ""]
    for name, mode in report["modes"].items():
        lines += [f"**{name}** ({mode['moves']} model moves)", "",
                  "| model | load s | weights (footprint) GiB | resident on the GPU GiB | NF4 |", "|---|---:|---:|---:|---|"]
        for stage, info in mode["load"].items():
            lines.append(f"| {MODELS[stage]} | {info['seconds']:.2f} | {info['footprint_gib']:.3f} | "
                         f"{_gib(info['resident_gib'])} | {'yes' if info['quantized'] else 'no'} |")
        lines += ["", "| stage | items | seconds | rate | peak allocated GiB | move s | micro-batches |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for stage, m in mode["stages"].items():
            what, unit = RATES[stage]
            if "error" in m:
                lines.append(f"| {stage} ({what}) | {m['items']} | - | out of memory: {m['error']} | | | |")
                continue
            rate = (f"{m['ms_per_query']:.1f} {unit}" if stage == "query" else f"{m['rate']:.2f} {unit}")
            if stage == "generate":
                rate += f", {m['tokens_per_s']:.0f} tokens/s"
            sizes = ", ".join(f"{k}: {v}" for k, v in m["batch_sizes"].items())
            lines.append(f"| {stage} ({what}) | {m['items']} | {m['seconds']:.2f} | {rate} | {_gib(m['peak_gib'])} | "
                         f"{m['move_s']:.2f} | {sizes} |")
        if "equal_to_resident" in mode:
            lines += ["", f"Equal to the resident run: {_equality(mode['equal_to_resident'])}."]
        lines.append("")
    lines += ["**out-of-memory run**", ""]
    oom = report["oom"]
    if "skipped" in oom:
        lines.append(f"Skipped: {oom['skipped']}.")
    else:
        lines += ["| stage | cap GiB | halvings | micro-batches | seconds | equal to the uncapped run |",
                  "|---|---:|---:|---|---:|---|"]
        for stage, o in oom.items():
            if "skipped" in o:
                lines.append(f"| {stage} | | | | | skipped: {o['skipped']} |")
                continue
            result = o.get("error") or _equality(o)
            secs = f"{o['seconds']:.2f}" if "seconds" in o else "-"
            lines.append(f"| {stage} | {o['cap_gib']:.2f} | {o['halvings']} | {o['batch_sizes']} | {secs} | {result} |")
    return "\n".join(lines) + "\n"


def _equality(c: dict) -> str:
    parts = []
    if "max_score_diff" in c:
        parts.append(f"rerank ranks {'equal' if c['ranks_equal'] else 'DIFFERENT'}, largest score difference "
                     f"{c['max_score_diff']:.1e} ({'within' if c['scores_within_tol'] else 'OUTSIDE'} the tolerance "
                     f"{c['score_tol']:.0e})")
    if "answers" in c:
        parts.append(f"{c['answers_equal']}/{c['answers']} greedy answers identical (token ids)")
    return "; ".join(parts)
