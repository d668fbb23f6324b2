"""The nightly report: the day's figures (figures), their plots (plots) and HTML pages (html), built, stored and
written to disk (build); the stored pages read back for the API (store)."""
