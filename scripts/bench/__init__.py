"""Benchmarks that print Markdown tables into docs/: ingest, OCR, retrieval, the pipeline, submit; with the
synthetic ColQwen2-shaped corpus and the GPU memory plan."""
