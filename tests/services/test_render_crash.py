"""A render process that dies mid-ingest (pdfium crashing, the out-of-memory killer) breaks its whole pool (issue 6,
issue 19): the files in flight are rendered again alone; the one whose lone render process dies too gets a one-line
error, the others are stored, and no ``BrokenProcessPool`` traceback reaches the user.

The test kills render processes itself with SIGKILL, as the kernel would, twice: each time a render process it has
not killed yet has drawn the slow page for 0.3 s of CPU (the page takes 1.5–3 s), so each kill lands during that
render, after both files went to the pool.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading

import psutil
import pytest
from conftest import make_pdf, wait_for
from test_hostile_documents import raw_pdf

from services.ingest.pipeline import RENDER_DIED, ingest_files

pytestmark = pytest.mark.timeout(180)


def slow_pdf(path, curves: int = 40_000):
    """A one-page PDF of ``curves`` random Bézier strokes: pdfium takes seconds to draw it (≈ 1.5 s per 20,000 on
    one core here)."""
    rnd = random.Random(0)
    ops = "".join(" ".join(str(rnd.randint(0, 800)) for _ in range(2)) + " m "
                  + " ".join(str(rnd.randint(0, 800)) for _ in range(6)) + " c S\n" for _ in range(curves))
    path.write_bytes(raw_pdf([
        "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 800 800] /Contents 4 0 R >>",
        f"<< /Length {len(ops)} >>\nstream\n{ops}endstream"]))
    return path


def _busy_render_process(spared: set[int]) -> psutil.Process | None:
    """A render process of this test process (a child of its multiprocessing forkserver) not in ``spared``, once it
    has used 0.3 s of CPU: it is drawing the slow page then, so every file was sent to the pool before it dies."""
    for child in psutil.Process().children():
        if "forkserver" not in " ".join(child.cmdline()):
            continue
        for process in child.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if process.pid not in spared and process.status() != psutil.STATUS_ZOMBIE \
                        and sum(process.cpu_times()[:2]) > 0.3:
                    return process
    return None


def test_a_file_whose_render_process_dies_is_named_and_the_others_are_stored(settings, services, tmp_path, caplog):
    crashing = slow_pdf(tmp_path / "crashing.pdf")
    beside = make_pdf(tmp_path / "beside.pdf", ["in flight when the pool broke", "second page"])
    one = settings.model_copy(update={"ingest_processes": 1})  # one render process: the kills are the crashing file's
    caplog.set_level(logging.WARNING, logger="services.ingest.pipeline")

    done: dict = {}
    thread = threading.Thread(target=lambda: done.setdefault(
        "report", ingest_files(one, corpus="render-crash", files=[crashing, beside])), daemon=True)
    thread.start()
    killed: set[int] = set()
    for _ in range(2):  # in the shared pool, then in the pool of its own
        victim = wait_for(lambda: _busy_render_process(killed), timeout_s=60, poll_s=0.005,
                          what="a render process drawing the slow page")
        victim.send_signal(signal.SIGKILL)
        killed.add(victim.pid)
    thread.join(120)
    assert not thread.is_alive(), "ingest did not return after its render processes were killed"

    report = done["report"]
    assert report.errors == [f"{crashing}: {RENDER_DIED}"]
    assert report.added == [str(beside)] and report.pages == 2  # rendered again, alone, after the pool broke
    warned = [r.getMessage() for r in caplog.records if "a render process died" in r.getMessage()]
    assert warned == [f"a render process died while {path} was in flight; rendering it again alone"
                      for path in (crashing, beside)]
