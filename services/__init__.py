"""What pageqa does: jobs, question files, results, corpora, ingest, indexing, retrieval, answering, reuse, the
reconciler and the nightly report. Called by the entry points and tasks; calls db/, models/ and worker/."""
