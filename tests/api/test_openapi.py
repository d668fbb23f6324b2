"""The OpenAPI document describes what the routes answer (their response models), not just that they answer."""

from __future__ import annotations


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_a_job_is_described_field_by_field(settings):
    from api.app import create_app

    document = create_app(settings).openapi()  # no request: nothing of the database is needed
    responses = document["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]
    job = _resolve(document, responses["200"]["content"]["application/json"]["schema"])
    assert {"id", "status", "corpus", "input_file", "options", "request_counts", "errors", "created_at",
            "completed_at", "expires_at", "output_url", "error_url"} <= set(job["properties"])
    assert set(job["required"]) == set(job["properties"]), "every field is sent, null or not"
    counts = _resolve(document, job["properties"]["request_counts"])
    assert set(counts["properties"]) == {"total", "completed", "failed", "expired", "cancelled", "queued", "running"}
    status = _resolve(document, job["properties"]["status"])
    assert "cancelling" in status["enum"]
    error = _resolve(document, responses["404"]["content"]["application/json"]["schema"])
    assert _resolve(document, error["properties"]["error"])["required"] == ["code", "message"]


def test_every_reference_resolves_within_the_document(settings):
    import json
    import re

    from api.app import create_app

    document = create_app(settings).openapi()
    refs = set(re.findall(r'"\$ref": "([^"]*)"', json.dumps(document)))
    assert refs, "the document has references"
    dangling = sorted(r for r in refs if not r.startswith("#/components/schemas/")
                      or r.rsplit("/", 1)[-1] not in document["components"]["schemas"])
    assert dangling == [], "ReDoc refuses to render a document with a reference to nothing"
