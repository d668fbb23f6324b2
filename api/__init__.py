"""Entry point: the HTTP API (FastAPI). Routes in ``api/routes/`` parse requests, call :mod:`services` and shape
JSON with the response models of ``api/schemas.py``; no other package imports it."""
