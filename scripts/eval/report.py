"""Scoring an evaluation run: page retrieval per lane and fused, answers, breakdowns, throughput; as a dict for
JSON and as Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pageqa.domain import is_not_answerable
from scripts.eval.metrics import (
    anls,
    contains_answer,
    exact_match,
    mean_metrics,
)
from scripts.eval.mmlongbench import Sample, source_category

LANE_ORDER = ("visual", "lexical", "dense", "fused")


@dataclass(frozen=True)
class Outcome:
    """One question's results: its lanes' ranked page numbers (1-based), the answer and its kind."""

    sample: Sample
    rankings: dict[str, list[int]]
    answer: str | None
    kind: str | None


def answer_correct(o: Outcome) -> bool:
    """"Not answerable" gold: the answer says so. Otherwise: exact match for generated answers, and for extractive
    answers whether the returned passage contains the gold answer (and is not "Not answerable")."""
    pred = o.answer or ""
    if not o.sample.answerable:
        return is_not_answerable(pred)
    if is_not_answerable(pred):
        return False
    if o.kind == "extractive":
        return contains_answer(pred, o.sample.answer)
    return exact_match(pred, o.sample.answer) == 1.0


def retrieval_metrics(outcomes: Sequence[Outcome]) -> dict[str, dict[str, float]]:
    """Per lane: hit@1/5/10, recall@5, MRR, nDCG@5 over the questions that have evidence pages."""
    with_gold = [o for o in outcomes if o.sample.evidence_pages]
    lanes = [lane for lane in LANE_ORDER if any(lane in o.rankings for o in with_gold)]
    out = {}
    for lane in lanes:
        m = mean_metrics([(o.rankings.get(lane, []), set(o.sample.evidence_pages)) for o in with_gold])
        out[lane] = {**m, "n": int(m["n"])}
    return out


def answer_metrics(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """Answer accuracy on answerable and "Not answerable" questions, EM and ANLS of generated answers, and the
    share of extractive passages that contain the gold answer."""
    answerable = [o for o in outcomes if o.sample.answerable]
    unanswerable = [o for o in outcomes if not o.sample.answerable]
    generated = [o for o in answerable if o.kind == "generated"]
    extractive = [o for o in answerable if o.kind == "extractive"]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {
        "n_answerable": len(answerable),
        "n_not_answerable": len(unanswerable),
        "answerable_accuracy": mean([answer_correct(o) for o in answerable]),
        "not_answerable_accuracy": mean([answer_correct(o) for o in unanswerable]),
        "answered_rate": mean([not is_not_answerable(o.answer or "") for o in answerable]),
        "generated_exact_match": mean([exact_match(o.answer or "", o.sample.answer) for o in generated]),
        "generated_anls": mean([anls(o.answer or "", o.sample.answer) for o in generated]),
        "extractive_contains_gold": mean([contains_answer(o.answer or "", o.sample.answer) for o in extractive]),
    }


def breakdown(outcomes: Sequence[Outcome], key) -> dict[str, dict[str, float]]:
    """Fused hit@5 and answer accuracy per group; ``key(sample)`` gives the groups a question belongs to."""
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        for g in key(o.sample):
            groups.setdefault(g, []).append(o)
    out = {}
    for g, members in sorted(groups.items()):
        fused = retrieval_metrics(members).get("fused", {})
        out[g] = {"n": len(members), "fused_hit@5": fused.get("hit@5", float("nan")),
                  "answer_accuracy": sum(answer_correct(o) for o in members) / len(members)}
    return out


def build_report(outcomes: Sequence[Outcome], *, throughput: dict[str, float], meta: dict,
                 left_out: Sequence[str] = ()) -> dict:
    """The whole report as plain data (JSON-ready). ``left_out``: the one-line errors of the records that were not
    evaluated (malformed in ``samples.json``), counted and listed under ``left_out``."""
    return {
        "meta": meta,
        "left_out": {"records": len(left_out), "errors": list(left_out)},
        "retrieval": retrieval_metrics(outcomes),
        "answers": answer_metrics(outcomes),
        "by_doc_type": breakdown(outcomes, lambda s: [s.doc_type]),
        "by_evidence_source": breakdown(
            outcomes, lambda s: sorted({source_category(x) for x in s.evidence_sources}) or ["none"]
        ),
        "throughput": throughput,
    }


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def to_markdown(report: dict) -> str:
    """The report as Markdown tables."""
    lines = [f"# Evaluation: {report['meta'].get('dataset', '')}", ""]
    lines += [f"- {k}: {v}" for k, v in report["meta"].items()] + [""]
    left_out = report.get("left_out", {"records": 0, "errors": []})
    if left_out["records"]:
        lines += [f"## Records left out: {left_out['records']} (malformed in samples.json; not evaluated)", ""]
        lines += [f"- {e}" for e in left_out["errors"]] + [""]
    metrics = ["hit@1", "hit@5", "hit@10", "recall@5", "mrr", "ndcg@5", "n"]
    lines += ["## Page retrieval (within the question's document)", "", "| lane | " + " | ".join(metrics) + " |",
              "|---" * (len(metrics) + 1) + "|"]
    lines += [f"| {lane} | " + " | ".join(_fmt(m[k]) for k in metrics) + " |" for lane, m in report["retrieval"].items()]
    lines += ["", "## Answers", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in report["answers"].items()]
    for title, key in (("By document type", "by_doc_type"), ("By evidence source", "by_evidence_source")):
        lines += ["", f"## {title}", "", "| group | n | fused hit@5 | answer accuracy |", "|---|---|---|---|"]
        lines += [f"| {g} | {v['n']} | {_fmt(v['fused_hit@5'])} | {_fmt(v['answer_accuracy'])} |"
                  for g, v in report[key].items()]
    lines += ["", "## Throughput", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in report["throughput"].items()]
    return "\n".join(lines) + "\n"
