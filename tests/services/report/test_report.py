"""The nightly report of a seeded day against the real embedded PostgreSQL: every figure is checked against the
values seed_day computes in Python from its own seed; storage is idempotent; a tenant's page holds only its own
data; an empty day says that nothing happened. No worker is needed: the report reads PostgreSQL only."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
import seed_day as S
from pytest import approx
from sqlalchemy import select

from db import report as report_db
from db.engine import session_scope
from db.schema import Report
from pageqa.errors import InputError
from services.report.build import build_report, page_file_name
from services.report.figures import error_kind

SCOPES = (S.ALL, *S.TENANTS)
EMPTY_DAY = dt.date(2024, 1, 10)


def close(got, want) -> bool:
    """``got == want``, floats to 1e-9 relative, through nested dicts and lists (pytest.approx stops at one level)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(close(got[k], want[k]) for k in want)
    if isinstance(want, list | tuple):
        return isinstance(got, list | tuple) and len(got) == len(want) and all(map(close, got, want))
    if isinstance(want, float) and isinstance(got, int | float):
        return got == approx(want, rel=1e-9)
    return got == want


@pytest.fixture(scope="module")
def report_settings(settings):
    """The test settings with the seed's report time zone."""
    return settings.model_copy(update={"report_timezone": S.TZ})


@pytest.fixture(scope="module")
def seeded(settings, services):
    with session_scope(settings) as session:
        return S.seed(session)


@pytest.fixture(scope="module")
def built(report_settings, seeded):
    return build_report(report_settings, day=S.DAY)


def test_the_seed_is_the_day_it_claims(built):
    """Hand-counted figures of the whole day: a guard on seed_day's own arithmetic."""
    assert S.jobs(S.ALL) == {"submitted": 5, "completed": 3, "failed": 1, "cancelled": 1, "expired": 1}
    assert S.questions(S.ALL) == {"answered": 24, "answered_by_models": 22, "reused": 2, "not_answerable": 4,
                                  "failed": 5}
    assert set(built.figures) == set(SCOPES)
    assert built.figures[S.ALL]["timezone"] == S.TZ and built.figures[S.ALL]["start"] == S.START.isoformat()


@pytest.mark.parametrize("scope", SCOPES)
def test_jobs_and_questions(built, scope):
    f = built.figures[scope]
    assert f["jobs"] == S.jobs(scope)
    assert f["questions"] == S.questions(scope)
    assert f["empty"] is False


@pytest.mark.parametrize("scope", SCOPES)
def test_throughput_per_worker_and_queue_wait(built, scope):
    t = built.figures[scope]["throughput"]
    expected = S.throughput(scope)
    got = {w["worker"]: {k: v for k, v in w.items() if k != "worker"} for w in t["workers"]}
    assert close(got, expected["workers"]), (got, expected["workers"])
    assert close(t["queue_wait_ms"], expected["queue_wait_ms"]), (t["queue_wait_ms"], expected["queue_wait_ms"])


@pytest.mark.parametrize("scope", SCOPES)
def test_latency_percentiles_of_model_made_answers(built, scope):
    f = built.figures[scope]
    assert close(f["latency_ms"], S.latency(scope)), (f["latency_ms"], S.latency(scope))
    hourly = {row.pop("hour"): row for row in [dict(r) for r in f["latency_hourly"]]}
    assert close(hourly, S.latency_hourly(scope)), (hourly, S.latency_hourly(scope))


@pytest.mark.parametrize("scope", SCOPES)
def test_confidence_histogram_and_lowest_answers(built, seeded, scope):
    conf = built.figures[scope]["confidence"]
    expected = S.confidence(scope)
    assert close({k: conf[k] for k in ("n", "min", "max", "p50", "counts")},
                 {k: expected[k] for k in ("n", "min", "max", "p50", "counts")}), conf
    assert close(conf["edges"], [i / 10 for i in range(11)])
    got = [{"custom_id": x["custom_id"], "question": x["question"], "score": x["score"],
            "page": (x["document"], x["page"])} for x in conf["lowest"]]
    assert close(got, [{**x, "page": (S.TITLES[x["page"][0]], x["page"][1])} for x in expected["lowest"]]), got
    # each listed answer shows its cited page's thumbnail, except the page stored without an image
    page = built.pages[scope].read_text()
    with_image = [x for x in expected["lowest"] if x["page"][0] != "blank"]
    assert page.count('<img class="thumb"') == len(with_image)
    assert ("no image" in page) == (len(with_image) < len(expected["lowest"]))


@pytest.mark.parametrize("scope", SCOPES)
def test_most_cited_documents_and_pages(built, scope):
    docs, pages = S.most_cited(scope)
    doc_order = [d[0] for d in S.DOCUMENTS]
    page_order = [(d[0], n) for d in S.DOCUMENTS for n in range(1, d[4] + 1)]
    want_docs = sorted(docs.items(), key=lambda kv: (-kv[1], doc_order.index(kv[0])))[:10]
    want_pages = sorted(pages.items(), key=lambda kv: (-kv[1], page_order.index(kv[0])))[:10]
    cited = built.figures[scope]["most_cited"]
    assert [(d["document"], d["citations"]) for d in cited["documents"]] == [(S.TITLES[k], n) for k, n in want_docs]
    assert [(p["document"], p["page"], p["citations"]) for p in cited["pages"]] == [
        (S.TITLES[k], page, n) for (k, page), n in want_pages]


@pytest.mark.parametrize("scope", SCOPES)
def test_corpus_growth(built, scope):
    growth = built.figures[scope]["corpus_growth"]
    expected = S.corpus_growth(scope)
    assert {c["corpus"]: {k: c[k] for k in ("documents_added", "pages_added", "documents_total", "pages_total")}
            for c in growth["corpora"]} == expected["corpora"]
    assert (growth["documents_added"], growth["pages_added"]) == (expected["documents_added"], expected["pages_added"])


@pytest.mark.parametrize("scope", SCOPES)
def test_errors_grouped_by_type_with_one_example(built, scope):
    errors = built.figures[scope]["errors"]
    assert {(e["source"], e["kind"]): {"count": e["count"], "example": e["example"]} for e in errors} == S.errors(scope)
    assert [e["count"] for e in errors] == sorted((e["count"] for e in errors), reverse=True)


@pytest.mark.parametrize("scope", SCOPES)
def test_comparison_with_the_previous_seven_days(built, scope):
    history = built.figures[scope]["history"]
    assert close(history, S.history(scope)), (history, S.history(scope))
    assert history[-1]["questions_answered"] == built.figures[scope]["questions"]["answered"]


@pytest.mark.parametrize(("message", "kind"), [
    ("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "OutOfMemoryError"),
    ("gave up after 3 attempts; last: RuntimeError: boom", "RuntimeError"),
    ("psycopg.errors.QueryCanceled: canceling statement", "psycopg.errors.QueryCanceled"),
    ("gave up after 5 attempts; last: the worker holding it stopped answering (lease expired)",
     "the worker holding it stopped answering"),
    ("TimeBudgetExceeded", "TimeBudgetExceeded"),
    ("page 12 of 40 timed out after 3.5 s", "page N of N timed out"),
    (None, "(no message)"),
])
def test_error_kind(message, kind):
    assert error_kind(message) == kind


def test_stored_rows_and_files_match_the_figures(built, settings):
    with session_scope(settings) as session:
        rows = {r.scope: r for r in session.scalars(select(Report).where(Report.day == S.DAY))}
    assert set(rows) == set(SCOPES)
    for scope, row in rows.items():
        assert row.json == json.loads(json.dumps(built.figures[scope]))
        assert row.html == built.pages[scope].read_text()
    assert built.pages[S.ALL].name == "index.html" and built.directory.name == S.DAY.isoformat()
    assert built.directory.parent == settings.home_dir / "reports"
    on_disk = json.loads(built.json_path.read_text())
    assert on_disk["scopes"] == json.loads(json.dumps(built.figures))


def _pivot(rows: list[dict]) -> list[tuple[str, str, dict[str, str]]]:
    table: dict[tuple[str, str], dict[str, str]] = {}
    for r in rows:
        table.setdefault((r["section"], r["metric"]), {})[r["tenant"]] = r["value"]
    return [(section, metric, values) for (section, metric), values in table.items()]


def test_csv_is_the_flat_table_of_the_figures(built, settings):
    rows = list(csv.DictReader(io.StringIO(built.csv_path.read_text())))
    assert rows and list(rows[0]) == ["section", "tenant", "metric", "value"]
    cell = {(r["section"], r["tenant"], r["metric"]): r["value"] for r in rows}
    for scope in SCOPES:
        for key, value in S.jobs(scope).items():
            assert cell[("jobs", scope, key)] == str(value)
        assert cell[("questions", scope, "not_answerable")] == str(S.questions(scope)["not_answerable"])
        assert float(cell[("latency_ms", scope, "generate.p95")]) == approx(S.latency(scope)["generate"]["p95"])
    with session_scope(settings) as session:
        tenant_csv = session.scalar(select(Report.csv).where(Report.day == S.DAY, Report.scope == S.GLOBEX))
    tenant_rows = list(csv.DictReader(io.StringIO(tenant_csv)))
    assert {r["tenant"] for r in tenant_rows} == {S.GLOBEX}
    assert tenant_rows == [r for r in rows if r["tenant"] == S.GLOBEX]
    _print_figure_table(rows, built.figures[S.ALL])


def _short(value: str) -> str:
    return f"{float(value):.3f}".rstrip("0").rstrip(".") if "." in value else value


def _print_figure_table(rows: list[dict], overall: dict) -> None:
    """The figure table of docs/report.md: every single-valued figure per scope, then the lists of the overall
    report (a tenant's lists are its part of them)."""
    print(f"\nFigures of {S.DAY} ({S.TZ}), from figures.csv\n\n| section | metric | {' | '.join(SCOPES)} |\n"
          f"|---|---|{'---:|' * len(SCOPES)}")
    for section, metric, values in _pivot(rows):
        if section != "report" and "[" not in metric:
            print(f"| {section} | {metric} | " + " | ".join(_short(values.get(s, "")) for s in SCOPES) + " |")
    print("\nThe lists of the overall report (a tenant's lists are its part of them):\n\n- Workers (all): " + "; ".join(
        f"{w['worker']} {w['device']}: {w['chunks']} chunks ({w['failed_chunks']} failed), {w['questions']} questions, "
        f"{w['questions_per_hour']:.0f} questions/busy hour, queue wait p50 {w['queue_wait_p50_ms']:.1f} ms "
        f"p95 {w['queue_wait_p95_ms']:.1f} ms" for w in overall["throughput"]["workers"]))
    print("- Top-score histogram (all, bins of 0.1 from 0): " + str(overall["confidence"]["counts"]))
    print("- Lowest confidence (all): " + "; ".join(
        f"{x['score']:.2f} {x['custom_id']} ({x['document']} p{x['page']})" for x in overall["confidence"]["lowest"]))
    cited = overall["most_cited"]
    print("- Most cited (all): " + "; ".join(f"{d['document']} {d['citations']}" for d in cited["documents"])
          + " | pages: " + "; ".join(f"{p['document']} p{p['page']} {p['citations']}" for p in cited["pages"][:5]))
    print("- Corpus growth (all): " + "; ".join(
        f"{c['tenant']}/{c['corpus']} +{c['documents_added']} documents +{c['pages_added']} pages "
        f"(end of day {c['documents_total']} / {c['pages_total']})" for c in overall["corpus_growth"]["corpora"]))
    print("- Errors (all): " + "; ".join(f"{e['source']} {e['kind']} x{e['count']}" for e in overall["errors"]))
    print("- Previous days (all), answered / failed / jobs: " + ", ".join(
        f"{d['day'][5:]} {d['questions_answered']}/{d['questions_failed']}/{d['jobs_submitted']}"
        for d in overall["history"]))


def _other_tenant_strings(tenant: str) -> list[str]:
    other = S.GLOBEX if tenant == S.ACME else S.ACME
    strings = [q["question"] for q in S.QUESTIONS if S.TENANT_OF_JOB[q["job"]] == other]
    strings += [d[2] for d in S.DOCUMENTS if d[1] == other] + [S.CORPORA[other]]
    strings += [f"job_rpt_{j[0]}" for j in S.JOBS if j[1] == other]
    strings += [c[8][0] for c in S.CHUNKS if c[8] and S.TENANT_OF_JOB[c[0]] == other]
    return strings + [other]


@pytest.mark.parametrize("tenant", S.TENANTS)
def test_a_tenant_page_holds_only_that_tenants_data(built, settings, tenant):
    foreign = _other_tenant_strings(tenant)
    everything = built.pages[S.ALL].read_text()
    assert sum(s in everything for s in foreign) >= 5  # the overall page does show them: the check below can fail
    with session_scope(settings) as session:
        row = report_db.get_report(session, day=S.DAY, scope=tenant)
        stored = [row.html, json.dumps(row.json, ensure_ascii=False), row.csv]
    for text in [built.pages[tenant].read_text(), *stored]:
        leaked = [s for s in foreign if s in text]
        assert not leaked, f"{tenant}'s report shows another tenant's {leaked[:3]}"


def test_rebuilding_a_day_replaces_its_rows(built, report_settings, settings):
    with session_scope(settings) as session:
        before = {r.scope: (r.id, r.generated_at) for r in session.scalars(select(Report).where(Report.day == S.DAY))}
        session.add(Report(day=S.DAY, scope="ghost", html="", json={}, csv="", generated_at=S.START))
    ghost_file = built.directory / page_file_name("ghost")
    ghost_file.write_text("stale")
    again = build_report(report_settings, day=S.DAY)
    with session_scope(settings) as session:
        after = {r.scope: (r.id, r.generated_at) for r in session.scalars(select(Report).where(Report.day == S.DAY))}
    assert set(after) == set(before) == set(SCOPES)
    assert all(after[s][0] == before[s][0] and after[s][1] > before[s][1] for s in SCOPES)
    assert not ghost_file.exists()
    assert sorted(p.name for p in again.directory.glob("*.html")) == sorted(p.name for p in again.pages.values())
    assert again.figures[S.ACME]["questions"] == built.figures[S.ACME]["questions"]


def test_list_and_get_reports(built, settings):
    with session_scope(settings) as session:
        listed = report_db.list_reports(session, scope=S.GLOBEX)
        assert S.DAY in [r.day for r in listed] and all(r.scope == S.GLOBEX for r in listed)
        assert report_db.get_report(session, day=S.DAY, scope=S.GLOBEX).json["scope"] == S.GLOBEX
        from pageqa.errors import NotFoundError

        with pytest.raises(NotFoundError):
            report_db.get_report(session, day=S.DAY, scope="nobody")


@pytest.fixture(scope="module")
def empty(report_settings, services):
    return build_report(report_settings, day=EMPTY_DAY)


def test_an_empty_day_says_nothing_happened(empty, settings):
    result = empty
    assert set(result.figures) == {S.ALL}
    f = result.figures[S.ALL]
    assert f["empty"] is True and f["jobs"] == dict.fromkeys(f["jobs"], 0) and f["errors"] == []
    assert [d["questions_answered"] for d in f["history"]] == [0] * 8
    page = result.pages[S.ALL].read_text()
    assert "Nothing happened on 2024-01-10" in page and page.startswith("<!DOCTYPE html>")
    with session_scope(settings) as session:
        assert report_db.get_report(session, day=EMPTY_DAY, scope=S.ALL).json["empty"] is True


def test_the_seeded_day_is_not_called_empty(built):
    assert all("Nothing happened" not in p.read_text() for p in built.pages.values())


_IMAGES = "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])"


def _open(browser, path) -> tuple[list, list[str], list[str]]:
    """Load ``path`` in a fresh page: its images (complete, naturalWidth, alt), console errors and page errors,
    and every URL it requested other than the file itself and data: URIs."""
    page = browser.new_page()
    problems, fetched = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: fetched.append(r.url) if r.url != path.as_uri() and not r.url.startswith("data:")
            else None)
    page.goto(path.as_uri(), wait_until="load")
    images = page.evaluate(_IMAGES)
    assert page.title().startswith("pageqa nightly report")
    page.close()
    return images, problems, fetched


@pytest.mark.browser
def test_every_page_loads_in_chromium_with_every_image_decoded(built, empty, chromium, tmp_path):
    broken = tmp_path / "broken.html"  # the check itself can fail: a corrupt image is seen as undecoded
    broken.write_text('<title>pageqa nightly report</title><img alt="x" src="data:image/png;base64,iVBORw0KGgo=">')
    assert _open(chromium, broken)[0] == [[True, 0, "x"]]
    pages = [(p, built.figures[scope]) for scope, p in built.pages.items()]
    pages.append((empty.pages[S.ALL], empty.figures[S.ALL]))
    for path, figures in pages:
        images, problems, fetched = _open(chromium, path)
        plots = 1 if figures["empty"] else 3  # latency, confidence histogram, previous days
        thumbs = sum(x["document"] != "scan-blank.pdf" for x in figures["confidence"]["lowest"])
        assert len(images) == plots + thumbs, (path.name, [alt for *_, alt in images])
        undecoded = [alt for complete, width, alt in images if not (complete and width > 0)]
        assert not undecoded, f"{path.name}: images not decoded: {undecoded}"
        assert not problems, f"{path.name}: {problems}"
        assert not fetched, f"{path.name} is not self-contained: it fetched {fetched}"


def test_the_api_serves_a_tenant_only_its_own_reports(built, settings):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from db import keys

    with session_scope(settings) as session:
        auth = {t: {"Authorization": f"Bearer {keys.create_key(session, tenant=t).key}"}
                for t in (S.ACME, S.GLOBEX, "rpt-idle")}
        with pytest.raises(InputError, match="reserved"):
            keys.create_key(session, tenant=S.ALL)  # nobody may read the page over every tenant through the API
    client = TestClient(create_app(settings))
    listed = client.get("/v1/reports", headers=auth[S.ACME]).json()["data"]
    assert S.DAY.isoformat() in [r["date"] for r in listed]
    page = client.get(f"/v1/reports/{S.DAY}", headers=auth[S.ACME])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == built.pages[S.ACME].read_text()
    assert not any(s in page.text for s in _other_tenant_strings(S.ACME))
    figures = client.get(f"/v1/reports/{S.DAY}?format=json", headers=auth[S.GLOBEX]).json()
    assert figures["jobs"] == built.figures[S.GLOBEX]["jobs"]
    table = client.get(f"/v1/reports/{S.DAY}?format=csv", headers=auth[S.GLOBEX]).text
    assert table.splitlines()[0].startswith("section,") and S.ACME not in table
    assert client.get(f"/v1/reports/{S.DAY}", headers=auth["rpt-idle"]).status_code == 404
    assert client.get("/v1/reports", headers=auth["rpt-idle"]).json()["data"] == []
    assert client.get(f"/v1/reports/{S.DAY}").status_code == 401
    assert client.get("/v1/reports/2024-13-40", headers=auth[S.ACME]).status_code == 422


def test_pageqa_report_builds_a_day_by_hand(settings):
    from conftest import run_cli

    done = run_cli("report", "--date", "2024-01-11")
    page = settings.home_dir / "reports" / "2024-01-11" / "index.html"
    assert str(page) in done.stdout and "Nothing happened on 2024-01-11" in page.read_text()
    bad = run_cli("report", "--date", "11/01/2024", ok=False)
    assert bad.exit_code == 1 and "--date must be YYYY-MM-DD, not '11/01/2024'" in bad.output
