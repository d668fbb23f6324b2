"""Scoring an evaluation run: page retrieval per lane and fused, answers, breakdowns, throughput; as a dict for
JSON and as Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pageqa.domain import is_not_answerable
from scripts.eval.benchmark_score import benchmark_score
from scripts.eval.metrics import contains_answer, mean_metrics
from scripts.eval.mmlongbench import Sample, source_category

LANE_ORDER = ("visual", "lexical", "dense", "fused")
ANSWER_LABELS = {
    "answerable_accuracy": "answerable accuracy (MMLongBench-Doc rules)",
    "not_answerable_accuracy": '"Not answerable" accuracy (MMLongBench-Doc rules)',
    "accuracy_all": "accuracy over all questions (MMLongBench-Doc rules)",
    "answered_rate": 'answerable questions not answered "Not answerable"',
    "answer_contains_gold": "answer text contains the gold answer, answerable (not correctness)",
    "confidence_top_half_accuracy": "accuracy of the more confident half of the answers",
    "confidence_bottom_half_accuracy": "accuracy of the less confident half of the answers",
}


@dataclass(frozen=True)
class Outcome:
    """One question's results: its lanes' ranked page numbers (1-based), the answer, its kind and confidence."""

    sample: Sample
    rankings: dict[str, list[int]]
    answer: str | None
    kind: str | None
    confidence: float | None = None


def answer_score(o: Outcome) -> float:
    """The answer's MMLongBench-Doc score in [0, 1] (:func:`scripts.eval.benchmark_score.benchmark_score`); a
    question left without an answer scores as the empty answer."""
    return benchmark_score(o.sample.answer, o.answer or "", o.sample.answer_format)


def answer_contains_gold(o: Outcome) -> bool:
    """Whether the answer text contains the gold answer (every list item), and is not "Not answerable": the
    figure reported for extractive passages before the benchmark's rules, kept for comparison; not correctness,
    since a 100-word passage contains short numbers by chance."""
    pred = o.answer or ""
    return not is_not_answerable(pred) and contains_answer(pred, o.sample.answer)


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
    """Answer figures by the benchmark's rules (mean score of answerable questions, of "Not answerable" ones, of
    all), the answered rate, the old "answer contains the gold answer" share of answerable questions, and how
    the answer confidence tracks the score (:func:`confidence_tracking`)."""
    answerable = [o for o in outcomes if o.sample.answerable]
    unanswerable = [o for o in outcomes if not o.sample.answerable]
    return {
        "n_answerable": len(answerable),
        "n_not_answerable": len(unanswerable),
        "answerable_accuracy": _mean([answer_score(o) for o in answerable]),
        "not_answerable_accuracy": _mean([answer_score(o) for o in unanswerable]),
        "accuracy_all": _mean([answer_score(o) for o in outcomes]),
        "answered_rate": _mean([not is_not_answerable(o.answer or "") for o in answerable]),
        "answer_contains_gold": _mean([answer_contains_gold(o) for o in answerable]),
        **confidence_tracking(outcomes),
    }


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def confidence_tracking(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """Whether the stored answer confidence tracks correctness: the mean benchmark score of the half of the
    answered questions with the higher confidence and of the lower half (ties broken by question order), over
    questions that have a confidence; NaN when fewer than two do."""
    scored = sorted(((o.confidence, i, answer_score(o)) for i, o in enumerate(outcomes) if o.confidence is not None),
                    key=lambda t: (-t[0], t[1]))
    half = len(scored) // 2
    if half == 0:
        return {"confidence_top_half_accuracy": float("nan"), "confidence_bottom_half_accuracy": float("nan")}
    return {"confidence_top_half_accuracy": _mean([s for _, _, s in scored[:half]]),
            "confidence_bottom_half_accuracy": _mean([s for _, _, s in scored[-half:]])}


def breakdown(outcomes: Sequence[Outcome], key) -> dict[str, dict[str, float]]:
    """Fused hit@5 and answer accuracy (benchmark rules) per group; ``key(sample)`` gives the groups a question
    belongs to."""
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        for g in key(o.sample):
            groups.setdefault(g, []).append(o)
    out = {}
    for g, members in sorted(groups.items()):
        fused = retrieval_metrics(members).get("fused", {})
        out[g] = {"n": len(members), "fused_hit@5": fused.get("hit@5", float("nan")),
                  "answer_accuracy": _mean([answer_score(o) for o in members])}
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
    lines += [f"| {ANSWER_LABELS.get(k, k)} | {_fmt(v)} |" for k, v in report["answers"].items()]
    for title, key in (("By document type", "by_doc_type"), ("By evidence source", "by_evidence_source")):
        lines += ["", f"## {title}", "", "| group | n | fused hit@5 | answer accuracy |", "|---|---|---|---|"]
        lines += [f"| {g} | {v['n']} | {_fmt(v['fused_hit@5'])} | {_fmt(v['answer_accuracy'])} |"
                  for g, v in report[key].items()]
    lines += ["", "## Throughput", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in report["throughput"].items()]
    return "\n".join(lines) + "\n"
