"""Entry point: the ``pageqa`` command line (``cli/``), the demo (``demo/``), the evaluation (``eval/``) and the
benchmarks (``bench/``); presentation only, calling :mod:`services`. No other package imports it."""
