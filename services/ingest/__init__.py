"""Ingest: check the input files (inputs), render PDF pages and images to stored page images (render), and
store them in file order and queue their indexing (pipeline)."""
