"""``python -m worker [--gpu N | --device D] [--loglevel L] [--beat]``: a worker process without the CLI, as
:func:`worker.process.spawn_worker` starts it (same options as ``pageqa worker``)."""

from __future__ import annotations

import argparse
import logging
import sys

from pageqa.errors import PageQAError
from worker.start import start_worker

parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
parser.add_argument("--gpu", type=int, default=None)
parser.add_argument("--device", default=None)
parser.add_argument("--loglevel", default="INFO")
parser.add_argument("--beat", action="store_true")
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
try:
    start_worker(gpu=args.gpu, device=args.device, loglevel=args.loglevel, beat=args.beat)
except PageQAError as exc:
    sys.exit(f"error: {exc}")
