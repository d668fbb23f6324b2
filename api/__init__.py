"""The HTTP service (``pageqa api``): FastAPI over the same job, corpus and result functions as the CLI."""
