"""The routes of the HTTP API, one module per resource (jobs, corpora, reports, health), each an ``APIRouter``
that :func:`api.app.create_app` mounts under ``/v1``."""
