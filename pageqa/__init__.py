"""The kernel of pageqa: settings, errors, per-job options and the domain rules (states, lanes, "Not answerable").
Every other package imports it; it imports nothing of theirs."""

__version__ = "0.1.0"
